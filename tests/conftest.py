"""Shared fixtures: a simulator on a free loopback port and an isolated sync environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

API_USER = "tester"
#: Distinctive, so a search of every output and file for it cannot match by accident.
API_KEY = "sekrit-KEY-4f9c2a7e1b"


@pytest.fixture
def sync_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Credentials and a fresh database path; small pages so paging is exercised."""
    for name in list(os.environ):
        if name.startswith(("QUORUM_", "SOURCES__", "QUORUM_SMS__")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUORUM_USERNAME", API_USER)
    monkeypatch.setenv("QUORUM_API_KEY", API_KEY)
    monkeypatch.setenv("SOURCES__QUORUM__PAGE_SIZE", "200")
    monkeypatch.setenv("SOURCES__QUORUM__BACKOFF_INITIAL", "0.01")
    monkeypatch.setenv("SOURCES__QUORUM__INITIAL_VALUE", "2000-01-01T00:00:00Z")
    database = tmp_path / "warehouse" / "quorum.duckdb"
    monkeypatch.setenv("QUORUM_DATABASE", str(database))
    return database


@pytest.fixture
def simulator_factory() -> Iterator[object]:
    """Start simulators on free loopback ports; all are stopped at the end of the test."""
    from pipelines.simulator import Faults, SimulatorServer, World

    started: list[SimulatorServer] = []

    def start(
        n_records: int = 1500,
        seed: int = 11,
        faults: Faults | None = None,
        world: World | None = None,
    ) -> SimulatorServer:
        server = SimulatorServer(
            world or World(seed=seed, n_records=n_records),
            username=API_USER,
            api_key=API_KEY,
            faults=faults or Faults(),
            host="127.0.0.1",
            port=0,
        )
        server.__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


# The throwaway PostgreSQL cluster (session) and a fresh database per test.
from tests.postgres import postgres_cluster, postgres_database  # noqa: E402, F401

# Dashboard stand-ins for the published analytics file (session: the DuckDB 1.1.3 client).
from tests.published_readers import legacy_python, readers  # noqa: E402, F401

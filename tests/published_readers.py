"""Dashboard stand-ins for the published-file tests: reader processes and the old client.

`Reader` runs `warehouse/publish_reader.py` under a given Python (this project's DuckDB or
DuckDB 1.1.3 from `tests/duckdb_legacy.py`), holding the published file open; the fixtures
`legacy_python` and `readers` are registered in `tests/conftest.py`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.duckdb_legacy import legacy_duckdb_python

READER = Path(__file__).with_name("warehouse") / "publish_reader.py"
#: Every mart the models build, hence every table of the published file.
MARTS = {
    "fct_sms_message", "sms_campaign_funnel", "sms_campaign_performance",
    "sms_daily_overview", "sms_delivery_errors", "sms_sender_number_health",
    "sms_supporter_engagement", "sync_freshness",
}


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    """DuckDB 1.1.3's Python, built once per machine and cached."""
    return legacy_duckdb_python()


def read_once(python: Path | str, published: Path) -> dict[str, object]:
    """A new connection in a new process: what a dashboard that connects now sees."""
    done = subprocess.run(
        [str(python), str(READER), str(published), "--once"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


class Reader:
    """A reader process holding the published file open (see publish_reader.py)."""

    def __init__(self, python: Path | str, published: Path) -> None:
        self.process = subprocess.Popen(
            [str(python), str(READER), str(published)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.opened = self._answer()

    def _answer(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"the reader died: {self.process.stderr.read()}")
        answer: dict[str, object] = json.loads(line)
        return answer

    def send(self, command: str) -> dict[str, object]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    started: list[Reader] = []
    yield started
    for reader in started:
        reader.close()

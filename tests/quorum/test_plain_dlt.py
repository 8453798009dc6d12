"""The source on its own, as a dlt user runs it: `dlt.pipeline(...).run(quorum_source())`.

No command line, no QUORUM_* names: the settings come from dlt's own environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.quorum import quorum_source
from tests.conftest import API_KEY, API_USER
from tests.e2e.truth import assert_warehouse_equals


@pytest.fixture
def dlt_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only dlt's own names: SOURCES__QUORUM__<KEY>."""
    for name in list(os.environ):
        if name.startswith(("QUORUM_", "SOURCES__")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOURCES__QUORUM__USERNAME", API_USER)
    monkeypatch.setenv("SOURCES__QUORUM__API_KEY", API_KEY)
    monkeypatch.setenv("SOURCES__QUORUM__INITIAL_VALUE", "2000-01-01T00:00:00Z")
    monkeypatch.setenv("SOURCES__QUORUM__PAGE_SIZE", "150")


def test_a_plain_dlt_pipeline_loads_the_ground_truth(dlt_env, simulator_factory, tmp_path: Path,
                                                     monkeypatch):
    sim = simulator_factory(n_records=900)
    monkeypatch.setenv("SOURCES__QUORUM__BASE_URL", sim.base_url)
    database = tmp_path / "plain.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="plain_quorum",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="quorum_raw",
    )
    info = pipeline.run(quorum_source())
    assert not info.has_failed_jobs
    assert sim.stats.requests > 900 // 150  # it paged, with the page size from the environment
    assert_warehouse_equals(database, sim.world.ground_truth())

    # a second run reads on from the saved cursor: a changed record is merged, not duplicated
    touched = sim.world.touch(ids=[sim.world.ground_truth()[0]["id"]])
    assert touched
    sim.stats.reset()
    pipeline.run(quorum_source())
    assert sim.stats.requests > 0
    assert_warehouse_equals(database, sim.world.ground_truth())
    with duckdb.connect(str(database), read_only=True) as connection:
        (count,) = connection.execute("select count(*) from quorum_raw.sendsms").fetchone()
    assert count == 900


def test_a_missing_key_fails_before_any_request(dlt_env, simulator_factory, monkeypatch):
    sim = simulator_factory(n_records=10)
    monkeypatch.setenv("SOURCES__QUORUM__BASE_URL", sim.base_url)
    monkeypatch.delenv("SOURCES__QUORUM__API_KEY")
    with pytest.raises(Exception, match="No Quorum credentials are configured"):
        quorum_source()
    assert sim.stats.requests == 0

"""Operator mistakes that used to lose data or freeze the pipeline (issue 12, items 1-3).

`--since` may move the start back (a backfill that merges), never forward past the saved
cursor minus the lag, never into the future; commands that write the warehouse take the
run lock; a run history that cannot be written never hides the run's own error.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main
from pipelines.config import load_sync_config
from pipelines.lock import database_lock
from pipelines.simulator import Faults
from pipelines.sync import DUCKDB_LOAD_ATTEMPTS, database_failure_text
from pipelines.warehouse import memory
from tests.e2e.test_interrupts import marts_digest
from tests.e2e.test_sync import saved_cursor, sync, table_digest, to_utc
from tests.e2e.truth import assert_warehouse_equals
from tests.ops.helpers import history

ROOT = Path(__file__).resolve().parents[2]
#: A DuckDB ceiling the small world's merge cannot run in (the read and the run history can).
LOAD_OOM_CEILING = "8MB"


def test_since_past_the_saved_cursor_is_refused_and_nothing_is_skipped(
    sync_env, simulator_factory, capsys
):
    sim = simulator_factory(n_records=2000)
    assert sync(capsys, sim.base_url)[0] == 0
    cursor = to_utc(saved_cursor(sync_env))
    sim.world.advance(timedelta(days=2))
    before = (table_digest(sync_env), saved_cursor(sync_env), len(history(sync_env)))
    ahead = (cursor + timedelta(days=1)).isoformat()
    sim.stats.reset()
    code, output = sync(capsys, sim.base_url, "--since", ahead)
    assert code == 2, output
    assert "--full-refresh" in output and "never be read" in output
    assert (table_digest(sync_env), saved_cursor(sync_env), len(history(sync_env))) == before
    assert sim.stats.requests == 0  # refused before a single request
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_since_inside_the_lag_window_is_refused(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=800)
    assert sync(capsys, sim.base_url)[0] == 0
    cursor = to_utc(saved_cursor(sync_env))
    inside = (cursor - timedelta(minutes=5)).isoformat()  # the default lag is an hour
    code, output = sync(capsys, sim.base_url, "--since", inside)
    assert code == 2, output


def test_earlier_since_re_reads_from_that_date_and_merges(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=2000)
    assert sync(capsys, sim.base_url)[0] == 0
    truth = sim.world.ground_truth()
    since = sorted(to_utc(r["updated"]) for r in truth)[len(truth) // 2]
    expected_reads = sum(1 for r in truth if to_utc(r["updated"]) >= since)
    # a record lost from the warehouse comes back with the backfill
    with duckdb.connect(str(sync_env)) as connection:
        connection.execute(
            "delete from quorum_raw.sendsms where id = (select max(id) from quorum_raw.sendsms)"
        )
    sim.stats.reset()
    code, output = sync(capsys, sim.base_url, "--since", since.isoformat())
    assert code == 0, output
    assert "backfill: re-read from --since" in output
    assert sim.stats.records_served >= expected_reads
    assert_warehouse_equals(sync_env, truth)
    sim.world.advance(timedelta(days=1))
    assert sync(capsys, sim.base_url)[0] == 0
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_future_since_on_a_new_database_is_refused_and_writes_nothing(sync_env, capsys):
    code = main(["sync", "--base-url", "http://127.0.0.1:9", "--since", "2100-01-01"])
    output = "".join(capsys.readouterr())
    assert code == 2, output
    assert "in the future" in output
    assert not sync_env.parent.exists()


def test_future_since_with_full_refresh_drops_nothing(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=800)
    assert main(["sync", "--base-url", sim.base_url]) == 0
    capsys.readouterr()
    before = (table_digest(sync_env), saved_cursor(sync_env), marts_digest(sync_env))
    code = main(["sync", "--base-url", sim.base_url, "--full-refresh", "--since", "2100-01-01"])
    output = "".join(capsys.readouterr())
    assert code == 2, output
    assert (table_digest(sync_env), saved_cursor(sync_env), marts_digest(sync_env)) == before


def test_models_and_reconcile_wait_for_the_lock_then_refuse(
    sync_env, simulator_factory, capsys, monkeypatch
):
    sim = simulator_factory(n_records=600)
    assert main(["sync", "--base-url", sim.base_url]) == 0
    marts = marts_digest(sync_env)
    runs = len(history(sync_env))
    capsys.readouterr()
    monkeypatch.setenv("QUORUM_LOCK_WAIT_SECONDS", "0.2")
    with database_lock(sync_env, 0):
        assert main(["models"]) == 1
        assert main(["reconcile", "--base-url", sim.base_url]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("Another quorum-sms run is using") == 2, err
    assert marts_digest(sync_env) == marts and len(history(sync_env)) == runs


def sync_process(base_url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "sync", "--no-models", "--base-url", base_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_models_refuses_while_a_sync_is_loading(sync_env, simulator_factory, capsys, monkeypatch):
    sim = simulator_factory(n_records=1500)
    assert main(["sync", "--base-url", sim.base_url]) == 0
    marts = marts_digest(sync_env)
    sim.world.advance(timedelta(days=1))
    sim.pause_api()
    process = sync_process(sim.base_url, {})
    try:
        assert sim.wait_for_held(1, timeout=120), "the sync never asked for a page"
        monkeypatch.setenv("QUORUM_LOCK_WAIT_SECONDS", "0")
        capsys.readouterr()
        assert main(["models"]) == 1
        assert "Another quorum-sms run is using" in " ".join(capsys.readouterr().err.split())
    finally:
        sim.resume_api()
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    assert marts_digest(sync_env) == marts  # models never ran in between
    assert [row["status"] for row in history(sync_env)] == ["succeeded", "succeeded"]


def test_a_history_that_cannot_be_written_never_hides_the_error(sync_env, simulator_factory):
    sim = simulator_factory(n_records=1500)
    first = sync_process(sim.base_url, {})
    assert first.wait(timeout=180) == 0, first.communicate()
    sim.world.advance(timedelta(days=1))
    sim.pause_api()
    quick_to_fail = {"SOURCES__QUORUM__MAX_ATTEMPTS": "2", "SOURCES__QUORUM__BACKOFF_INITIAL": "0"}
    process = sync_process(sim.base_url, quick_to_fail)
    try:
        # the run has started its history row and is reading; now another process (this
        # test) holds the DuckDB file, so the run cannot write the row's end
        assert sim.wait_for_held(1, timeout=120), "the sync never asked for a page"
        holder = duckdb.connect(str(sync_env))
        sim.faults = Faults(error_rate=1.0, seed=4)
    finally:
        sim.resume_api()
    try:
        output, _ = process.communicate(timeout=180)
        rows = holder.execute("select status from quorum_ops.sync_runs order by started_at")
        statuses = [row[0] for row in rows.fetchall()]
    finally:
        holder.close()
    text = " ".join(output.split())
    assert process.returncode == 4, output  # the API's failure, not the history's
    assert "kept failing" in text
    assert "warning: the run history could not record this run's end" in text
    assert statuses == ["succeeded", "running"]
    sim.faults = Faults()
    again = sync_process(sim.base_url, {})
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    assert [row["status"] for row in history(sync_env)] == ["succeeded", "interrupted", "succeeded"]


@pytest.fixture
def dlt_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """`caplog`, also holding the records of dlt's own logger: dlt stops that logger
    propagating to the root (where caplog listens) once a pipeline initialises it, so without
    this the records reached caplog only after another test had set dlt's logger up."""
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        dlt_logger.removeHandler(caplog.handler)


def _dlt_failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """dlt's log records of the failed load jobs, as its handlers format them."""
    return [
        record for record in caplog.records
        if record.name == "dlt" and "Out of Memory" in record.getMessage()
    ]


def test_a_memory_ceiling_too_small_for_the_load_says_so_and_loses_nothing(
    sync_env, simulator_factory, capsys, monkeypatch, dlt_log
):
    """DuckDB out of memory in the load: retried on new connections (never on the one the
    failed attempt left in a half-done transaction), then one clear error naming the setting;
    the unfinished load is finished first by the next run, and nothing is lost."""
    sim = simulator_factory(n_records=2000)
    assert sync(capsys, sim.base_url)[0] == 0
    sim.world.advance(timedelta(hours=6))
    sim.world.touch(fraction=0.2)

    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", LOAD_OOM_CEILING)
    code, output = sync(capsys, sim.base_url, "--no-models")
    assert code == 1, output
    assert "load step: DuckDB ran out of its memory ceiling (Out of Memory Error" in output, output
    assert f"duckdb_memory_limit (now {LOAD_OOM_CEILING};" in output, output
    assert "Conflict" not in output, output
    # dlt's ~90 lines of traceback per failed attempt come down to one line each
    failures = _dlt_failure_records(dlt_log)
    assert len(failures) >= 2 * DUCKDB_LOAD_ATTEMPTS, failures
    for record in failures:
        assert record.exc_info is None and "\n" not in record.getMessage(), record.getMessage()
        assert record.getMessage().endswith(")") and "(Out of Memory Error:" in record.getMessage()
    # the job that failed waits for the next run (so may one never started, with 0 attempts);
    # dlt counts each job's attempts in its file name
    pending = list(Path(f"{sync_env}.dlt").glob("quorum_sms/load/normalized/*/new_jobs/*.sql"))
    attempts = [int(job.name.split(".")[-2]) for job in pending]
    assert attempts and max(attempts) == DUCKDB_LOAD_ATTEMPTS, pending

    monkeypatch.delenv("QUORUM_DUCKDB_MEMORY_LIMIT")
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "finished the load a previous run left pending" in output, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_an_auto_memory_ceiling_too_small_for_the_load_is_raised_and_the_night_succeeds(
    sync_env, simulator_factory, capsys, monkeypatch, dlt_log
):
    """With `duckdb_memory_limit = auto`, a load that runs out of the small ceiling is tried
    again on a new connection at the larger one: the run succeeds, says so, loses nothing."""
    sim = simulator_factory(n_records=2000)
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", "auto")
    assert sync(capsys, sim.base_url, "--no-models")[0] == 0
    sim.world.advance(timedelta(hours=6))
    sim.world.touch(fraction=0.2)

    monkeypatch.setattr(memory, "SMALL_LIMIT", LOAD_OOM_CEILING)  # the one the test above fails at
    code, output = sync(capsys, sim.base_url, "--no-models")
    assert code == 0, output
    text = " ".join(output.split())
    assert (
        f"DuckDB ran out of its memory ceiling ({LOAD_OOM_CEILING}, duckdb_memory_limit = auto) "
        f"in the load: tried again at {memory.LARGE_LIMIT}"
    ) in text, output
    failures = _dlt_failure_records(dlt_log)
    assert failures, "the first attempt's failure was not logged"
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failures), failures
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_a_night_s_load_under_auto_is_sized_by_the_vectors_its_records_reach(
    sync_env, simulator_factory, capsys, monkeypatch, caplog
):
    """A load into a warehouse with history counts the vectors of the raw tables its records
    lie in and takes the floor plus room for each (at most the file's share); a first sync's
    load is sized by its window instead, with nothing counted."""
    sim = simulator_factory(n_records=2000)
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", "auto")
    caplog.set_level(logging.DEBUG, logger="pipelines.sync")

    def told(start: str) -> list[str]:
        return [
            r.getMessage().removeprefix(start) for r in caplog.records
            if r.getMessage().startswith(start)
        ]

    assert sync(capsys, sim.base_url, "--no-models")[0] == 0
    assert told("the window's records lie in") == []
    assert told("loading a window at DuckDB's memory ceiling ") == [memory.SMALL_LIMIT]
    with duckdb.connect(str(sync_env), read_only=True) as connection:
        (every_vector,) = connection.execute(
            "select (select count(distinct rowid // 2048) from quorum_raw.sendsms) + "
            "(select count(distinct rowid // 2048) from quorum_raw.sendsms_events)"
        ).fetchall()[0]
    caplog.clear()

    sim.world.advance(timedelta(hours=6))
    sim.world.touch(fraction=0.2)  # 400 records: every vector of the small tables
    monkeypatch.setattr(memory, "FILE_SHARE", 0.000001)  # this file's share is then the cap
    monkeypatch.setattr(memory, "MARKER_BYTES_PER_VECTOR", 40_000_000)
    code, output = sync(capsys, sim.base_url, "--no-models")
    assert code == 0, output
    assert told("the window's records lie in ") == [f"{every_vector} vectors of the raw tables"]
    assert told("loading a window at DuckDB's memory ceiling ") == [
        f"{64 + 40 * every_vector}MB"
    ]
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_out_of_memory_under_auto_names_the_ceilings_it_used(tmp_path, monkeypatch):
    """The advice after DuckDB ran out of memory says what `auto` chose for this warehouse
    and how far a load's retries went, so the fixed value to set is clear."""
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", "auto")
    config = load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))
    text = database_failure_text(config, "Out of Memory Error: failed to pin block")
    assert text == (
        "DuckDB ran out of its memory ceiling (Out of Memory Error: failed to pin block). Raise "
        "[quorum_sms] duckdb_memory_limit (now auto: 64MB at this warehouse's size, up to 512MB "
        "in a load's retries; QUORUM_DUCKDB_MEMORY_LIMIT in the environment), say to twice "
        "that, and run again"
    )
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", "300MB")
    config = load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))
    assert "duckdb_memory_limit (now 300MB;" in database_failure_text(config, "Out of Memory")

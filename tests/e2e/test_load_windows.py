"""A sync larger than `records_per_load` loads window by window (`sync._sync`, `load_windows`).

Every window is a dlt load of its own that moves the cursor with its data, so the result
must be exactly the ground truth however the run is cut up, with records changing while it
pages, duplicated on a page, or the run killed between two windows.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.quorum.client import QuorumClient
from pipelines.quorum.slicing import plan_load_windows
from pipelines.quorum.timestamps import parse_api_time
from pipelines.simulator import Faults
from pipelines.sync import pipelines_dir_for
from pipelines.warehouse import memory
from tests.conftest import API_KEY, API_USER
from tests.e2e.test_operator_mistakes import LOAD_OOM_CEILING
from tests.e2e.test_sync import (
    PENDING_PACKAGE_FOLDERS,
    ROOT,
    load_packages,
    run_sync_process,
    saved_cursor,
    sync,
    wait_until,
)
from tests.e2e.truth import assert_warehouse_equals, warehouse_sendsms

START = datetime(2000, 1, 1, tzinfo=UTC)


def load_count(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        row = connection.execute("select count(*) from quorum_raw._dlt_loads").fetchone()
    return int(row[0]) if row else 0


def test_windows_cover_the_range_in_order(simulator_factory):
    sim = simulator_factory(n_records=2000)
    with QuorumClient(sim.base_url, API_USER, API_KEY) as client:
        windows = plan_load_windows(client, START, max_records=600)
        assert plan_load_windows(client, START, max_records=0) == [None]
        assert plan_load_windows(client, START, max_records=2000) == [None]
    assert len(windows) == 4 and windows[-1] is None
    bounds = [w for w in windows if w is not None]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    updated = sorted(parse_api_time(r["updated"]) for r in sim.world.ground_truth())
    assert updated[0] < bounds[0] and bounds[-1] <= updated[-1]


def _window_sizes(updated: list[datetime], bounds: list[datetime]) -> list[int]:
    edges = [START, *bounds, None]
    return [
        sum(1 for u in updated if lo <= u and (hi is None or u < hi))
        for lo, hi in itertools.pairwise(edges)
    ]


def test_windows_hold_equal_counts_where_history_is_uneven(simulator_factory):
    """A load's memory follows its records, so windows are cut by count (the record at each
    window's position of the `updated` ordering), not by equal spans of time."""
    sim = simulator_factory(n_records=6000)
    updated = [parse_api_time(r["updated"]) for r in sim.world.ground_truth()]
    with QuorumClient(sim.base_url, API_USER, API_KEY) as client:
        windows = plan_load_windows(client, START, max_records=1000)
        probes = client.stats.requests
    assert len(windows) == 6 and probes == 2 + 5  # the range's two ends, one per bound
    sizes = _window_sizes(updated, [w for w in windows if w is not None])
    assert sum(sizes) == 6000
    assert all(abs(size - 1000) <= 10 for size in sizes), sizes  # ties at a bound's instant
    # the world is uneven: windows of equal spans would not be close to equal
    oldest, newest = min(updated), max(updated)
    spans = [oldest + (newest - oldest) * i / 6 for i in range(1, 6)]
    assert max(_window_sizes(updated, spans)) > 1.3 * 1000, _window_sizes(updated, spans)


def test_a_server_that_cannot_filter_gets_one_window(simulator_factory):
    sim = simulator_factory(n_records=2000, faults=Faults(refuse_range_filters=True))
    with QuorumClient(sim.base_url, API_USER, API_KEY, max_attempts=2) as client:
        assert plan_load_windows(client, START, max_records=600) == [None]


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(mutate_while_paging=5, seed=3), Faults(duplicate_ids=(10, 700, 1500))],
    ids=["still", "changing-while-paging", "duplicated-on-a-page"],
)
def test_a_windowed_sync_equals_ground_truth(
    sync_env, simulator_factory, capsys, monkeypatch, faults
):
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "700")
    sim = simulator_factory(n_records=3000, faults=faults)
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "windows of about 700 records" in output
    assert load_count(sync_env) >= 4, "the sync did not load window by window"
    sim.faults = Faults()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    # the next night reads only what changed, in one window
    sim.world.advance(timedelta(days=1))
    touched = sim.world.touch(fraction=0.01)
    assert touched
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "windows of about" not in output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_windowed_full_scan_fallback_reads_everything_once(sync_env, simulator_factory, capsys,
                                                            monkeypatch):
    # the probes succeed, then the list pages ignore ordering: the first window's pager
    # falls back to a full scan, which reads every record; no second window follows
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "500")
    sim = simulator_factory(n_records=2000, faults=Faults(ignore_order_by=True))
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "full-scan" in output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_killed_between_windows_keeps_the_loaded_ones_and_the_next_run_is_exact(
    sync_env, simulator_factory
):
    sim = simulator_factory(n_records=3000, faults=Faults(latency_ms=20))
    env = {
        **os.environ,
        "SOURCES__QUORUM__PAGE_SIZE": "100",
        "QUORUM_RECORDS_PER_LOAD": "600",
        "PYTHONPATH": str(ROOT),
    }
    pipeline_dir = pipelines_dir_for(sync_env) / "quorum_sms"
    state_file = pipeline_dir / "state.json"

    def first_window_read() -> bool:
        # dlt writes the local state when a window's read ends, before its load
        return state_file.exists() and '"last_value"' in state_file.read_text()

    process = run_sync_process(sim.base_url, env)
    wait_until(first_window_read)
    sim.pause_api()  # the run is now held at its next request, in a later window's read
    assert sim.wait_for_held(1, timeout=60), "the run made no further request"
    # the window before it may still be loading beside the read; dlt moves a package to
    # `load/loaded` once its data and cursor are committed, and the run deletes it only
    # after its next read, which the simulator now holds
    wait_until(lambda: bool(load_packages(pipeline_dir, "load/loaded")))
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    sim.resume_api()

    cursor = saved_cursor(sync_env)
    assert cursor is not None, "the windows loaded before the kill were lost"
    kept = set(warehouse_sendsms(sync_env))
    truth = sim.world.ground_truth()
    assert 0 < len(kept) < len(truth)
    # what was kept is exactly every record up to the saved cursor: nothing skipped below it
    limit = parse_api_time(cursor)
    assert kept == {r["id"] for r in truth if parse_api_time(r["updated"]) <= limit}

    process = run_sync_process(sim.base_url, env)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


@pytest.mark.parametrize("beside", [True, False], ids=["beside-the-read", "one-after-another"])
def test_a_window_load_failing_beside_the_next_read_stops_the_run_and_loses_nothing(
    sync_env, simulator_factory, capsys, monkeypatch, beside
):
    """A window's load runs beside the next window's read (`sync._sync`). When it fails, the
    run stops with the load's own error once that read is done; the read window waits as a
    package, and the next run loads what is pending (in order) before it reads on. With
    `load_beside_read = false` the run stops before the next window is read."""
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "700")
    monkeypatch.setenv("QUORUM_LOAD_BESIDE_READ", str(beside).lower())
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", LOAD_OOM_CEILING)
    sim = simulator_factory(n_records=3000)
    code, output = sync(capsys, sim.base_url)
    assert code == 1, output
    # the first window's load (or its clean-up, which is part of it) ran out of memory
    assert "DuckDB ran out of its memory ceiling" in output, output
    # the second window, read beside that load, waits as an extracted package
    pipeline_dir = pipelines_dir_for(sync_env) / "quorum_sms"
    assert bool(load_packages(pipeline_dir, "normalize/extracted")) is beside
    # (a failed clean-up after a complete load leaves nothing pending)
    pending = bool(load_packages(pipeline_dir, *PENDING_PACKAGE_FOLDERS))
    # (what committed of that window's load is finished by the next run: dlt commits a
    # package table by table, `docs/operations.md`)

    monkeypatch.delenv("QUORUM_DUCKDB_MEMORY_LIMIT")
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert ("finished the load a previous run left pending" in output) is pending, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def _told(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    """The rest of each of the sync's log lines starting with `prefix`."""
    return [
        r.getMessage().removeprefix(prefix) for r in caplog.records
        if r.name == "pipelines.sync" and r.getMessage().startswith(prefix)
    ]


def _load_ceilings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return _told(caplog, "loading a window at DuckDB's memory ceiling ")


@pytest.mark.parametrize("full_refresh", [False, True], ids=["first-sync", "full-refresh"])
def test_loads_into_an_empty_warehouse_are_sized_by_their_window_not_the_file(
    sync_env, simulator_factory, capsys, monkeypatch, caplog, full_refresh
):
    """`auto` sizes a load's DuckDB ceiling by the warehouse file, for the deletes a night's
    merge makes into its history. A run that began on an empty warehouse (a first sync, or
    --full-refresh) deletes from nothing, so each of its windows loads at what its records
    need (here the floor) however large the file has grown, with nothing counted; the next
    night's load goes back to what its deletes reach (`memory.night_limit`)."""
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "700")
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", "auto")
    monkeypatch.setattr(memory, "FILE_SHARE", 0.000001)  # any file is then past the cap
    caplog.set_level(logging.DEBUG, logger="pipelines.sync")
    sim = simulator_factory(n_records=3000)
    if full_refresh:
        assert sync(capsys, sim.base_url, "--no-models")[0] == 0
        sim.world.advance(timedelta(hours=6))
        sim.world.touch(fraction=0.2)
        caplog.clear()
    code, output = sync(capsys, sim.base_url, "--no-models",
                        *(["--full-refresh"] if full_refresh else []))
    assert code == 0, output
    ceilings = _load_ceilings(caplog)
    assert len(ceilings) >= 4, output  # window by window, the file past the cap after the first
    assert set(ceilings) == {memory.SMALL_LIMIT}, ceilings
    assert not _told(caplog, "the window's records lie in ")
    assert_warehouse_equals(sync_env, sim.world.ground_truth())

    sim.world.advance(timedelta(hours=6))
    sim.world.touch(fraction=0.01)
    monkeypatch.setattr(memory, "MARKER_BYTES_PER_VECTOR", 20_000_000)
    caplog.clear()
    code, output = sync(capsys, sim.base_url, "--no-models")
    assert code == 0, output
    # each window counted, then loaded at the floor plus 20MB a vector (an empty window, of
    # the lag's unchanged re-reads, at the floor)
    counted = [int(told.split()[0]) for told in _told(caplog, "the window's records lie in ")]
    assert sum(counted) >= 1, counted
    assert _load_ceilings(caplog) == [f"{64 + 20 * vectors}MB" for vectors in counted], output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def _config_traces_held() -> int:
    """dlt's logged setting resolutions, over every thread's context in this process."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.utils import TraceLogContext

    return sum(
        len(context[TraceLogContext].all_traces)
        for context, _ in Container().thread_contexts.values()
        if TraceLogContext in context
    )


def test_a_windowed_sync_does_not_keep_what_dlt_resolved_for_each_window(
    sync_env, simulator_factory, capsys, monkeypatch
):
    """dlt logs every setting it resolves into a per-thread list that only a finished runtime
    trace empties; the loads beside the next read run without one. What the run holds at its
    end must not grow with its windows (it grew ~1 MB a window: ~30 MB over a 10M first sync)."""
    sim = simulator_factory(n_records=3000)
    monkeypatch.setenv("QUORUM_LOAD_BESIDE_READ", "true")
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "5000")
    before = _config_traces_held()
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    one_window = _config_traces_held() - before

    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "300")
    before = _config_traces_held()
    code, output = sync(capsys, sim.base_url, "--full-refresh")  # every record again
    assert code == 0, output
    assert "windows" in output, output  # it did load window by window
    many_windows = _config_traces_held() - before
    assert many_windows <= one_window, (one_window, many_windows)
    assert_warehouse_equals(sync_env, sim.world.ground_truth())

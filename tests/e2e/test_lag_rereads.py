"""The lag window's re-reads: a record read again as the warehouse holds it is not loaded again.

Simulator over HTTP on loopback -> a real DuckDB file, `quorum-sms sync` in-process.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.ops.history import recent_runs
from pipelines.simulator import SimulatorServer
from tests.e2e.test_postgres import run_cli
from tests.e2e.test_sync import sync, to_utc
from tests.e2e.truth import assert_warehouse_equals

#: wide enough that a 2,500-record world (30 days of history) has many records inside it
LAG = timedelta(days=3)


@pytest.fixture
def wide_lag(sync_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCES__QUORUM__LAG_SECONDS", str(int(LAG.total_seconds())))
    return sync_env


def load_ids(database: Path, table: str, key: str) -> dict[tuple[object, ...], str]:
    """Each row's key and the dlt load that wrote it."""
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute(
            f"select {key}, _dlt_load_id from quorum_raw.{table}"
        ).fetchall()
    return {tuple(row[:-1]): str(row[-1]) for row in rows}


def versions(sim: SimulatorServer) -> dict[int, datetime]:
    return {int(r["id"]): to_utc(r["updated"]) for r in sim.world.ground_truth()}


def reported(output: str, label: str) -> int:
    found = re.search(rf"^\s*{label}\s+([\d,]+)", output, re.MULTILINE)
    assert found, output
    return int(found.group(1).replace(",", ""))


def test_unchanged_rereads_keep_their_rows_and_changed_ones_load(
    wide_lag: Path, simulator_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    sim: SimulatorServer = simulator_factory(n_records=2500)  # type: ignore[operator]
    assert sync(capsys, sim.base_url)[0] == 0
    before = versions(sim)
    cursor = max(before.values())
    in_window = sorted(i for i, updated in before.items() if updated >= cursor - LAG)
    outside = sorted(set(before) - set(in_window))
    assert len(in_window) >= 100, "the window should hold many records already loaded"
    touched = set(sim.world.touch(ids=in_window[::10] + outside[:20]))
    after = versions(sim)
    unchanged = {i for i in in_window if after[i] == before[i]}
    assert unchanged and len(unchanged) == len(in_window) - len(set(in_window) & touched)
    # one unchanged record was marked deleted by a reconcile that was wrong: the API still
    # serves it, so this sync loads it again and clears the mark
    marked = min(unchanged)
    unchanged.remove(marked)
    with duckdb.connect(str(wide_lag)) as connection:
        connection.execute(
            "update quorum_raw.sendsms set source_deleted_at = now() where id = ?", [marked]
        )
    sendsms_loads = load_ids(wide_lag, "sendsms", "id")
    event_loads = load_ids(wide_lag, "sendsms_events", "sendsms_id, event_type")

    code, output = sync(capsys, sim.base_url)

    assert code == 0, output
    assert_warehouse_equals(wide_lag, sim.world.ground_truth())
    assert reported(output, "records fetched") == len(unchanged) + len(touched) + 1
    assert reported(output, "unchanged") == len(unchanged)
    assert reported(output, "updated") == len(touched) + 1
    newest = recent_runs(wide_lag, limit=1)[0]
    assert (newest["records_unchanged"], newest["records_loaded"]) == (
        len(unchanged), len(touched) + 1
    )
    code, status = run_cli(capsys, "status", "--database", str(wide_lag))
    assert code == 0, status
    assert f"{len(unchanged)} unchanged (read again as stored)" in status
    new_sendsms = load_ids(wide_lag, "sendsms", "id")
    assert all(new_sendsms[(i,)] == sendsms_loads[(i,)] for i in unchanged)
    assert all(new_sendsms[(i,)] != sendsms_loads[(i,)] for i in touched | {marked})
    with duckdb.connect(str(wide_lag), read_only=True) as connection:
        marks = connection.execute(
            "select count(*) from quorum_raw.sendsms where source_deleted_at is not null"
        ).fetchone()
    assert marks == (0,)
    new_events = load_ids(wide_lag, "sendsms_events", "sendsms_id, event_type")
    kept = {key: load for key, load in event_loads.items() if key[0] in unchanged}
    assert kept and all(new_events[key] == load for key, load in kept.items())
    assert all(load != event_loads.get(key) for key, load in new_events.items()
               if key[0] in touched)

    # a night with no change at all reads the window again and loads nothing
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert reported(output, "unchanged") == reported(output, "records fetched") > 0
    assert load_ids(wide_lag, "sendsms", "id") == new_sendsms


def test_a_since_backfill_loads_every_record_it_reads_again(
    wide_lag: Path, simulator_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--since` re-reads to rewrite (after a policy change, say): nothing is skipped."""
    sim: SimulatorServer = simulator_factory(n_records=1500)  # type: ignore[operator]
    assert sync(capsys, sim.base_url)[0] == 0
    first = load_ids(wide_lag, "sendsms", "id")
    code, output = sync(capsys, sim.base_url, "--since", "2000-01-01")
    assert code == 0, output
    assert reported(output, "records fetched") == 1500
    assert reported(output, "unchanged") == 0
    again = load_ids(wide_lag, "sendsms", "id")
    assert again.keys() == first.keys()
    assert all(again[key] != first[key] for key in first)
    assert_warehouse_equals(wide_lag, sim.world.ground_truth())


def test_full_refresh_loads_every_record_it_reads(
    wide_lag: Path, simulator_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    sim: SimulatorServer = simulator_factory(n_records=1500)  # type: ignore[operator]
    assert sync(capsys, sim.base_url)[0] == 0
    code, output = sync(capsys, sim.base_url, "--full-refresh")
    assert code == 0, output
    assert reported(output, "unchanged") == 0
    assert_warehouse_equals(wide_lag, sim.world.ground_truth())

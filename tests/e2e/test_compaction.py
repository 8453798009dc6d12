"""Row-group merges (DuckDB's vacuum) wait for every `duckdb_compact_every`-th nightly run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.simulator import SimulatorServer
from tests.ops.helpers import history, query, run

#: Tables a night rewrites by key: the raw records and their events, and the fact mart.
TABLES = ("quorum_raw.sendsms", "quorum_raw.sendsms_events", "analytics.fct_sms_message")


def row_groups(database: Path) -> dict[str, int]:
    """How many row groups each of TABLES has."""
    return {
        table: query(
            database,
            f"select count(distinct row_group_id) from pragma_storage_info('{table}')",
        )[0][0]
        for table in TABLES
    }


def nights(
    sync_env: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str], count: int
) -> tuple[list[dict[str, int]], list[str]]:
    """A first sync, then `count` nights with 5 % of the records changed before each.

    Returns the row groups after each run and each run's stderr.
    """
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, err
    groups, errors = [row_groups(sync_env)], [err]
    for _ in range(count):
        sim.world.touch(fraction=0.05)
        code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
        assert code == 0, err
        groups.append(row_groups(sync_env))
        errors.append(err)
    return groups, errors


def test_nights_append_row_groups_that_the_compacting_run_merges(
    sync_env, simulator_factory, capsys, monkeypatch
):
    monkeypatch.setenv("QUORUM_DUCKDB_COMPACT_EVERY", "3")
    groups, errors = nights(sync_env, simulator_factory(n_records=1500), capsys, count=3)

    assert [row["compacted"] for row in history(sync_env)] == [True, False, False, True]
    for table in TABLES:
        after = [night[table] for night in groups]
        # the nights between: each load (and each build) adds its rows as a row group of their
        # own and merges nothing; a row group whose every row was replaced goes (the second
        # night re-reads the first night's records, all recent), so the count never falls
        assert after[1] == after[0] + 1 and after[2] >= after[1], (table, after)
    # the third night may merge: tables of fewer than 2,048 rows (DuckDB's vector) go back to
    # one row group (the events, ~4,000 rows, merge by DuckDB's size rules)
    assert groups[3]["quorum_raw.sendsms"] == groups[3]["analytics.fct_sms_message"] == 1
    assert not any("may merge row groups" in err for err in errors[:3])
    assert "may merge row groups in this run, one run in 3" in errors[3]
    assert "2 since the last" in errors[3]


def test_with_compact_every_1_every_night_merges_as_duckdb_does(
    sync_env, simulator_factory, capsys, monkeypatch
):
    # the control: the growth above is the setting's doing, not DuckDB's
    monkeypatch.setenv("QUORUM_DUCKDB_COMPACT_EVERY", "1")
    groups, errors = nights(sync_env, simulator_factory(n_records=1500), capsys, count=2)

    assert [row["compacted"] for row in history(sync_env)] == [True, True, True]
    for table in ("quorum_raw.sendsms", "analytics.fct_sms_message"):
        assert [night[table] for night in groups] == [1, 1, 1], table
    assert not any("may merge row groups" in err for err in errors)

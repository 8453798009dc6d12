"""PostgreSQL indexes, end to end: simulator over HTTP -> dlt -> PostgreSQL -> models.

The sync gives the raw tables their indexes right after the load that creates them (and again
after `--full-refresh` recreates them); a full model build indexes every keyed table; the
statements a nightly runs can use them; and an incremental nightly over the indexed tables
still equals a full rebuild.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.warehouse.database import DEFAULT_SQL_DIR, RAW_SCHEMA
from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.models import discover_models
from pipelines.warehouse.pg_indexes import RAW_INDEXES, index_name, model_index_columns
from tests.e2e.test_postgres import run_cli
from tests.warehouse.test_engines import assert_same, snapshot

PG = ("--destination", "postgres")


@pytest.fixture
def pg_env(sync_env: Path, postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The PostgreSQL warehouse as the destination, in dlt's own credentials variable."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_database)
    monkeypatch.setenv("QUORUM_DESTINATION", "postgres")
    return postgres_database


def indexes(credentials: str, schema: str) -> dict[str, str]:
    """Index name -> definition, for every index of a schema."""
    with open_warehouse(credentials) as warehouse:
        rows = warehouse.query(
            "select indexname, indexdef from pg_indexes where schemaname = ?", [schema]
        ).rows
    return {str(name): str(definition) for name, definition in rows}


def table_oid(credentials: str, relation: str) -> int:
    """The table's object id: a new one means the table was dropped and created again."""
    with open_warehouse(credentials) as warehouse:
        return int(warehouse.query(f"select '{relation}'::regclass::oid").rows[0][0])


def expected_mart_indexes() -> dict[str, set[str]]:
    """Schema -> the index names every keyed table model must have."""
    wanted: dict[str, set[str]] = {}
    for model in discover_models(DEFAULT_SQL_DIR):
        for column in model_index_columns(model):
            wanted.setdefault(model.schema, set()).add(index_name(model.name, column))
    return wanted


def assert_all_indexes(credentials: str) -> None:
    raw = indexes(credentials, RAW_SCHEMA)
    for index in RAW_INDEXES:
        assert index.name in raw, f"{index.name} missing from {sorted(raw)}"
        assert f"({index.columns})" in raw[index.name], raw[index.name]
        if index.where:
            assert index.where in raw[index.name].lower(), raw[index.name]
    for schema, names in expected_mart_indexes().items():
        present = set(indexes(credentials, schema))
        assert names <= present, f"{schema}: {sorted(names - present)} missing"


def plan_of(credentials: str, statement: str) -> str:
    """The plan PostgreSQL would run, with sequential scans priced out: an index the
    statement can use appears in it, whatever the (tiny) table sizes make cheapest."""
    with open_warehouse(credentials) as warehouse:
        warehouse.execute("set enable_seqscan = off")
        rows = warehouse.query(f"explain {statement}").rows
    return "\n".join(str(row[0]) for row in rows)


def test_indexes_follow_first_sync_full_refresh_and_full_build(
    pg_env: str, sync_env: Path, simulator_factory, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # several load windows: the later windows' merges run with the first one's indexes
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "250")
    sim = simulator_factory(n_records=700, seed=31)
    raw = f"{RAW_SCHEMA}.sendsms"
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, "--no-models")
    assert code == 0 and "windows" in output, output
    assert set(indexes(pg_env, RAW_SCHEMA)) >= {index.name for index in RAW_INDEXES}

    # --full-refresh: dlt drops and recreates the raw tables; their indexes come back.
    # (Before any model build; after one, see tests/e2e/test_full_refresh.py.)
    before = table_oid(pg_env, raw)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, "--full-refresh",
                           "--no-models")
    assert code == 0, output
    assert table_oid(pg_env, raw) != before
    assert set(indexes(pg_env, RAW_SCHEMA)) >= {index.name for index in RAW_INDEXES}

    # the first model build indexes every keyed table
    code, output = run_cli(capsys, "models")
    assert code == 0 and "full build" in output, output
    assert_all_indexes(pg_env)

    # the statements of a nightly can use them (each names the index it needs)
    with open_warehouse(pg_env) as warehouse:
        load_id = str(warehouse.query(f"select max(_dlt_load_id) from {raw}").rows[0][0])
    events = f"{RAW_SCHEMA}.sendsms_events"
    cleanup = plan_of(
        pg_env,
        f"delete from {events} using {raw} as r where r._dlt_load_id >= '{load_id}' "
        f"and r.id = {events}.sendsms_id and r.updated is distinct from {events}.updated",
    )
    assert "sendsms___dlt_load_id" in cleanup and "sendsms_events__sendsms_id" in cleanup
    merge = plan_of(pg_env, f"select 1 from {raw} as d where d.id in (1, 2, 3)")
    assert "sendsms__id" in merge, merge
    changed = plan_of(pg_env, f"select sendsms_id from {events} where _dlt_load_id > '{load_id}'")
    assert "sendsms_events___dlt_load_id" in changed, changed
    versions = plan_of(pg_env, f"select id, updated from {raw} where updated >= now()")
    assert "sendsms__updated" in versions, versions
    deleted = plan_of(pg_env, f"select id from {raw} where source_deleted_at is not null")
    assert "sendsms__deleted_id" in deleted, deleted
    lookup = plan_of(
        pg_env, "select sendsms_id from analytics.fct_sms_message where supporter_id in (1, 2)"
    )
    assert "fct_sms_message__supporter_id" in lookup, lookup

    # a full model build creates every table anew, each with its indexes
    before = table_oid(pg_env, "analytics.fct_sms_message")
    code, output = run_cli(capsys, "models", "--full-refresh")
    assert code == 0, output
    assert table_oid(pg_env, "analytics.fct_sms_message") != before
    assert_all_indexes(pg_env)


def test_incremental_nightly_on_indexed_postgres_equals_a_full_rebuild(
    pg_env: str, sync_env: Path, simulator_factory, capsys: pytest.CaptureFixture[str],
) -> None:
    sim = simulator_factory(n_records=900, seed=37)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, output
    ids = sorted(r["id"] for r in sim.world.ground_truth())
    for night in (1, 2):
        sim.world.advance(timedelta(hours=20))
        sim.world.touch(fraction=0.03)
        sim.world.mutate([], n_create=25, seed=night)
        sim.world.delete(ids[night * 40: night * 40 + 5])
        code, output = run_cli(capsys, "reconcile", "--base-url", sim.base_url, "--no-models")
        assert code == 0, output
        code, output = run_cli(capsys, "sync", "--base-url", sim.base_url)
        assert code == 0 and "built incrementally" in output, output
        assert_all_indexes(pg_env)
        incremental = snapshot(pg_env)
        code, output = run_cli(capsys, "models", "--full-refresh")
        assert code == 0, output
        assert_same(incremental, snapshot(pg_env))

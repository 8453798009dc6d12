"""Incremental builds on PostgreSQL equal a full rebuild there.

The raw tables come from real syncs of the simulator into DuckDB (the sync writes DuckDB
only); after each night they are copied, with their dlt load ids, into the test's PostgreSQL
database, where the models build incrementally and then from scratch.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main
from pipelines.warehouse.runner import build_models
from tests.warehouse.test_engines import assert_same, snapshot

PG_TYPES = {"TIMESTAMP WITH TIME ZONE": "timestamptz", "VARCHAR": "text", "JSON": "jsonb",
            "DOUBLE": "double precision"}
COPIED = (("quorum_raw", "sendsms"), ("quorum_raw", "sendsms_events"), ("quorum_ops", "sync_runs"))


def copy_raw(duck: Path, credentials: str) -> None:
    """Replace the PostgreSQL raw tables' rows with the DuckDB ones (the views stay valid)."""
    import psycopg2

    with (
        duckdb.connect(str(duck), read_only=True) as source,
        psycopg2.connect(credentials) as target,
        target.cursor() as cursor,
    ):
        for schema, table in COPIED:
            columns = source.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            ).fetchall()
            ddl = ", ".join(f'"{name}" {PG_TYPES.get(kind, kind)}' for name, kind in columns)
            cursor.execute(f"create schema if not exists {schema}")
            cursor.execute(f"create table if not exists {schema}.{table} ({ddl})")
            cursor.execute(f"delete from {schema}.{table}")
            names = ", ".join(f'"{name}"' for name, _ in columns)
            rows = source.execute(f"select {names} from {schema}.{table}").fetchall()
            marks = ", ".join("%s" for _ in columns)
            cursor.executemany(f"insert into {schema}.{table} ({names}) values ({marks})", rows)
    target.close()


def test_incremental_builds_on_postgres_equal_a_full_rebuild(
    sync_env: Path, simulator_factory, capsys: pytest.CaptureFixture[str],
    postgres_database: str,
) -> None:
    sim = simulator_factory(n_records=900)
    assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0
    copy_raw(sync_env, postgres_database)
    assert build_models(postgres_database).mode == "full"
    ids = sorted(r["id"] for r in sim.world.ground_truth())
    for night in (1, 2):
        sim.world.advance(timedelta(hours=20))
        sim.world.touch(fraction=0.02)
        sim.world.delete(ids[night * 30: night * 30 + 10])
        assert main(["reconcile", "--base-url", sim.base_url, "--no-models"]) == 0
        assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0
        capsys.readouterr()
        copy_raw(sync_env, postgres_database)
        result = build_models(postgres_database)
        assert result.mode == "incremental" and (result.changed_records or 0) > 0, night
        assert "analytics.fct_sms_message" in result.incremental_tables
        assert "intermediate.int_sms_outcome_totals" in result.incremental_tables
        incremental = snapshot(postgres_database)
        assert build_models(postgres_database, full_refresh=True).mode == "full"
        assert_same(incremental, snapshot(postgres_database))

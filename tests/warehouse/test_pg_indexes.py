"""Which indexes the model tables get on PostgreSQL, and that DuckDB gets none."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.models import discover_models
from pipelines.warehouse.pg_indexes import ensure_raw_indexes, index_name, model_index_columns
from pipelines.warehouse.runner import build_models
from tests.warehouse.conftest import hand_made_events, hand_made_messages
from tests.warehouse.rawdata import write_raw_postgres


def test_the_index_columns_are_what_the_incremental_build_looks_up() -> None:
    columns = {m.relation: model_index_columns(m) for m in discover_models(DEFAULT_SQL_DIR)}
    assert columns["analytics.fct_sms_message"] == ["sendsms_id", "supporter_id"]
    assert columns["analytics.sms_supporter_engagement"] == ["supporter_id"]
    # a grouping-sets model is looked up per grain: one index per grain's key column
    assert columns["intermediate.int_sms_outcome_totals"] == [
        "bulk_sms_id", "send_date", "associated_number"
    ]
    # views, seeds and tables without a key are never looked up by key
    assert columns["staging.stg_quorum__sendsms"] == []
    assert columns["analytics.sync_freshness"] == []


def test_index_names_stay_within_postgres_identifier_length() -> None:
    assert index_name("fct_sms_message", "supporter_id") == "fct_sms_message__supporter_id"
    long = index_name("t" * 60, "column_a")
    assert len(long) <= 63 and long != index_name("t" * 60, "column_b")


def test_duckdb_gets_no_index(fresh_db: Path) -> None:
    build_models(fresh_db)
    with open_warehouse(fresh_db) as warehouse:
        assert ensure_raw_indexes(warehouse) == []
    with duckdb.connect(str(fresh_db), read_only=True) as connection:
        assert connection.execute("select count(*) from duckdb_indexes()").fetchone() == (0,)


def test_raw_tables_without_load_ids_get_the_indexes_they_can_have(
    postgres_database: str,
) -> None:
    # raw tables written before dlt added `_dlt_load_id` (the hand-made ones have none)
    write_raw_postgres(postgres_database, hand_made_messages(), hand_made_events())
    with open_warehouse(postgres_database) as warehouse:
        created = ensure_raw_indexes(warehouse)
        assert ensure_raw_indexes(warehouse) == []  # idempotent: nothing left to create
        present = {
            str(row[0]) for row in warehouse.query(
                "select indexname from pg_indexes where schemaname = 'quorum_raw'").rows
        }
    assert set(created) == present == {
        "sendsms__id", "sendsms__updated", "sendsms__deleted_id",
        "sendsms_events__sendsms_id_event_type",
    }

"""The same models on DuckDB and PostgreSQL: same answers, same all-or-none builds, no secrets."""

from __future__ import annotations

import math
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.errors import ConfigError, DataCheckError, ModelBuildError
from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.engine import open_warehouse, redact_credentials
from pipelines.warehouse.runner import build_models
from tests.postgres import PG_PASSWORD, Cluster
from tests.warehouse.conftest import hand_made_events, hand_made_messages
from tests.warehouse.rawdata import at, event, sms, write_raw, write_raw_postgres

# built_at and the hours since it follow each build's own clock
CLOCK_COLUMNS = {"built_at", "hours_since_last_sync", "hours_since_newest_update"}
Snapshot = dict[str, tuple[tuple[str, ...], list[tuple[object, ...]]]]


def edge_case_messages() -> list[dict[str, object]]:
    """Rows that take the portable rewrites' paths: ids parsed from URIs, '' against NULL."""
    no_ids = sms(60, status="delivered", campaign=13, supporter=13, send_time=at(hours=30))
    no_ids.update(bulk_sms_id=None, supporter_id=None, bulk_sms_description="")
    bad_uri = sms(61, status="failed", campaign=14, supporter=14, send_time=at(hours=30))
    bad_uri.update(bulk_sms="/api/bulksms/none/", bulk_sms_id=None, supporter_id=None,
                   supporter_uri=None, bulk_sms_description=None)
    # a supporter's messages go by send_time, then id, undated ones last (engagement's order)
    undated = sms(64, status="rejected", supporter=15)
    undated.update(send_time=None, created=None, timestamp=None)
    same_time = [
        sms(62, status="failed", supporter=15, send_time=at(hours=40)),
        sms(63, status="delivered", supporter=15, send_time=at(hours=40)),
        sms(66, status="failed", supporter=16, send_time=at(hours=41)),
        sms(65, status="delivered", supporter=16, send_time=at(hours=41)),
    ]
    return [*hand_made_messages(), no_ids, bad_uri, *same_time, undated]


def edge_case_events() -> list[dict[str, object]]:
    return [*hand_made_events(), event(61, "failed", at(hours=30, seconds=2), "", "", "")]


def snapshot(target: str | Path) -> Snapshot:
    """Every intermediate and mart table: its columns and its rows, sorted."""
    result: Snapshot = {}
    with open_warehouse(target) as warehouse:
        for schema in ("intermediate", "analytics"):
            for table in warehouse.table_names(schema):
                rows = warehouse.query(f"select * from {schema}.{table}")
                keep = [i for i, c in enumerate(rows.columns) if c not in CLOCK_COLUMNS]
                columns = tuple(rows.columns[i] for i in keep)
                values = [tuple(row[i] for i in keep) for row in rows.rows]
                result[f"{schema}.{table}"] = (columns, sorted(values, key=_sort_key))
    return result


def _sort_key(row: tuple[object, ...]) -> str:
    return repr(tuple(_normal(v) for v in row))


def _normal(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def same_value(left: object, right: object) -> bool:
    """Equal, with numbers within 1e-9 and NULL never equal to an empty string."""
    if left is None or right is None:
        return left is None and right is None
    numbers = (int, float, Decimal)
    if (isinstance(left, numbers) and not isinstance(left, bool)
            and isinstance(right, numbers) and not isinstance(right, bool)):
        return math.isclose(float(left), float(right), rel_tol=0, abs_tol=1e-9)
    return type(left) is type(right) and left == right


def assert_same(duck: Snapshot, pg: Snapshot) -> None:
    assert sorted(duck) == sorted(pg)
    for table, (columns, rows) in duck.items():
        pg_columns, pg_rows = pg[table]
        assert columns == pg_columns, table
        assert len(rows) == len(pg_rows), table
        for row, pg_row in zip(rows, pg_rows, strict=True):
            for column, left, right in zip(columns, row, pg_row, strict=True):
                assert same_value(left, right), f"{table}.{column}: {left!r} != {right!r}"


def test_every_mart_is_the_same_on_duckdb_and_postgres(
    tmp_path: Path, postgres_database: str
) -> None:
    duck = write_raw(tmp_path / "q.duckdb", edge_case_messages(), edge_case_events())
    write_raw_postgres(postgres_database, edge_case_messages(), edge_case_events())
    duck_result = build_models(duck)
    pg_result = build_models(postgres_database)
    assert duck_result.row_counts == pg_result.row_counts
    assert pg_result.dialect == "postgres" and pg_result.checks_run == duck_result.checks_run
    duck_rows, pg_rows = snapshot(duck), snapshot(postgres_database)
    assert_same(duck_rows, pg_rows)
    # the comparison saw the cases it is about: the rewrites' ids and '' kept apart from NULL
    fct_columns, fct = pg_rows["analytics.fct_sms_message"]
    by_id = {row[0]: dict(zip(fct_columns, row, strict=True)) for row in fct}
    assert by_id[60]["bulk_sms_id"] == 13 and by_id[60]["supporter_id"] == 13
    assert by_id[61]["bulk_sms_id"] is None and by_id[61]["supporter_id"] is None
    assert by_id[61]["error_message"] == "" and by_id[61]["error_code"] is None
    assert by_id[20]["reply_to_sendsms_id"] == 1 and by_id[22]["reply_to_sendsms_id"] == 3
    engagement_columns, engagement = pg_rows["analytics.sms_supporter_engagement"]
    streaks = {row[0]: dict(zip(engagement_columns, row, strict=True)) for row in engagement}
    assert (streaks[15]["last_status"], streaks[15]["consecutive_failed_deliveries"]) == (
        "rejected", 1)
    assert (streaks[16]["last_status"], streaks[16]["consecutive_failed_deliveries"]) == (
        "failed", 1)
    _, campaigns = pg_rows["analytics.sms_campaign_performance"]
    descriptions = {row[0]: row[1] for row in campaigns}
    assert descriptions[10] == "Spring rally" and descriptions[13] == ""
    assert 14 not in descriptions  # no id can be parsed from a bad URI: no campaign row
    # a rebuild on PostgreSQL replaces every table and gives the same marts
    build_models(postgres_database)
    assert_same(duck_rows, snapshot(postgres_database))


def copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, target)
    return target


def test_a_failing_model_on_postgres_leaves_the_previous_marts(
    tmp_path: Path, postgres_database: str
) -> None:
    write_raw_postgres(postgres_database, hand_made_messages(), hand_made_events())
    build_models(postgres_database)
    before = snapshot(postgres_database)
    sql_dir = copy_sql(tmp_path)
    (sql_dir / "marts" / "zz_broken.sql").write_text(
        "-- depends_on: analytics.fct_sms_message\nselect sendsms_id, no_such_column\n"
        "from analytics.fct_sms_message\n"
    )
    with open_warehouse(postgres_database) as warehouse:
        warehouse.execute("delete from quorum_raw.sendsms where id = 1")
    with pytest.raises(ModelBuildError) as caught:
        build_models(postgres_database, sql_dir)
    message = str(caught.value)
    assert "analytics.zz_broken" in message and "no_such_column" in message
    assert "zz_broken.sql" in message and PG_PASSWORD not in message
    assert snapshot(postgres_database) == before
    with open_warehouse(postgres_database) as warehouse:
        assert "zz_broken" not in warehouse.table_names("analytics")


def test_a_failing_check_on_postgres_rolls_back_and_names_it(
    postgres_database: str,
) -> None:
    write_raw_postgres(postgres_database, hand_made_messages(), hand_made_events())
    build_models(postgres_database)
    before = snapshot(postgres_database)
    with open_warehouse(postgres_database) as warehouse:
        warehouse.execute("update quorum_raw.sendsms set current_status = 8 where id = 2")
    with pytest.raises(DataCheckError) as caught:
        build_models(postgres_database)
    message = str(caught.value)
    assert "check fct_status_code_in_seed" in message
    assert "sendsms_id=2" in message and "status_code=8" in message
    assert "sql/seeds/text_delivery_status.csv" in message and PG_PASSWORD not in message
    assert snapshot(postgres_database) == before


def test_the_password_appears_in_no_engine_error(
    postgres_cluster: Cluster, postgres_database: str
) -> None:
    wrong_password = postgres_database.replace(PG_PASSWORD, PG_PASSWORD + "x")
    no_database = postgres_cluster.credentials("no_such_database")
    closed_port = postgres_database.replace(f":{postgres_cluster.port}/", ":1/")
    for target in (wrong_password, no_database, closed_port):
        with pytest.raises(ConfigError) as caught:
            build_models(target)
        text = str(caught.value)
        assert PG_PASSWORD not in text and "***" in text, text
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert PG_PASSWORD not in str(caught.value.__context__)
    # no raw tables yet: the error names the database without the password
    with pytest.raises(ConfigError) as missing:
        build_models(postgres_database)
    assert "quorum-sms sync" in str(missing.value) and PG_PASSWORD not in str(missing.value)
    # a failing statement quoting the password (a literal in the SQL) has it redacted
    with open_warehouse(postgres_database) as warehouse, pytest.raises(Exception) as failed:
        warehouse.execute(f"select cast('{PG_PASSWORD}' as integer)")
    assert PG_PASSWORD not in str(failed.value) and "***" in str(failed.value)


def test_redact_credentials() -> None:
    assert redact_credentials("postgresql://u:s3cr%40t@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_credentials("postgresql://u@h/d") == "postgresql://u@h/d"

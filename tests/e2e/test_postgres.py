"""PostgreSQL as the warehouse, end to end: simulator over HTTP -> dlt -> PostgreSQL -> models.

One simulated world is synced twice, with changes in between, into a DuckDB file and into a
PostgreSQL database; raw tables and marts must agree. Failures leave the marts in place, the
advisory lock keeps two runs apart, and neither the API key nor the database password reaches
any output, file or table.
"""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.errors import BusyError
from pipelines.lock import warehouse_lock
from pipelines.quorum.settings import RAW_DATASET
from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.engine import open_warehouse
from tests.conftest import API_KEY
from tests.postgres import PG_PASSWORD
from tests.warehouse.test_engines import Snapshot, assert_same, same_value, snapshot

#: dlt's own bookkeeping columns differ per load by design
DLT_COLUMNS = {"_dlt_load_id", "_dlt_id"}
#: information_schema type names of the two engines, in one vocabulary
TYPE_NAMES = {
    "character varying": "varchar",
    "text": "varchar",
    "timestamp with time zone": "timestamptz",
    "double precision": "double",
}


@pytest.fixture
def pg_env(sync_env: Path, postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """dlt's own way of giving the credentials; the destination stays duckdb unless asked."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_database)
    monkeypatch.delenv("QUORUM_DESTINATION", raising=False)
    return postgres_database


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run `quorum-sms` in-process; the exit code and everything it printed."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


RawTables = dict[str, tuple[list[tuple[str, str]], list[tuple[Any, ...]]]]


def raw_tables(target: str | Path) -> RawTables:
    """Every raw table: its (column, type) pairs and its rows by key, without dlt's ids."""
    found: RawTables = {}
    with open_warehouse(target, read_only=True) as warehouse:
        for table, key in (("sendsms", "id"), ("sendsms_events", "sendsms_id, event_type")):
            described = warehouse.query(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? and column_name not like '\\_dlt%' "
                "escape '\\' order by column_name",
                [RAW_DATASET, table],
            ).rows
            columns = [
                (str(n), TYPE_NAMES.get(str(t).lower(), str(t).lower())) for n, t in described
            ]
            names = ", ".join(f'"{name}"' for name, _ in columns)
            rows = warehouse.query(
                f"select {names} from {RAW_DATASET}.{table} order by {key}, occurred_at"
                if table == "sendsms_events"
                else f"select {names} from {RAW_DATASET}.{table} order by {key}"
            ).rows
            found[table] = (columns, rows)
    return found


#: times of each sync's own run: the two warehouses were synced one after the other
RUN_CLOCK_COLUMNS = {"last_successful_sync_at", "last_run_started_at"}


def marts(target: str | Path) -> Snapshot:
    """Every intermediate and mart table (test_engines.snapshot), without the run times."""
    result: Snapshot = {}
    for table, (columns, rows) in snapshot(target).items():
        keep = [i for i, c in enumerate(columns) if c not in RUN_CLOCK_COLUMNS]
        result[table] = (
            tuple(columns[i] for i in keep),
            [tuple(row[i] for i in keep) for row in rows],
        )
    return result


def pg_label(credentials: str) -> str:
    from pipelines.warehouse.engine import redact_credentials

    return redact_credentials(credentials)


def assert_same_raw(duck: Path, pg: str) -> None:
    duck_tables, pg_tables = raw_tables(duck), raw_tables(pg)
    for table, (columns, rows) in duck_tables.items():
        pg_columns, pg_rows = pg_tables[table]
        assert columns == pg_columns, table
        assert len(rows) == len(pg_rows) and rows, table
        for row, pg_row in zip(rows, pg_rows, strict=True):
            for (column, _), left, right in zip(columns, row, pg_row, strict=True):
                assert same_value(left, right), f"{table}.{column}: {left!r} != {right!r}"


def test_same_world_same_raw_tables_and_marts(
    pg_env, sync_env, simulator_factory, capsys, monkeypatch
):
    # a lag window of three days re-reads many records the first day loaded
    monkeypatch.setenv("SOURCES__QUORUM__LAG_SECONDS", str(3 * 86400))
    sim = simulator_factory(n_records=1500, seed=23)
    pg_folder = sync_env.parent.parent / "pg" / "quorum.duckdb"
    unchanged: list[str] = []
    for day in range(2):
        if day:
            sim.world.advance(timedelta(days=1))
            sim.world.touch(fraction=0.1)
            sim.world.mutate([], n_create=40, seed=day)
        code, output = run_cli(capsys, "sync", "--base-url", sim.base_url)
        assert code == 0, output
        unchanged += re.findall(r"^\s*unchanged\s+([\d,]+)", output, re.MULTILINE)
        code, output = run_cli(
            capsys, "sync", "--base-url", sim.base_url, "--destination", "postgres",
            "--database", str(pg_folder),
        )
        assert code == 0, output
        assert "built" in output and "data checks passed" in output
        unchanged += re.findall(r"^\s*unchanged\s+([\d,]+)", output, re.MULTILINE)
        assert_same_raw(sync_env, pg_env)
        assert_same(marts(sync_env), marts(pg_env))
    # the stored versions are read on either engine: the same re-reads are left as they are
    assert len(unchanged) == 4 and unchanged[0] == unchanged[1] == "0", unchanged
    assert unchanged[2] == unchanged[3] != "0", unchanged
    # the report, the HTML page and the export read either warehouse to the same figures
    duck_report = run_cli(capsys, "report", "--days", "400")
    pg_report = run_cli(capsys, "report", "--days", "400", "--destination", "postgres")
    assert duck_report[0] == pg_report[0] == 0, pg_report[1]
    assert "delivered" in duck_report[1]
    assert duck_report[1].replace(str(sync_env), "X") == pg_report[1].replace(
        pg_label(pg_env), "X"
    )
    html = sync_env.parent / "report.html"
    code, output = run_cli(capsys, "report", "--html", str(html), "--destination", "postgres")
    assert code == 0 and html.read_text().count("<svg") >= 2, output
    code, output = run_cli(capsys, "export", "--out", str(sync_env.parent / "pg_out"),
                           "--destination", "postgres")
    assert code == 0, output
    code, output = run_cli(capsys, "export", "--out", str(sync_env.parent / "duck_out"))
    assert code == 0, output
    for parquet in sorted((sync_env.parent / "duck_out").glob("*.parquet")):
        duck_rows = pq.read_table(parquet).to_pylist()
        pg_rows = pq.read_table(sync_env.parent / "pg_out" / parquet.name).to_pylist()
        assert len(duck_rows) == len(pg_rows), parquet.name
    with open_warehouse(pg_env) as warehouse:
        schemas = {r[0] for r in warehouse.query(
            "select schema_name from information_schema.schemata").rows}
        runs = warehouse.query("select status from quorum_ops.sync_runs").rows
    assert {"quorum_raw", "analytics", "quorum_ops"} <= schemas
    assert runs == [("succeeded",), ("succeeded",)]
    # the dlt folder of PostgreSQL sits beside the database path, apart from DuckDB's
    assert pg_folder.with_name("quorum.duckdb.postgres.dlt").is_dir()
    assert not pg_folder.exists()


def test_failures_keep_marts_and_no_secret_leaks(
    pg_env, sync_env, simulator_factory, capsys, tmp_path
):
    sim = simulator_factory(n_records=800, seed=5)
    outputs: list[str] = []
    pg_args = ("--destination", "postgres")
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, *pg_args)
    outputs.append(output)
    assert code == 0, output
    before = snapshot(pg_env)

    # a model that fails on PostgreSQL (division by zero, at run time): the models command
    # exits 1 and the previous marts stay
    broken = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, broken)
    mart = next((broken / "marts").glob("*.sql"))
    mart.write_text(mart.read_text().replace(
        "select * from final",
        "select * from final where 1 / (select count(*) * 0 from final) = 0",
    ))
    code, output = run_cli(capsys, "models", *pg_args, "--sql-dir", str(broken))
    outputs.append(output)
    assert code == 1 and mart.stem in output, output
    assert_same(before, snapshot(pg_env))

    # a data check that fails: same guarantee
    shutil.rmtree(broken)
    shutil.copytree(DEFAULT_SQL_DIR, broken)
    (broken / "checks" / "zz_always_fails.sql").write_text(
        "-- depends_on: analytics.fct_sms_message\n"
        "-- hint: this check fails on purpose.\n"
        "select message_id from analytics.fct_sms_message limit 1\n"
    )
    code, output = run_cli(capsys, "models", *pg_args, "--sql-dir", str(broken))
    outputs.append(output)
    assert code == 1 and "zz_always_fails" in output, output
    assert_same(before, snapshot(pg_env))

    # status and reconcile read and write the same database
    sim.world.advance(timedelta(hours=2))
    code, output = run_cli(capsys, "status", *pg_args)
    outputs.append(output)
    assert code == 0 and "succeeded" in output, output
    code, output = run_cli(capsys, "reconcile", "--base-url", sim.base_url, *pg_args)
    outputs.append(output)
    assert code == 0 and "live records at the source" in output, output

    texts = "\n".join(outputs)
    for secret in (API_KEY, PG_PASSWORD):
        assert secret not in texts
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        assert not text_columns_holding(pg_env, secret)


def text_columns_holding(credentials: str, secret: str) -> list[str]:
    """`schema.table.column` of every text column of every table that holds `secret`."""
    hits: list[str] = []
    with psycopg2.connect(credentials) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select c.table_schema, c.table_name, c.column_name from information_schema.columns c "
            "join information_schema.tables t using (table_schema, table_name) "
            "where t.table_type = 'BASE TABLE' and c.table_schema not in "
            "('pg_catalog', 'information_schema') and c.data_type in "
            "('text', 'character varying', 'json', 'jsonb')"
        )
        columns = cursor.fetchall()
        assert columns  # the scan must look at something
        for schema, table, column in columns:
            cursor.execute(
                f'select count(*) from "{schema}"."{table}" '
                f'where strpos("{column}"::text, %s) > 0',
                [secret],
            )
            if cursor.fetchone()[0]:
                hits.append(f"{schema}.{table}.{column}")
    connection.close()
    return hits


def test_advisory_lock_keeps_a_second_run_out(pg_env):
    with warehouse_lock(pg_env, RAW_DATASET, 0):
        with pytest.raises(BusyError) as busy, warehouse_lock(pg_env, RAW_DATASET, 0):
            pass
        assert "advisory lock" in str(busy.value) and PG_PASSWORD not in str(busy.value)
    # another dataset is another key; and the first lock is free again once released
    with warehouse_lock(pg_env, "other_dataset", 0), warehouse_lock(pg_env, RAW_DATASET, 0):
        pass


def test_missing_credentials_is_a_clear_config_error(sync_env, capsys, monkeypatch):
    monkeypatch.delenv("DESTINATION__POSTGRES__CREDENTIALS", raising=False)
    code, output = run_cli(capsys, "models", "--destination", "postgres")
    assert code == 2
    assert "DESTINATION__POSTGRES__CREDENTIALS" in output

"""The portable rewrites and the dependency declarations, each on its own.

Each rewrite is checked twice: the compiled text holds the PostgreSQL form, and the same
query gives the same rows on DuckDB (as written) and on PostgreSQL (compiled).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.errors import ConfigError
from pipelines.warehouse.compiler import compile_sql
from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.models import discover_models, verify_declaration

HERE = Path("model.sql")
ROWS = (
    "(values (1, '/bulksms/12/', 'a', 10), (1, '/other/', null, 30), (1, null, 'c', 20),"
    " (2, '/bulksms/7/x', 'd', null), (2, '', 'e', 5)) as t(g, uri, label, k)"
)


def on_both(sql: str, postgres_database: str) -> tuple[list[tuple[object, ...]], ...]:
    """The rows of a query on DuckDB as written and on PostgreSQL compiled, sorted."""
    duck = sorted(duckdb.connect().execute(sql).fetchall(), key=repr)
    with open_warehouse(postgres_database) as warehouse:
        pg = sorted(warehouse.query(compile_sql(sql, "postgres", HERE)).rows, key=repr)
    return duck, pg


def test_duckdb_runs_the_model_text_as_written() -> None:
    sql = "select regexp_extract(a, 'x', 1)\nfrom t;\n"
    assert compile_sql(sql, "duckdb", HERE) == "select regexp_extract(a, 'x', 1)\nfrom t"


def test_regexp_extract_becomes_regexp_match(postgres_database: str) -> None:
    sql = (
        "select uri, regexp_extract(uri, '/bulksms/([0-9]+)', 1) as id,"
        f" regexp_extract(uri, '[0-9]+') as whole from {ROWS}"
    )
    compiled = compile_sql(sql, "postgres", HERE).lower()
    assert "regexp_match(uri, '/bulksms/([0-9]+)')" in compiled and "regexp_extract" not in compiled
    duck, pg = on_both(sql, postgres_database)
    assert duck == pg
    # DuckDB's '' for a text that does not match, NULL only for a NULL text
    assert ("/other/", "", "") in pg and (None, None, None) in pg
    assert ("/bulksms/12/", "12", "12") in pg


def test_arg_max_and_arg_min_with_filter_become_ordered_array_agg(
    postgres_database: str,
) -> None:
    sql = (
        "select g, arg_max(label, k) as newest, arg_min(label, k) as oldest,"
        " arg_max(label, k) filter (where uri is not null) as newest_with_uri"
        f" from {ROWS} group by g"
    )
    compiled = compile_sql(sql, "postgres", HERE).lower()
    assert "arg_max" not in compiled and "arg_min" not in compiled
    assert "array_agg(label order by k desc" in compiled
    duck, pg = on_both(sql, postgres_database)
    assert duck == pg
    # rows with a NULL value or key are skipped, as DuckDB's arg_max skips them
    assert pg == [(1, "c", "a", "a"), (2, "e", "e", "e")]


def test_asof_join_and_try_cast_are_refused_with_the_model_named() -> None:
    asof = "select * from a asof join b on a.k = b.k and a.t >= b.t"
    with pytest.raises(ConfigError, match=r"model\.sql uses an ASOF JOIN"):
        compile_sql(asof, "postgres", HERE)
    with pytest.raises(ConfigError, match=r"model\.sql uses TRY_CAST"):
        compile_sql("select try_cast(a as bigint) from t", "postgres", HERE)
    assert "asof join" in compile_sql(asof, "duckdb", HERE)  # DuckDB itself has it


def test_every_shipped_model_compiles_for_postgres() -> None:
    for model in discover_models(Path(__file__).resolve().parents[2] / "sql"):
        if model.sql:
            compiled = compile_sql(model.sql, "postgres", model.path).lower()
            assert "arg_max" not in compiled and "regexp_extract" not in compiled


def test_a_declaration_must_match_the_tables_the_query_reads() -> None:
    sql = "-- depends_on: staging.a, raw.b\nwith x as (select * from staging.a) select * from x"
    with pytest.raises(ConfigError, match=r"model\.sql declares raw\.b but does not read it"):
        verify_declaration(sql, HERE, "model")
    sql = "-- depends_on: staging.a\nselect * from staging.a join raw.b on true"
    with pytest.raises(ConfigError, match=r"reads raw\.b without declaring it"):
        verify_declaration(sql, HERE, "model")
    with pytest.raises(ConfigError, match=r"does not declare what it reads"):
        verify_declaration("select * from staging.a", HERE, "model")
    with pytest.raises(ConfigError, match=r"reads 'a' without a schema"):
        verify_declaration("-- depends_on:\nselect * from a", HERE, "model")
    assert verify_declaration(
        "-- depends_on: staging.a,\n-- depends_on: raw.b\nselect * from staging.a, raw.b",
        HERE, "model",
    ) == ("staging.a", "raw.b")


def test_a_dependency_on_a_missing_model_is_named(tmp_path: Path) -> None:
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / "one.sql").write_text(
        "-- depends_on: intermediate.int_gone\nselect * from intermediate.int_gone"
    )
    with pytest.raises(ConfigError, match=r"one\.sql depends on intermediate\.int_gone, but no"):
        discover_models(tmp_path)

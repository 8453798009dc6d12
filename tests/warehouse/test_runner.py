"""The runner: dependency order, all-or-none builds, identical rebuilds, clear errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.config import resolve_database
from pipelines.errors import ConfigError, DataCheckError, ModelBuildError
from pipelines.warehouse import database as database_module
from pipelines.warehouse import memory
from pipelines.warehouse.database import DEFAULT_SQL_DIR, set_connection_defaults
from pipelines.warehouse.models import discover_models
from pipelines.warehouse.runner import build_models
from tests.warehouse.rawdata import sms, write_raw
from tests.warehouse.test_incremental import load_a_night, synced_world

# sync_freshness reports hours as of the build's own clock (built_at = now()): it changes on
# every build by design, so the identical-rebuild comparison leaves it out.
CLOCK_DEPENDENT = {"sync_freshness"}


def snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every analytics table's rows (sorted) and columns, but the clock-dependent ones."""
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = [r[0] for r in connection.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'analytics' order by 1").fetchall()
            if r[0] not in CLOCK_DEPENDENT]
        result = {}
        for table in tables:
            cursor = connection.execute(f"select * from analytics.{table}")
            columns = tuple(d[0] for d in cursor.description or ())
            rows = sorted(cursor.fetchall(), key=repr)
            result[table] = [columns, *rows]
        return result


def copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, target)
    return target


def test_models_are_ordered_by_their_dependencies() -> None:
    order = [m.name for m in discover_models(DEFAULT_SQL_DIR)]
    assert order.index("text_delivery_status") < order.index("stg_quorum__sendsms")
    assert order.index("stg_quorum__sendsms") < order.index("fct_sms_message")
    assert order.index("fct_sms_message") < order.index("sms_campaign_performance")
    assert order.index("sms_campaign_performance") < order.index("sms_campaign_funnel")
    fct = next(m for m in discover_models(DEFAULT_SQL_DIR) if m.name == "fct_sms_message")
    # stg_quorum__sendsms is not mistaken for a reference inside stg_quorum__sendsms_events
    assert set(fct.depends_on) == {"stg_quorum__sendsms", "stg_quorum__sendsms_events"}


def test_rebuild_with_nothing_changed_gives_identical_marts(fresh_db: Path) -> None:
    first = build_models(fresh_db)
    before = snapshot(fresh_db)
    second = build_models(fresh_db)
    assert snapshot(fresh_db) == before
    assert first.row_counts == second.row_counts
    marts = {m.name for m in discover_models(DEFAULT_SQL_DIR) if m.layer == "marts"}
    assert set(before) == marts - CLOCK_DEPENDENT and before["fct_sms_message"][1:]


def built_with_a_new_mart(
    database: Path, tmp_path: Path, name: str, sql: str
) -> tuple[dict[str, list[tuple[object, ...]]], Path]:
    """Build `database`, then copy the models with one more mart: (the marts as built, the
    copied model directory)."""
    build_models(database)
    before = snapshot(database)
    sql_dir = copy_sql(tmp_path)
    (sql_dir / "marts" / f"{name}.sql").write_text(sql)
    return before, sql_dir


def test_a_failing_model_leaves_the_previous_marts(fresh_db: Path, tmp_path: Path) -> None:
    # a new mart that sorts after the others, so the good marts are rebuilt before it fails
    before, sql_dir = built_with_a_new_mart(
        fresh_db, tmp_path, "zz_broken",
        "-- depends_on: analytics.fct_sms_message\nselect\n    sendsms_id,\n    no_such_column\n"
        "from analytics.fct_sms_message\n",
    )
    # and new raw data that a successful build would pick up
    with duckdb.connect(str(fresh_db)) as connection:
        connection.execute("delete from quorum_raw.sendsms where id = 1")
    with pytest.raises(ModelBuildError) as caught:
        build_models(fresh_db, sql_dir)
    message = str(caught.value)
    assert "analytics.zz_broken" in message and "zz_broken.sql, line 4" in message
    assert "no_such_column" in message
    assert snapshot(fresh_db) == before
    with duckdb.connect(str(fresh_db), read_only=True) as connection:
        tables = connection.execute(
            "select table_name from information_schema.tables where table_name = 'zz_broken'"
        ).fetchall()
    assert tables == []


def test_a_stored_order_that_cannot_be_kept_leaves_the_build_and_says_so(
    fresh_db: Path, tmp_path: Path
) -> None:
    sql_dir = copy_sql(tmp_path)
    fct = sql_dir / "marts" / "fct_sms_message.sql"
    fct.write_text(fct.read_text().replace(
        "-- stored_order: sendsms_id", "-- stored_order: no_such_column"
    ))
    result = build_models(fresh_db, sql_dir)
    assert len(result.notes) == 1
    note = result.notes[0]
    assert "analytics.fct_sms_message stays in build order" in note and "no_such_column" in note
    assert note in result.summary()
    reference = tmp_path / "reference.duckdb"
    shutil.copy(fresh_db, reference)
    build_models(reference, full_refresh=True)
    # the marts are those of a build that kept the order, and no working table is left
    assert snapshot(fresh_db) == snapshot(reference)
    with duckdb.connect(str(fresh_db), read_only=True) as connection:
        left = connection.execute(
            "select table_name from information_schema.tables where table_name like '%__ordered'"
        ).fetchall()
    assert left == []


def test_a_stored_order_must_name_columns(tmp_path: Path) -> None:
    sql_dir = copy_sql(tmp_path)
    fct = sql_dir / "marts" / "fct_sms_message.sql"
    fct.write_text(fct.read_text().replace(
        "-- stored_order: sendsms_id", "-- stored_order: sendsms_id desc"
    ))
    with pytest.raises(ConfigError, match="declares stored_order wrongly"):
        discover_models(sql_dir)


#: A mart that needs more memory than 8MB: exact percentiles keep every value in memory, and
#: 5M doubles cannot fit.
HUNGRY_MART = (
    "-- depends_on: analytics.fct_sms_message\n"
    "select quantile_cont(i + messages.sendsms_id, 0.5) as middle\n"
    "from range(5000000) as r(i)\n"
    "cross join (select min(sendsms_id) as sendsms_id from analytics.fct_sms_message)"
    " as messages\n"
)


def test_a_model_out_of_memory_names_the_setting_to_raise(
    fresh_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that needs more than DuckDB's ceiling is not a broken model: the advice names
    the memory setting, not the SQL."""
    before, sql_dir = built_with_a_new_mart(fresh_db, tmp_path, "zz_hungry", HUNGRY_MART)
    monkeypatch.setattr(database_module, "_connection_defaults", {})
    set_connection_defaults(memory_limit="8MB", threads=None)
    with pytest.raises(ModelBuildError) as caught:
        build_models(fresh_db, sql_dir)
    message = " ".join(str(caught.value).split())
    # (at 8MB the marts before it may run out first: any model is the same case)
    assert "failed to build" in message and "Out of Memory Error" in message, message
    assert message.endswith(
        "DuckDB ran out of its memory ceiling: raise [quorum_sms] duckdb_memory_limit "
        "(QUORUM_DUCKDB_MEMORY_LIMIT in the environment), say to twice the size above, and run "
        "`quorum-sms models` again."
    ), message
    assert "Fix the model" not in message
    assert snapshot(fresh_db) == before


def test_a_build_out_of_its_auto_ceiling_is_built_again_once_at_a_larger_one(
    fresh_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `auto`, a build that runs out of the ceiling it chose is rolled back and built
    again at a larger one: the night goes on, and the build's summary says what happened."""
    before, sql_dir = built_with_a_new_mart(fresh_db, tmp_path, "zz_hungry", HUNGRY_MART)
    monkeypatch.setattr(database_module, "_connection_defaults", {})
    set_connection_defaults(memory_limit="auto", threads=None)
    monkeypatch.setattr(memory, "SMALL_LIMIT", "8MB")  # what `auto` gives this small file
    result = build_models(fresh_db, sql_dir)
    note = (
        "DuckDB ran out of its memory ceiling (8MB, duckdb_memory_limit = auto) in the model "
        f"build: built again at {memory.LARGE_LIMIT}"
    )
    assert result.notes[:1] == (note,), result.notes
    assert note in result.summary()
    with duckdb.connect(str(fresh_db), read_only=True) as connection:
        assert connection.execute("select count(*) from analytics.zz_hungry").fetchall() == [(1,)]
    after = snapshot(fresh_db)
    assert after.pop("zz_hungry")
    assert after == before

    # a second build runs out again (the same mart, rebuilt whole): the same note, once;
    # with a fixed ceiling nothing is retried (the test above)
    assert build_models(fresh_db, sql_dir, full_refresh=True).notes[:1] == (note,)


def test_an_incremental_build_under_auto_is_sized_by_the_vectors_of_the_changed_records(
    sync_env: Path, simulator_factory, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The night's build takes the floor plus room for each vector of the marts keyed by
    record that holds a changed record (never more than the file's share); a full build, the
    file's share."""
    sim = synced_world(simulator_factory, capsys)
    load_a_night(sim, capsys)
    monkeypatch.setattr(database_module, "_connection_defaults", {})
    set_connection_defaults(memory_limit="auto", threads=None)
    monkeypatch.setattr(memory, "FILE_SHARE", 0.000001)  # this file's share is then the cap
    monkeypatch.setattr(memory, "MARKER_BYTES_PER_VECTOR", 50_000_000)
    caplog.set_level(logging.DEBUG, logger="pipelines.warehouse.runner")

    def ceilings() -> list[str]:
        chosen = [
            r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records
            if r.getMessage().startswith("building the models at DuckDB's memory ceiling")
        ]
        caplog.clear()
        return chosen

    assert build_models(sync_env).mode == "incremental"
    # the 1,200-record world's fct_sms_message and int_sms_campaign_detail_inputs each lie in
    # one vector, and the night changed rows of both: 64MB + 2 x 50MB
    assert ceilings() == ["164MB"]
    assert build_models(sync_env, full_refresh=True).mode == "full"
    assert ceilings() == [memory.LARGE_LIMIT]


def test_a_failing_check_names_it_shows_rows_and_rolls_back(
    fresh_db: Path, tmp_path: Path
) -> None:
    build_models(fresh_db)
    before = snapshot(fresh_db)
    with duckdb.connect(str(fresh_db)) as connection:
        connection.execute("update quorum_raw.sendsms set current_status = 8 where id = 2")
    with pytest.raises(DataCheckError) as caught:
        build_models(fresh_db)
    message = str(caught.value)
    assert "check fct_status_code_in_seed" in message
    assert "sendsms_id=2" in message and "status_code=8" in message
    assert "sql/seeds/text_delivery_status.csv" in message
    assert snapshot(fresh_db) == before
    # the fix the message names works: add the code to a copy of the seed
    sql_dir = copy_sql(tmp_path)
    with (sql_dir / "seeds" / "text_delivery_status.csv").open("a") as seed:
        seed.write("8,scheduled,in_flight\n")
    build_models(fresh_db, sql_dir)
    with duckdb.connect(str(fresh_db), read_only=True) as connection:
        row = connection.execute(
            "select status from analytics.fct_sms_message where sendsms_id = 2").fetchone()
    assert row == ("scheduled",)


def test_reconciliation_check_fails_when_fct_loses_rows(fresh_db: Path, tmp_path: Path) -> None:
    sql_dir = copy_sql(tmp_path)
    fct = sql_dir / "marts" / "fct_sms_message.sql"
    fct.write_text(fct.read_text().replace("from final\n", "from final\nwhere sendsms_id <> 7\n"))
    with pytest.raises(DataCheckError, match=r"check reconcile_fct_with_raw"):
        build_models(fresh_db, sql_dir)


def test_bad_seed_value_names_the_file_and_line(fresh_db: Path, tmp_path: Path) -> None:
    sql_dir = copy_sql(tmp_path)
    (sql_dir / "seeds" / "message_direction.csv").write_text(
        "direction_code,direction\n1,inbound\ntwo,outbound\n")
    with pytest.raises(ConfigError, match=r"message_direction.csv, line 3: direction_code"):
        build_models(fresh_db, sql_dir)


def test_dependency_cycle_is_reported(tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    (sql_dir / "marts").mkdir(parents=True)
    (sql_dir / "marts" / "a_one.sql").write_text(
        "-- depends_on: analytics.b_two\nselect * from analytics.b_two")
    (sql_dir / "marts" / "b_two.sql").write_text(
        "-- depends_on: analytics.a_one\nselect * from analytics.a_one")
    with pytest.raises(ConfigError, match="cycle"):
        discover_models(sql_dir)


def test_missing_database_and_missing_raw_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no DuckDB database"):
        build_models(tmp_path / "absent.duckdb")
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(ConfigError, match=r"quorum_raw.sendsms.*quorum-sms sync"):
        build_models(empty)


def test_empty_raw_tables_build_empty_marts(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "q.duckdb", [], [])
    result = build_models(path)
    assert result.row_counts["analytics.fct_sms_message"] == 0
    assert result.checks_run == len(list((DEFAULT_SQL_DIR / "checks").glob("*.sql"))) > 10


def test_archived_only_data_still_builds(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "q.duckdb", [sms(1, status="delivered", archived=True)], [])
    result = build_models(path)
    assert result.row_counts["analytics.fct_sms_message"] == 1
    assert result.row_counts["analytics.sms_daily_overview"] == 0


def test_resolve_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QUORUM_DATABASE", raising=False)
    assert resolve_database(None) == DEFAULT_SQL_DIR.parent / "data" / "quorum.duckdb"
    monkeypatch.setenv("QUORUM_DATABASE", str(tmp_path / "env.duckdb"))
    assert resolve_database(None) == tmp_path / "env.duckdb"
    assert resolve_database(str(tmp_path / "arg.duckdb")) == tmp_path / "arg.duckdb"

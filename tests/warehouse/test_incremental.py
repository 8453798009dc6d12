"""Incremental builds and publishes equal full ones, on a simulated world that keeps changing.

Every night runs for real: the simulator's clock moves (texts progress, late delivery events,
replies, archiving, new campaigns), records are touched, some vanish at the source and
`quorum-sms reconcile` marks them; then `quorum-sms sync` loads the changes over HTTP and
builds incrementally. A copy of the warehouse rebuilt from scratch (`full_refresh`) and a full
publish of it must hold the same rows, table by table.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.cli import main
from pipelines.errors import ConfigError
from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.models import discover_models
from pipelines.warehouse.publish import default_publish_path, publish_analytics
from pipelines.warehouse.runner import build_models

#: sync_freshness holds the time of its own build; these columns differ between any two builds.
BUILD_TIME_COLUMNS = {"built_at", "hours_since_last_sync", "hours_since_newest_update"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`quorum-sms ARGV` in-process: exit code and everything it printed."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def last_build(database: Path) -> tuple[Any, ...]:
    with duckdb.connect(str(database), read_only=True) as connection:
        row = connection.execute(
            "select build_id, mode, reason, changed_records from quorum_ops.model_builds "
            "order by build_id desc limit 1"
        ).fetchone()
    assert row is not None
    return row


def tables_of(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every analytics and intermediate table's rows, sorted, build-time columns left out."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with duckdb.connect(str(path), read_only=True) as connection:
        names = connection.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('analytics', 'intermediate') "
            "and table_type = 'BASE TABLE' order by table_schema, table_name"
        ).fetchall()
        for schema, name in names:
            columns = [c for (c,) in connection.execute(
                "select column_name from information_schema.columns where table_schema = "
                "? and table_name = ? order by ordinal_position", [schema, name]
            ).fetchall() if c not in BUILD_TIME_COLUMNS]
            listed = ", ".join(f'"{c}"' for c in columns)
            rows = connection.execute(f"select {listed} from {schema}.{name}").fetchall()
            found[f"{schema}.{name}"] = sorted(
                rows, key=lambda row: tuple((v is None, str(v)) for v in row)
            )
    return found


def assert_same_tables(got: Path, expected: Path) -> None:
    """The same tables with the same rows; floats within 1e-9."""
    mine, theirs = tables_of(got), tables_of(expected)
    assert sorted(mine) == sorted(theirs)
    for name in theirs:
        assert len(mine[name]) == len(theirs[name]), name
        for left, right in zip(mine[name], theirs[name], strict=True):
            for a, b in zip(left, right, strict=True):
                if isinstance(a, float) and isinstance(b, float):
                    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (name, left, right)
                else:
                    assert a == b, (name, left, right)


def full_rebuild_of(warehouse: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of the warehouse rebuilt from scratch, and its full publish."""
    folder.mkdir(parents=True)
    copy = folder / "copy.duckdb"
    shutil.copyfile(warehouse, copy)
    assert build_models(copy, full_refresh=True).mode == "full"
    published = folder / "copy-analytics.duckdb"
    assert not publish_analytics(copy, published).incremental
    return copy, published


def test_incremental_nights_equal_a_full_rebuild_and_a_full_publish(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path
) -> None:
    sim = simulator_factory(n_records=2500)
    published = default_publish_path(sync_env)
    code, output = cli(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, output
    assert last_build(sync_env)[1:3] == ("full", "no earlier build is recorded")

    ids = sorted(r["id"] for r in sim.world.ground_truth())
    for night in (1, 2, 3):
        # the night: texts progress (late events, replies, archiving), new records arrive
        sim.world.advance(timedelta(hours=20))
        sim.world.touch(fraction=0.01)
        if night in (1, 3):
            gone = ids[night * 40: night * 40 + 15]
            sim.world.delete(gone)
            code, output = cli(capsys, "reconcile", "--base-url", sim.base_url)
            assert code == 0, output
            assert last_build(sync_env)[1] == "incremental", output
        if night == 2:
            # a record the source serves again is un-marked by reconcile; the simulator never
            # brings one back, so this does by hand what reconcile's un-marking writes
            with duckdb.connect(str(sync_env)) as connection:
                connection.execute(
                    "update quorum_raw.sendsms set source_deleted_at = null "
                    "where id = (select min(id) from quorum_raw.sendsms "
                    "where source_deleted_at is not null)"
                )
        code, output = cli(capsys, "sync", "--base-url", sim.base_url)
        assert code == 0, f"night {night}: {output}"
        _, mode, _, changed = last_build(sync_env)
        assert mode == "incremental" and changed > 0, (night, output)
        assert "published incrementally" in output, output

        copy, copy_published = full_rebuild_of(sync_env, tmp_path / f"night{night}")
        assert_same_tables(sync_env, copy)
        assert_same_tables(published, copy_published)


def test_full_refresh_and_changed_model_files_rebuild_everything(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path
) -> None:
    sim = simulator_factory(n_records=800)
    assert cli(capsys, "sync", "--base-url", sim.base_url)[0] == 0
    code, output = cli(capsys, "models")
    assert code == 0 and last_build(sync_env)[1] == "incremental", output
    assert last_build(sync_env)[3] == 0  # nothing changed since the sync's build

    code, output = cli(capsys, "models", "--full-refresh")
    assert code == 0, output
    assert last_build(sync_env)[1:3] == ("full", "--full-refresh was asked for")
    assert "(full build: --full-refresh was asked for)" in output
    assert "published incrementally" not in output

    # one changed comment in one mart is a changed model: the next build starts over
    sql = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql)
    mart = sql / "marts" / "sms_daily_overview.sql"
    mart.write_text(mart.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")
    assert build_models(sync_env, sql).reason == "a model or seed file changed since the last build"
    assert build_models(sync_env, sql).mode == "incremental"
    assert build_models(sync_env).mode == "full"  # back to the project's files: changed again


def synced_world(simulator_factory, capsys: pytest.CaptureFixture[str]) -> Any:
    """A 1,200-record simulator, synced once with models and publishing."""
    sim = simulator_factory(n_records=1200)
    assert cli(capsys, "sync", "--base-url", sim.base_url)[0] == 0
    return sim


def load_a_night(sim: Any, capsys: pytest.CaptureFixture[str]) -> list[int]:
    """Twelve hours pass, 2 % of the records are touched, synced without models; the ids."""
    sim.world.advance(timedelta(hours=12))
    touched: list[int] = sim.world.touch(fraction=0.02)
    assert cli(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    return touched


def test_the_publisher_inserts_the_build_s_kept_rows_and_copes_without_them(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path
) -> None:
    sim = synced_world(simulator_factory, capsys)
    published = default_publish_path(sync_env)

    # night 1: the build keeps the new rows of the keys it recomputed, and publishing takes
    # them from there (marked here, so the published file shows where its rows came from)
    load_a_night(sim, capsys)
    assert build_models(sync_env).mode == "incremental"
    kept = "quorum_ops.model_build_rows__fct_sms_message"
    keys = "quorum_ops.model_build_keys__fct_sms_message__sendsms_id"
    with duckdb.connect(str(sync_env)) as connection:
        assert connection.execute(
            f"select * from {kept} except select * from analytics.fct_sms_message "
            f"where sendsms_id in (select sendsms_id from {keys})"
        ).fetchall() == []
        assert connection.execute(
            f"select count(*) from analytics.fct_sms_message "
            f"where sendsms_id in (select sendsms_id from {keys})"
        ).fetchone() == connection.execute(f"select count(*) from {kept}").fetchone()
        marked = connection.execute(
            f"update {kept} set campaign_description = 'from the kept rows' "
            "returning sendsms_id"
        ).fetchall()
    assert marked
    result = publish_analytics(sync_env, published)
    assert result.incremental
    with duckdb.connect(str(published), read_only=True) as connection:
        shown = connection.execute(
            "select sendsms_id from analytics.fct_sms_message "
            "where campaign_description = 'from the kept rows'"
        ).fetchall()
    assert sorted(shown) == sorted(marked)
    # publishing the same build again copies the marts whole: the marks are gone
    assert not publish_analytics(sync_env, published).incremental

    # night 2: bookkeeping written before builds kept rows (no rows_table column): the
    # publisher reads the recomputed keys' rows from the marts, and the file is still right
    load_a_night(sim, capsys)
    assert build_models(sync_env).mode == "incremental"
    with duckdb.connect(str(sync_env)) as connection:
        connection.execute("alter table quorum_ops.model_build_tables drop column rows_table")
    assert publish_analytics(sync_env, published).incremental
    copy, copy_published = full_rebuild_of(sync_env, tmp_path / "night2")
    assert_same_tables(sync_env, copy)
    assert_same_tables(published, copy_published)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_failed_incremental_build_changes_no_mart_bookkeeping_or_published_file(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path
) -> None:
    sim = synced_world(simulator_factory, capsys)
    published = default_publish_path(sync_env)
    touched = load_a_night(sim, capsys)

    marts_before = tables_of(sync_env)
    build_before = last_build(sync_env)
    published_before = digest(published)
    # checks are not part of the fingerprint, so this build is incremental, and it fails
    # after it has recomputed the touched records' keys
    sql = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql)
    (sql / "checks" / "no_touched_record.sql").write_text(
        "-- depends_on: analytics.fct_sms_message\n"
        f"select sendsms_id from analytics.fct_sms_message where sendsms_id = {touched[0]}\n",
        encoding="utf-8",
    )
    code, output = cli(capsys, "models", "--sql-dir", str(sql))
    assert code != 0 and "no_touched_record" in output, output
    assert tables_of(sync_env) == marts_before
    assert last_build(sync_env) == build_before
    assert digest(published) == published_before

    # the next build still sees every change the failed one was about to take in
    code, output = cli(capsys, "models")
    assert code == 0 and last_build(sync_env)[1] == "incremental", output
    assert last_build(sync_env)[3] >= len(touched)
    copy, copy_published = full_rebuild_of(sync_env, tmp_path / "after")
    assert_same_tables(sync_env, copy)
    assert_same_tables(published, copy_published)


@pytest.mark.parametrize(
    "header",
    ["-- unique_key: bulk sms id", "-- unique_key: grain(campaign)",
     "-- recompute_together_by: supporter_id",
     "-- incremental_strategy: additive(count=failures)",
     "-- unique_key: error_code\n-- incremental_strategy: additive(sum=failures)",
     "-- unique_key: error_code\n-- incremental_strategy: additive(min=first_seen)",
     "-- together_writes: replies",
     "-- unique_key: error_code\n-- together_reads: failures\n-- together_writes: failures",
     "-- unique_key: error_code\n-- recompute_together_by: error_code\n"
     "-- together_reads: failures",
     "-- together_within: send_time 72 hours",
     "-- unique_key: error_code\n-- recompute_together_by: error_code\n"
     "-- together_reads: failures\n-- together_writes: failures\n"
     "-- together_within: failures 72 minutes"],
)
def test_a_bad_key_declaration_is_refused_naming_the_file(tmp_path: Path, header: str) -> None:
    sql = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql)
    mart = sql / "marts" / "sms_delivery_errors.sql"
    mart.write_text(header + "\n" + mart.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sms_delivery_errors\.sql") as caught:
        discover_models(sql)
    # the error names the declaration it refuses
    declared = header.splitlines()[-1].removeprefix("-- ").split(":")[0]
    assert declared in str(caught.value)

"""The published analytics file: atomic replacement under live readers, old clients, failures.

Readers are real processes (the project's DuckDB and DuckDB 1.1.3) holding the published file
open; every ordering is a handshake (a line on a pipe, a file appearing), never a sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.errors import ConfigError, DataCheckError, ModelBuildError, PublishError
from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.export import export_marts
from pipelines.warehouse.html_report import render_html_report
from pipelines.warehouse.publish import (
    build_and_publish,
    default_publish_path,
    publish_analytics,
    remove_stale_temporaries,
    staging_prefix,
)
from pipelines.warehouse.report import render_terminal_report
from pipelines.warehouse.runner import build_models
from tests.duckdb_legacy import LEGACY_DUCKDB_VERSION
from tests.published_readers import MARTS, READER, Reader, read_once
from tests.warehouse.publish_reader import build_of
from tests.warehouse.rawdata import EVENT_COLUMNS, SENDSMS_COLUMNS, at, event, insert, sms

ROOT = Path(__file__).resolve().parents[2]


def target_of(tmp_path: Path) -> Path:
    return tmp_path / "published" / "quorum-analytics.duckdb"


def add_messages(warehouse: Path, first_id: int, count: int) -> None:
    """New delivered texts from new supporters: changes row counts of several marts."""
    ids = range(first_id, first_id + count)
    messages = [
        sms(i, status="delivered", supporter=i, campaign=10, send_time=at(hours=48))
        for i in ids
    ]
    events = [event(i, "delivered", at(hours=48, seconds=5)) for i in ids]
    with duckdb.connect(str(warehouse)) as connection:
        insert(connection, "sendsms", SENDSMS_COLUMNS, messages)
        insert(connection, "sendsms_events", EVENT_COLUMNS, events)


def build_in(warehouse: Path) -> str:
    """The reader's build key, computed on the warehouse's own marts."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return str(build_of(connection))


def test_default_path_sits_beside_the_warehouse() -> None:
    assert default_publish_path(Path("data/quorum.duckdb")) == Path(
        "data/quorum-analytics.duckdb"
    )
    assert default_publish_path(Path("/srv/wh/sms.db")) == Path("/srv/wh/sms-analytics.duckdb")


def test_readers_keep_one_build_while_publishing_twice(
    fresh_db: Path, tmp_path: Path, legacy_python: Path, readers: list[Reader]
) -> None:
    target = target_of(tmp_path)
    build_and_publish(fresh_db, target)
    first = build_in(fresh_db)
    readers += [Reader(sys.executable, target), Reader(legacy_python, target)]
    assert [r.opened["build"] for r in readers] == [first, first]
    assert readers[1].opened["version"] == LEGACY_DUCKDB_VERSION

    def readers_see_the_first_build(staged: Path) -> None:
        # The new file is complete and synced, the rename not yet done: readers still query.
        assert staged.is_file() and not (staged.parent / (staged.name + ".wal")).exists()
        for reader in readers:
            assert reader.send("check")["build"] == first

    # What each client reads in build 1, from a copy: the readers themselves have read only
    # the build key so far, so verifying later reads data pages they have not cached.
    build_one = tmp_path / "build-one.duckdb"
    shutil.copyfile(target, build_one)
    digests = [read_once(sys.executable, build_one)["fingerprint"],
               read_once(legacy_python, build_one)["fingerprint"]]

    builds = [first]
    for batch in (1, 2):
        add_messages(fresh_db, first_id=1000 * batch, count=3 * batch)
        build_models(fresh_db)
        builds.append(build_in(fresh_db))
        publish_analytics(fresh_db, target, on_staged=readers_see_the_first_build)
        for reader, digest in zip(readers, digests, strict=True):
            # still the snapshot it opened, down to every row of every mart
            assert reader.send("verify") == {
                "event": "verify", "build": first, "fingerprint": digest
            }
        # a dashboard connecting now gets the new build, with either client
        assert read_once(sys.executable, target)["build"] == builds[-1]
        assert read_once(legacy_python, target)["build"] == builds[-1]
    assert len(set(builds)) == 3

    for reader in readers:
        done = reader.send("stop")
        assert done["problems"] == []
        assert isinstance(done["loops"], int) and done["loops"] > 0
    assert list(target.parent.glob(staging_prefix(target) + "*")) == []


def test_old_client_reads_every_mart_with_the_same_rows(
    built: tuple[Path, object], tmp_path: Path, legacy_python: Path
) -> None:
    warehouse, _ = built
    target = target_of(tmp_path)
    result = publish_analytics(warehouse, target)
    assert set(result.tables) == MARTS
    # DuckDB's main header: 8 bytes of checksum, "DUCK", then the storage version number;
    # DuckDB 1.1 reads version 64 only (2.0 writes 999 by default).
    header = target.read_bytes()[:20]
    assert header[8:12] == b"DUCK" and int.from_bytes(header[12:20], "little") == 64

    folder = tmp_path / "from-old-client"
    folder.mkdir()
    done = subprocess.run(
        [str(legacy_python), str(READER), str(target), "--export", str(folder)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["tables"]) == MARTS
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for table in sorted(MARTS):
            parquet = f"'{folder / table}.parquet'"
            row = connection.execute(
                f"select (select count(*) from analytics.{table}), "
                f"(select count(*) from (select * from analytics.{table} except all "
                f"select * from read_parquet({parquet}))), "
                f"(select count(*) from (select * from read_parquet({parquet}) except all "
                f"select * from analytics.{table}))"
            ).fetchone()
            assert row is not None
            assert row[0] == result.row_counts[table] and row[1:] == (0, 0), table
    assert result.row_counts["fct_sms_message"] > 0


def test_failed_build_or_check_leaves_the_published_file_untouched(
    fresh_db: Path, tmp_path: Path
) -> None:
    target = target_of(tmp_path)
    build_and_publish(fresh_db, target)
    published = target.read_bytes()
    add_messages(fresh_db, first_id=5000, count=2)  # a successful build would publish these

    sql_dir = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql_dir)
    (sql_dir / "marts" / "zz_broken.sql").write_text(
        "-- depends_on: analytics.fct_sms_message\n"
        "select no_such_column from analytics.fct_sms_message\n"
    )
    with pytest.raises(ModelBuildError):
        build_and_publish(fresh_db, target, sql_dir)
    assert target.read_bytes() == published

    with duckdb.connect(str(fresh_db)) as connection:
        connection.execute("update quorum_raw.sendsms set current_status = 8 where id = 2")
    with pytest.raises(DataCheckError):
        build_and_publish(fresh_db, target)
    assert target.read_bytes() == published
    assert list(target.parent.glob(staging_prefix(target) + "*")) == []


PUBLISHER = """
import sys
from pathlib import Path
from pipelines.warehouse.publish import publish_analytics

warehouse, target, marker = (Path(a) for a in sys.argv[1:4])


def hold(staged):
    # written whole, then renamed: the test may read the marker the moment it appears
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(str(staged))
    partial.rename(marker)
    sys.stdin.read()  # blocks until the test kills this process


publish_analytics(warehouse, target, on_staged=hold if sys.argv[4] == "hold" else None)
"""


def start_publisher(
    warehouse: Path, target: Path, marker: Path, mode: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PUBLISHER), str(warehouse), str(target),
         str(marker), mode],
        cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition: object, process: subprocess.Popen[str]) -> None:
    """Poll an observable condition; the sleep only paces the loop."""
    assert callable(condition)
    while not condition():
        if process.poll() is not None:
            return
        time.sleep(0.002)


def test_kill_before_the_rename_keeps_the_old_file_and_the_next_run_cleans_up(
    fresh_db: Path, tmp_path: Path
) -> None:
    target = target_of(tmp_path)
    build_and_publish(fresh_db, target)
    published = target.read_bytes()
    add_messages(fresh_db, first_id=7000, count=4)
    build_models(fresh_db)

    marker = tmp_path / "staged"
    publisher = start_publisher(fresh_db, target, marker, "hold")
    try:
        wait_for(marker.exists, publisher)
        assert marker.exists(), publisher.stderr.read() if publisher.stderr else ""
        staged = Path(marker.read_text())
        assert staged.is_file() and staged.parent.name.startswith(staging_prefix(target))
        # the publish is alive and holds its folder: a concurrent clean-up must leave it
        assert remove_stale_temporaries(target) == []
        assert staged.is_file()
    finally:
        publisher.send_signal(signal.SIGKILL)
        publisher.wait(timeout=60)
    assert publisher.returncode == -signal.SIGKILL
    assert target.read_bytes() == published
    assert staged.parent.is_dir()  # the killed run's leftovers

    result = publish_analytics(fresh_db, target)
    assert not staged.parent.exists()
    assert list(target.parent.glob(staging_prefix(target) + "*")) == []
    assert read_once(sys.executable, target)["build"] == build_in(fresh_db)
    assert result.row_counts["fct_sms_message"] == 18 + 4


def test_kill_while_writing_leaves_the_old_or_the_new_file_never_a_broken_one(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "big.duckdb"
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("create schema analytics")
        connection.execute("create table analytics.big as select 1 as build, 0 as i")
    target = target_of(tmp_path)
    publish_analytics(warehouse, target)
    with duckdb.connect(str(warehouse)) as connection:
        # hashes barely compress: a file big enough that writing it takes a while
        connection.execute(
            "create or replace table analytics.big as "
            "select 2 as build, i, md5(i::varchar) || md5((i + 1)::varchar) as filler "
            "from range(1500000) as r(i)"
        )

    def staged_file_started() -> bool:
        return any(
            (folder / target.name).exists()
            for folder in target.parent.glob(staging_prefix(target) + "*")
        )

    publisher = start_publisher(warehouse, target, tmp_path / "unused", "run")
    try:
        wait_for(staged_file_started, publisher)
    finally:
        publisher.send_signal(signal.SIGKILL)
        publisher.wait(timeout=60)
    with duckdb.connect(str(target), read_only=True) as connection:
        row = connection.execute("select min(build), max(build), count(*) from analytics.big")
        builds = row.fetchone()
    assert builds in ((1, 1, 1), (2, 2, 1_500_000))

    leftovers = list(target.parent.glob(staging_prefix(target) + "*"))
    assert remove_stale_temporaries(target) == sorted(leftovers)
    assert list(target.parent.iterdir()) == [target]
    publish_analytics(warehouse, target)
    with duckdb.connect(str(target), read_only=True) as connection:
        assert connection.execute("select count(*) from analytics.big").fetchone() == (
            1_500_000,
        )


def test_published_file_is_owner_only_under_a_permissive_umask(
    built: tuple[Path, object], tmp_path: Path
) -> None:
    warehouse, _ = built
    target = target_of(tmp_path)
    seen: dict[str, int] = {}

    def note_modes(staged: Path) -> None:
        seen["staged"] = stat.S_IMODE(staged.stat().st_mode)
        seen["folder"] = stat.S_IMODE(staged.parent.stat().st_mode)

    previous = os.umask(0)
    try:
        publish_analytics(warehouse, target, on_staged=note_modes)
        publish_analytics(warehouse, target)  # replacing keeps it owner-only too
    finally:
        os.umask(previous)
    assert seen == {"staged": 0o600, "folder": 0o700}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_reports_and_export_read_the_published_file_alone(
    built: tuple[Path, object], tmp_path: Path
) -> None:
    warehouse, _ = built
    target = target_of(tmp_path)
    publish_analytics(warehouse, target)
    with duckdb.connect(str(target), read_only=True) as connection:
        schemas = connection.execute(
            "select distinct table_schema from information_schema.tables"
        ).fetchall()
    assert schemas == [("analytics",)]  # no raw tables, no run history, no dlt state
    assert render_terminal_report(target) == render_terminal_report(warehouse)
    assert render_html_report(target) == render_html_report(warehouse)
    from_published = export_marts(target, tmp_path / "a")
    from_warehouse = export_marts(warehouse, tmp_path / "b")
    assert [p.name for p in from_published] == [p.name for p in from_warehouse]
    assert {p.name.removesuffix(".parquet") for p in from_published} == MARTS


def test_a_handed_connection_is_used_and_left_open(fresh_db: Path, tmp_path: Path) -> None:
    build_models(fresh_db)
    target = target_of(tmp_path)
    with duckdb.connect(str(fresh_db)) as connection:
        result = publish_analytics(fresh_db, target, connection=connection)
        # still usable, and the staging file is no longer attached to it
        names = connection.execute("select database_name from duckdb_databases()").fetchall()
        assert [n for (n,) in names if n.startswith("quorum_publish")] == []
    assert set(result.tables) == MARTS and result.bytes == target.stat().st_size
    assert read_once(sys.executable, target)["build"] == build_in(fresh_db)


def test_bad_input_gives_a_clear_error_and_changes_nothing(
    fresh_db: Path, tmp_path: Path
) -> None:
    with pytest.raises(PublishError, match="nothing to publish") as caught:
        publish_analytics(fresh_db, target_of(tmp_path))  # models never built
    assert caught.value.exit_code == 1 and "quorum-sms models" in str(caught.value)
    assert not target_of(tmp_path).exists()
    assert list(target_of(tmp_path).parent.iterdir()) == []

    with pytest.raises(PublishError, match="is the warehouse itself"):
        publish_analytics(fresh_db, fresh_db)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(PublishError, match="is a folder"):
        publish_analytics(fresh_db, folder)
    with pytest.raises(ConfigError, match="no DuckDB database"):
        publish_analytics(tmp_path / "missing.duckdb", target_of(tmp_path))


def test_clean_up_touches_only_staging_folders_of_that_target(tmp_path: Path) -> None:
    target = target_of(tmp_path)
    target.parent.mkdir()
    stale = target.parent / (staging_prefix(target) + "abc")
    stale.mkdir()
    (stale / target.name).write_bytes(b"half a file")
    other = target.parent / (staging_prefix(target.with_name("other.duckdb")) + "abc")
    other.mkdir()
    kept = target.parent / "notes.txt"
    kept.write_text("keep me")
    assert remove_stale_temporaries(target) == [stale]
    assert not stale.exists() and other.is_dir() and kept.is_file()

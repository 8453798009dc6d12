"""Publish the `analytics` marts as their own DuckDB file: the one file people and tools open.

The warehouse (raw tables, dlt state, run history) is the job's private working file. After
a successful model build the marts are copied into a new file in a private staging folder
beside the target, checkpointed, closed, fsynced and renamed over the published file, and
the folder is fsynced. A rename is atomic: a reader that holds the old file open keeps its
snapshot (the old inode lives until it closes it), a new connection opens the new build, and
a run that fails or is killed before the rename leaves the published file as it was.

The file is written in a storage format that DuckDB 1.1 and later read, because BI drivers
bundle older DuckDB releases than the one that writes the warehouse.

After an incremental build the copy is incremental too: the previous published file is
copied into the staging folder (a file copy is far cheaper than re-encoding every mart),
then each mart the build updated by key gets the same deletes and inserts of those keys,
the marts rebuilt whole are replaced, and the file is checkpointed, fsynced and renamed as
above. The previous file is used only when it is exactly the one the last publish wrote
after the build just before this one (build id, inode, size and modification time recorded
in `quorum_ops.model_publishes` of the warehouse), in the same storage version, and has not
grown past 1.5 times the size of its last full copy (and by more than 32 MiB); otherwise,
and after a full build, the marts are copied whole into a new file. The nightly run copies
the previous file in the background while it syncs and builds (`publish_prefetch`), and the
incremental publish starts from that copy when it is a copy of exactly that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.errors import ConfigError, PublishError
from pipelines.warehouse.database import MARTS_SCHEMA, connect
from pipelines.warehouse.incremental import BOOKKEEPING_SCHEMA, BUILD_TABLES_TABLE, BUILDS_TABLE
from pipelines.warehouse.publish_prefetch import FileIdentity, PublishedCopy, staging_prefix
from pipelines.warehouse.runner import BuildResult, build_models

#: Oldest DuckDB release that must read the published file (DuckDB's STORAGE_VERSION values).
PUBLISH_STORAGE_VERSION = "v1.1.0"
PUBLISHED_SUFFIX = "-analytics.duckdb"
#: The published file holds supporter-level rows: owner-only, whatever the umask.
FILE_MODE = 0o600
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
#: DuckDB's storage version number in the main header for PUBLISH_STORAGE_VERSION.
PUBLISH_STORAGE_NUMBER = 64
PUBLISHES_TABLE = f"{BOOKKEEPING_SCHEMA}.model_publishes"
#: An incrementally published file that grew past this share of its last full copy, and by
#: more than GROWTH_ALLOWANCE bytes, is copied whole again (deleted rows and replaced tables
#: leave free blocks behind; a small file doubles from one block per table alone).
MAX_GROWTH = 1.5
GROWTH_ALLOWANCE = 32 * 1_048_576


@dataclass(frozen=True)
class _Increment:
    """What an incremental publish applies on top of the previous file."""

    build_id: int
    previous: Path
    #: (inode, size, mtime_ns) of `previous` when it was found to be the last publish's file
    previous_identity: FileIdentity
    base_bytes: int
    #: mart -> (key column, the warehouse table holding the recomputed keys)
    keyed: dict[str, tuple[str, str]]
    #: mart -> the warehouse table holding its rows of those keys after the build (builds
    #: that kept them); the rows are inserted from there, not looked up in the mart again
    rows: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishResult:
    """What one publish wrote."""

    target: Path
    row_counts: dict[str, int]
    bytes: int
    seconds: float
    incremental: bool = False

    @property
    def tables(self) -> tuple[str, ...]:
        """The published tables, sorted by name."""
        return tuple(sorted(self.row_counts))

    @property
    def rows(self) -> int:
        """Rows over every published table."""
        return sum(self.row_counts.values())

    def summary(self) -> str:
        """One line for the terminal or a cron mail."""
        how = "incrementally " if self.incremental else ""
        return (
            f"published {how}{len(self.row_counts)} tables ({self.rows:,} rows, "
            f"{self.bytes / 1_048_576:.1f} MiB) to {self.target} in {self.seconds:.2f} s"
        )


def default_publish_path(warehouse: Path) -> Path:
    """Where the analytics file goes when no setting says otherwise.

    Beside the warehouse, named after its stem: `data/quorum.duckdb` publishes
    `data/quorum-analytics.duckdb`.
    """
    return warehouse.with_name(warehouse.stem + PUBLISHED_SUFFIX)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the staging folders that runs killed while publishing to `target` left behind.

    A publish holds an exclusive `flock` on its staging folder until it is done; the kernel
    drops it when the process dies. So a folder that can be locked belongs to no living
    publish and is removed, while the folder of a publish still running (say a `models`
    command started by hand during the nightly run) is left alone.

    Args:
        target: the published file.

    Returns:
        The folders removed, sorted.
    """
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for folder in sorted(target.parent.glob(staging_prefix(target) + "*")):
        try:
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # removed meanwhile, or not a folder: nothing of ours
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a publish is writing it right now
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(descriptor)
    return removed


def publish_analytics(
    warehouse: Path,
    target: Path,
    *,
    schema: str = MARTS_SCHEMA,
    connection: duckdb.DuckDBPyConnection | None = None,
    threads: int | None = None,
    on_staged: Callable[[Path], None] | None = None,
    full: bool = False,
    prefetched: PublishedCopy | None = None,
) -> PublishResult:
    """Copy every table of `schema` into a new DuckDB file and atomically replace `target`.

    Call it only after a successful model build: whatever the warehouse's `schema` holds is
    what readers get. It removes what killed publishes left behind first.

    Args:
        warehouse: the warehouse file holding the built marts.
        target: the published file; created with its folder when missing.
        schema: the schema to publish, under the same name.
        connection: an open connection to `warehouse` (say the one that just built the
            models); when None the warehouse is opened read-only for the copy and closed.
            It must not be inside a transaction.
        threads: DuckDB worker threads when this function opens the warehouse.
        on_staged: called with the complete, synced staging file just before it replaces
            `target` (a moment tests need to hold; the nightly job passes None).
        full: copy every mart whole even when an incremental publish is possible.
        prefetched: a copy of `target` started earlier (`PublishedCopy`); an incremental
            publish starts from it instead of copying the file now, when it is a copy of
            exactly the file found to be the last publish's. The caller closes it.

    Returns:
        The tables and rows published, the file's size and the time it took.

    Raises:
        ConfigError: the warehouse is missing or cannot be opened.
        PublishError: nothing to publish, or the file could not be written or renamed; the
            published file is unchanged.
    """
    started = time.perf_counter()
    target = Path(target)
    _check_arguments(Path(warehouse), target, schema)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _failure(target, error) from error
    remove_stale_temporaries(target)
    own_connection = connection is None
    database = connection if connection is not None else connect(
        warehouse, read_only=True, threads=threads
    )
    increment: _Increment | None = None
    try:
        if not full and schema == MARTS_SCHEMA:
            increment = _increment_for(database, target)
        with _staging_folder(target) as folder:
            staged = folder / target.name
            if increment is not None:
                row_counts = _write_increment(database, increment, staged, schema, prefetched)
            else:
                row_counts = _write_copy(database, Path(warehouse), staged, schema)
            _fsync_file(staged)
            if on_staged is not None:
                on_staged(staged)
            try:
                os.replace(staged, target)
                _fsync_folder(target.parent)
                size = target.stat().st_size
            except OSError as error:
                raise _failure(target, error) from error
    finally:
        if own_connection:
            database.close()
    if schema == MARTS_SCHEMA:
        base = increment.base_bytes if increment is not None else size
        _record_publish(Path(warehouse), connection, target, base, threads)
    return PublishResult(
        target=target,
        row_counts=row_counts,
        bytes=size,
        seconds=time.perf_counter() - started,
        incremental=increment is not None,
    )


def build_and_publish(
    warehouse: Path,
    target: Path | None = None,
    sql_dir: Path | None = None,
    *,
    threads: int | None = None,
) -> tuple[BuildResult, PublishResult]:
    """Build the models and data checks, then publish: the order the nightly job runs them.

    A failed model or check raises before anything is published, so readers keep the last
    good build.

    Args:
        warehouse: the warehouse file holding the raw tables.
        target: the published file; `default_publish_path(warehouse)` when None.
        sql_dir: the model directory; the project's `sql/` when None.
        threads: DuckDB worker threads for the build and the copy.

    Returns:
        The build's result and the publish's result.

    Raises:
        ConfigError, ModelBuildError, DataCheckError: from the build; nothing published.
        PublishError: the build succeeded but the file could not be published.
    """
    build = build_models(warehouse, sql_dir, threads=threads)
    published = publish_analytics(
        warehouse, target if target is not None else default_publish_path(warehouse),
        threads=threads,
    )
    return build, published


def _check_arguments(warehouse: Path, target: Path, schema: str) -> None:
    if not _IDENTIFIER.fullmatch(schema):
        raise PublishError(
            f"Cannot publish the schema {schema!r}: a schema name is lowercase letters, "
            "digits and underscores. Pass the name of the schema the models build."
        )
    if target.is_dir():
        raise PublishError(
            f"The publish target {target} is a folder. Set publish_database (or "
            "QUORUM_PUBLISH_DATABASE, or --publish-database) to a file path such as "
            f"{target / 'quorum-analytics.duckdb'}."
        )
    if target.resolve() == warehouse.resolve():
        raise PublishError(
            f"The publish target {target} is the warehouse itself. The published file must be a "
            "separate file that tools may open while the job writes the warehouse: set "
            f"publish_database to another path, or leave it unset for "
            f"{default_publish_path(warehouse)}."
        )


@contextlib.contextmanager
def _staging_folder(target: Path) -> Iterator[Path]:
    """A private (0700) folder beside `target`, locked while it is in use, removed after."""
    try:
        folder = Path(tempfile.mkdtemp(prefix=staging_prefix(target), dir=target.parent))
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise _failure(target, error) from error
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(descriptor)


def _write_copy(
    database: duckdb.DuckDBPyConnection, warehouse: Path, staged: Path, schema: str
) -> dict[str, int]:
    """Copy every base table of `schema` into a new file at `staged`; return the row counts."""
    source = _current_database(database)
    tables = _base_tables(database, source, schema)
    if not tables:
        raise PublishError(
            f"The warehouse {warehouse} has no tables in the schema {schema}, so there is "
            "nothing to publish and the published file was left as it was. Build the models "
            "first (`quorum-sms models`)."
        )
    row_counts: dict[str, int] = {}
    # the storage version DuckDB 1.1 reads; owner-only before a single row lands in it
    options = f"storage_version '{PUBLISH_STORAGE_VERSION}', read_only false"
    with _attached(database, staged, options, chmod=True) as alias:
        database.execute(f"create schema {alias}.{schema}")
        for table in tables:
            database.execute(
                f'create table {alias}.{schema}."{table}" as '
                f'select * from "{source}".{schema}."{table}"'
            )
            row = database.execute(f'select count(*) from {alias}.{schema}."{table}"').fetchone()
            row_counts[table] = int(row[0]) if row else 0
    return row_counts


def _increment_for(database: duckdb.DuckDBPyConnection, target: Path) -> _Increment | None:
    """The increment to apply to the published file, or None when it must be copied whole."""
    source = _current_database(database)
    bookkeeping = set(_base_tables(database, source, BOOKKEEPING_SCHEMA))
    if not {"model_builds", "model_build_tables", "model_publishes"} <= bookkeeping:
        return None
    latest = database.execute(f"select max(build_id) from {BUILDS_TABLE}").fetchone()
    if latest is None or latest[0] is None:
        return None
    build_id = int(latest[0])
    try:
        stat = target.stat()
        with target.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if header[8:12] != b"DUCK" or int.from_bytes(header[12:20], "little") != (
        PUBLISH_STORAGE_NUMBER
    ):
        return None
    recorded = database.execute(
        f"select build_id, inode, bytes, mtime_ns, base_bytes from {PUBLISHES_TABLE} "
        "where target = ?",
        [str(target.resolve())],
    ).fetchone()
    found = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if recorded is None or tuple(int(v) for v in recorded[:4]) != (build_id - 1, *found):
        return None
    base_bytes = int(recorded[4])
    if stat.st_size > max(MAX_GROWTH * base_bytes, base_bytes + GROWTH_ALLOWANCE):
        return None
    # a build by an earlier version kept no rows tables (its bookkeeping lacks the column)
    kept_rows = "rows_table" in {
        str(row[0]) for row in database.execute(
            "select column_name from information_schema.columns "
            "where table_catalog = ? and table_schema = ? and table_name = ?",
            [source, BOOKKEEPING_SCHEMA, BUILD_TABLES_TABLE.split(".", 1)[1]],
        ).fetchall()
    }
    rows = database.execute(
        f"select relation, mode, key_column, key_table, "
        f"{'rows_table' if kept_rows else 'null'} from {BUILD_TABLES_TABLE} "
        "where build_id = ?",
        [build_id],
    ).fetchall()
    keyed = {
        str(relation).split(".", 1)[1]: (str(column), str(table))
        for relation, mode, column, table, _ in rows
        if mode == "incremental"
    }
    if not keyed:
        return None  # a full build: every mart is new, a fresh copy is cheaper
    new_rows = {
        str(relation).split(".", 1)[1]: str(kept)
        for relation, mode, _, _, kept in rows
        if mode == "incremental" and kept is not None
    }
    return _Increment(build_id, target, found, base_bytes, keyed, new_rows)


def _write_increment(
    database: duckdb.DuckDBPyConnection,
    increment: _Increment,
    staged: Path,
    schema: str,
    prefetched: PublishedCopy | None,
) -> dict[str, int]:
    """Copy the previous file to `staged` and apply this build's changes; the row counts."""
    source = _current_database(database)
    tables = _base_tables(database, source, schema)
    copied = prefetched.take(increment.previous_identity) if prefetched is not None else None
    try:
        if copied is not None:
            os.replace(copied, staged)  # both folders sit beside the target: a rename
        else:
            shutil.copyfile(increment.previous, staged)
        os.chmod(staged, FILE_MODE)
    except OSError as error:
        raise _failure(increment.previous, error) from error
    row_counts: dict[str, int] = {}
    with _attached(database, staged, "read_only false") as alias:
        published = set(_base_tables(database, alias, schema))
        for table in tables:
            mine = f'{alias}.{schema}."{table}"'
            theirs = f'"{source}".{schema}."{table}"'
            if table in increment.keyed and table in published:
                column, keys = increment.keyed[table]
                chosen = _member(database, column, f'"{source}".{keys}')
                database.execute(f"delete from {mine} where {chosen}")
                if table in increment.rows:
                    database.execute(
                        f'insert into {mine} select * from "{source}".{increment.rows[table]}'
                    )
                else:
                    database.execute(f"insert into {mine} select * from {theirs} where {chosen}")
            else:
                database.execute(f"create or replace table {mine} as select * from {theirs}")
            row = database.execute(f"select count(*) from {mine}").fetchone()
            row_counts[table] = int(row[0]) if row else 0
        for table in sorted(published - set(tables)):
            database.execute(f'drop table {alias}.{schema}."{table}"')
    return row_counts


@contextlib.contextmanager
def _attached(
    database: duckdb.DuckDBPyConnection, staged: Path, options: str, *, chmod: bool = False
) -> Iterator[str]:
    """Attach `staged`, run the block in one transaction, checkpoint and detach; the alias.

    One transaction, so every mart comes from the same build of the warehouse; the
    checkpoint puts everything into the main file, so the renamed file needs no WAL beside
    it. A DuckDB or file error becomes a PublishError (the published file is unchanged).
    """
    alias = f"quorum_publish_{uuid.uuid4().hex[:12]}"
    literal = "'" + str(staged).replace("'", "''") + "'"
    attached = False
    try:
        database.execute(f"attach {literal} as {alias} ({options})")
        attached = True
        if chmod:
            os.chmod(staged, FILE_MODE)  # its folder is 0700 already
        database.execute("begin transaction")
        try:
            yield alias
            database.execute("commit")
        except BaseException:
            database.execute("rollback")
            raise
        database.execute(f"checkpoint {alias}")
        database.execute(f"detach {alias}")
        attached = False
    except (duckdb.Error, OSError) as error:
        raise _failure(staged.parent.parent / staged.name, error) from error
    finally:
        if attached:
            with contextlib.suppress(duckdb.Error):
                database.execute(f"detach {alias}")


def _member(database: duckdb.DuckDBPyConnection, column: str, key_table: str) -> str:
    """The rows whose `column` is among the keys; NULL is a key too (individual texts)."""
    nulls = database.execute(
        f'select count(*) from {key_table} where "{column}" is null'
    ).fetchone()
    if not nulls or not nulls[0]:
        # a plain `in` becomes a semi join pushed into the scan
        return f'"{column}" in (select "{column}" from {key_table})'
    return (
        f'("{column}" in (select "{column}" from {key_table} where "{column}" is not null) '
        f'or ("{column}" is null and exists (select 1 from {key_table} '
        f'where "{column}" is null)))'
    )


def _record_publish(
    warehouse: Path,
    connection: duckdb.DuckDBPyConnection | None,
    target: Path,
    base_bytes: int,
    threads: int | None,
) -> None:
    """Remember which build the published file holds, so the next publish can build on it.

    Best effort: when the warehouse cannot be written (a read-only connection was handed
    in), nothing is recorded and the next publish copies every mart whole.
    """
    try:
        stat = target.stat()
        database = connection if connection is not None else connect(
            warehouse, read_only=False, threads=threads
        )
    except (OSError, duckdb.Error, ConfigError):
        return
    try:
        source = _current_database(database)
        if "model_builds" not in _base_tables(database, source, BOOKKEEPING_SCHEMA):
            return
        latest = database.execute(f"select max(build_id) from {BUILDS_TABLE}").fetchone()
        database.execute(
            f"create table if not exists {PUBLISHES_TABLE} (target varchar, build_id bigint, "
            "inode bigint, bytes bigint, mtime_ns bigint, base_bytes bigint, "
            "published_at timestamptz)"
        )
        resolved = str(target.resolve())
        database.execute("begin transaction")
        database.execute(f"delete from {PUBLISHES_TABLE} where target = ?", [resolved])
        database.execute(
            f"insert into {PUBLISHES_TABLE} values (?, ?, ?, ?, ?, ?, current_timestamp)",
            [resolved, latest[0] if latest else None, stat.st_ino, stat.st_size,
             stat.st_mtime_ns, base_bytes],
        )
        database.execute("commit")
    except duckdb.Error:
        with contextlib.suppress(duckdb.Error):
            database.execute("rollback")
    finally:
        if connection is None:
            database.close()


def _current_database(database: duckdb.DuckDBPyConnection) -> str:
    row = database.execute("select current_database()").fetchone()
    if row is None:  # pragma: no cover - DuckDB always has a current database
        raise PublishError("DuckDB reports no current database; reopen the warehouse.")
    return str(row[0])


def _base_tables(database: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> list[str]:
    rows = database.execute(
        "select table_name from information_schema.tables where table_catalog = ? "
        "and table_schema = ? and table_type = 'BASE TABLE' order by table_name",
        [catalog, schema],
    ).fetchall()
    return [str(row[0]) for row in rows]


def _fsync_file(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fchmod(descriptor, FILE_MODE)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise _failure(path.parent.parent / path.name, error) from error


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _failure(target: Path, error: BaseException) -> PublishError:
    first = str(error).split("\n", 1)[0].strip()
    return PublishError(
        f"Publishing the analytics file {target} failed: {first}. The published file was "
        "not changed, so readers keep the previous build, and the warehouse is intact. Check "
        f"that {target.parent} exists, is writable and has free space, then run "
        "`quorum-sms models` to build and publish again."
    )

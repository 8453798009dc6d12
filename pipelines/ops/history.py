"""The run history: one row per run in `quorum_ops.sync_runs`, failed and killed runs too.

The warehouse is a DuckDB file or a PostgreSQL database (`pipelines.target`); both go through
`engine.Warehouse`, so one code path writes either. DuckDB allows one writing process, and dlt
opens the file while it loads, so this module never holds a connection: each write opens the
warehouse, writes and closes it. Writes happen while the caller holds the warehouse's run
lock (`pipelines.lock.warehouse_lock`), which
is also what makes stale rows decidable: a run that holds the lock knows that every other row
still marked `running` belongs to a process that died (SIGKILL, power loss) without writing
its end, and marks it `interrupted`.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from pipelines.errors import BusyError, ConfigError
from pipelines.redaction import redact
from pipelines.warehouse.engine import Warehouse, is_postgres_target, open_warehouse

Target = str | Path

SCHEMA = "quorum_ops"
TABLE = f"{SCHEMA}.sync_runs"
STATUSES = ("running", "succeeded", "failed", "interrupted")

#: Column name -> DuckDB type; the order is the table's column order.
COLUMNS: dict[str, str] = {
    # types both engines read the same way (timestamptz, bigint, integer, varchar)
    "run_id": "VARCHAR NOT NULL",  # a uuid4; no index: DuckDB updates indexed rows poorly
    "command": "VARCHAR NOT NULL",
    "status": "VARCHAR NOT NULL",
    "pid": "BIGINT",
    "host": "VARCHAR",
    "started_at": "TIMESTAMPTZ NOT NULL",
    "finished_at": "TIMESTAMPTZ",
    "records_fetched": "BIGINT",
    "records_loaded": "BIGINT",
    "records_new": "BIGINT",
    "records_updated": "BIGINT",
    # read again in the lag window exactly as stored: not loaded again
    "records_unchanged": "BIGINT",
    "events_loaded": "BIGINT",
    "records_deleted": "BIGINT",
    "records_rejected": "BIGINT",
    "rejected_sample": "VARCHAR",
    "pages": "BIGINT",
    "requests": "BIGINT",
    "retries": "BIGINT",
    "paging_mode": "VARCHAR",
    "cursor_before": "VARCHAR",
    "cursor_after": "VARCHAR",
    "exit_code": "INTEGER",
    "error": "VARCHAR",
    # the run let DuckDB merge row groups (`duckdb_compact_every`); NULL: not a DuckDB sync
    "compacted": "BOOLEAN",
}
DDL = (
    f"create schema if not exists {SCHEMA}; "
    f"create table if not exists {TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    + ")"
)
_MAX_ERROR_CHARS = 2000


@dataclass
class RunCounts:
    """What a run did, as far as it got (all optional: a failed run may know little)."""

    records_fetched: int | None = None
    records_loaded: int | None = None
    records_new: int | None = None
    records_updated: int | None = None
    records_unchanged: int | None = None
    events_loaded: int | None = None
    records_deleted: int | None = None
    records_rejected: int | None = None
    rejected_sample: str | None = None
    pages: int | None = None
    requests: int | None = None
    retries: int | None = None
    paging_mode: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None


@dataclass(frozen=True)
class RunRow:
    """One row of the run history, as `quorum-sms status` shows it."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


class _Executes(Protocol):
    def execute(self, sql: str, /) -> object: ...


def ensure_table(connection: _Executes) -> None:
    """Create `quorum_ops.sync_runs` if it does not exist (models read it: sync_freshness).

    Args:
        connection: a `Warehouse` or a DuckDB connection (tests and benchmarks).
    """
    for statement in DDL.split("; "):
        connection.execute(statement)
    # a warehouse made by an older version lacks the columns added since
    for name, kind in COLUMNS.items():
        if "NOT NULL" not in kind:
            connection.execute(f"alter table {TABLE} add column if not exists {name} {kind}")


@contextmanager
def _connect(target: Target, *, read_only: bool = False) -> Iterator[Warehouse]:
    if not is_postgres_target(target):
        path = Path(target)
        if not path.exists() and not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            duckdb.connect(str(path)).close()  # a first run creates the warehouse file
    try:
        # a few rows; the checkpoint at its close may still compact what the last load
        # deleted, within this ceiling (`memory.SMALL_LIMIT`)
        warehouse = open_warehouse(target, read_only=read_only, light=True)
    except ConfigError as error:
        if is_postgres_target(target):
            raise
        raise BusyError(
            f"The database {target} is open for writing in another process (a sync, a BI "
            f"tool) so the run history cannot be {'read' if read_only else 'written'} "
            f"({redact(str(error).splitlines()[0])[:200]}). Try again when that process is done."
        ) from None
    try:
        yield warehouse
    finally:
        warehouse.close()


def _now() -> datetime:
    return datetime.now(UTC)


class RunRecorder:
    """Writes one run's row: `start` (status running, with the pid), then `finish`.

    The caller must hold the database's run lock from `start` to `finish`.

    Args:
        target: the DuckDB file (created if needed) or a PostgreSQL credentials string.
        command: `sync` or `reconcile`.
    """

    def __init__(self, target: Target, command: str) -> None:
        self.target = target
        self.command = command
        self.run_id = str(uuid.uuid4())
        self.started_at: datetime | None = None
        self.interrupted_marked = 0
        #: whether this run lets DuckDB merge row groups; written by `finish` when set
        self.compacting: bool | None = None
        #: read by `start`: succeeded syncs since the newest succeeded one that compacted, or
        #: None when none did (`duckdb_compact_every`)
        self.syncs_since_compaction: int | None = None

    def start(self, cursor_before: str | None = None) -> None:
        """Mark stale `running` rows interrupted, then insert this run's `running` row.

        On the way it reads `syncs_since_compaction` (before this run's row exists).
        """
        self.started_at = _now()
        with _connect(self.target) as warehouse:
            ensure_table(warehouse)
            self.syncs_since_compaction = _syncs_since_compaction(warehouse)
            marked = warehouse.query(
                f"update {TABLE} set status = 'interrupted', finished_at = coalesce("
                "finished_at, ?), error = coalesce(error, 'the process ended without recording "
                "its end (killed, or the machine stopped); a later run found it') "
                "where status = 'running' and run_id <> ? returning run_id",
                [self.started_at, self.run_id],
            ).rows
            self.interrupted_marked = len(marked)
            warehouse.execute(
                f"insert into {TABLE} (run_id, command, status, pid, host, started_at, "
                "cursor_before) values (?, ?, 'running', ?, ?, ?, ?)",
                [
                    self.run_id,
                    self.command,
                    os.getpid(),
                    socket.gethostname(),
                    self.started_at,
                    cursor_before,
                ],
            )

    def finish(
        self,
        status: str,
        counts: RunCounts | None = None,
        *,
        error: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Record the run's end: its status, what it did and, for a failure, the error."""
        if status not in STATUSES[1:]:
            raise ValueError(f"not a final status: {status}")
        counts = counts or RunCounts()
        if exit_code is None:
            exit_code = 0 if status == "succeeded" else 1
        text = None if error is None else redact(" ".join(error.split()))[:_MAX_ERROR_CHARS]
        values: dict[str, Any] = {
            "status": status,
            "finished_at": _now(),
            "exit_code": exit_code,
            "error": text,
        }
        for name, value in vars(counts).items():
            if value is not None:
                values[name] = value
        if self.compacting is not None:
            values["compacted"] = self.compacting
        assignments = ", ".join(f"{name} = ?" for name in values)
        with _connect(self.target) as warehouse:
            warehouse.execute(
                f"update {TABLE} set {assignments} where run_id = ?",
                [*values.values(), self.run_id],
            )


def _syncs_since_compaction(warehouse: Warehouse) -> int | None:
    """Succeeded syncs since the newest succeeded one that compacted, or None if none did."""
    result = warehouse.query(
        f"with syncs as (select started_at, compacted from {TABLE} "
        "where command = 'sync' and status = 'succeeded') "
        "select count(*) filter (where started_at > (select max(started_at) from syncs "
        "where compacted)), count(*) filter (where compacted) from syncs"
    )
    since, compactions = result.rows[0]
    return None if not compactions else int(since)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (for rows not yet marked)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exists(target: Target) -> bool:
    return is_postgres_target(target) or Path(target).is_file()


def recent_runs(target: Target, limit: int = 10) -> list[RunRow]:
    """The newest runs first; an empty list when the warehouse has no history yet."""
    if not _exists(target):
        return []
    with _connect(target, read_only=True) as warehouse:
        if "sync_runs" not in warehouse.table_names(SCHEMA):
            return []
        result = warehouse.query(
            f"select * from {TABLE} order by started_at desc, run_id limit ?", [limit]
        )
    return [RunRow(dict(zip(result.columns, row, strict=True))) for row in result.rows]


def freshness(target: Target) -> dict[str, Any] | None:
    """The `analytics.sync_freshness` row, or None when the models have not been built."""
    if not _exists(target):
        return None
    with _connect(target, read_only=True) as warehouse:
        if "sync_freshness" not in warehouse.table_names("analytics"):
            return None
        result = warehouse.query("select * from analytics.sync_freshness")
    return None if not result.rows else dict(zip(result.columns, result.rows[0], strict=True))

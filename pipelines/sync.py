"""One sync: finish any failed load, read what changed, merge, summarise.

The caller holds the warehouse's run lock (`pipelines.lock`); the orchestrator does. The raw
tables go to the configured dlt destination: the DuckDB file, a PostgreSQL database (schema
`quorum_raw`, the same column types), or any other dlt destination.

The cursor lives in dlt's pipeline state, which dlt commits in the same load as the data it
belongs to: a run that fails before its load leaves both the warehouse and the cursor as
they were, and a run killed during its load is finished by the next run before it reads on.
"""

from __future__ import annotations

import copy
import functools
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import dlt
import duckdb
from dlt.common.configuration.utils import get_resolved_traces
from dlt.common.destination import TLoaderFileFormat
from dlt.common.pipeline import NormalizeInfo
from dlt.destinations.exceptions import DatabaseException, DatabaseUndefinedRelation
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.load.exceptions import LoadClientJobFailed, LoadClientJobRetry
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.background import BackgroundStep
from pipelines.config import SyncConfig
from pipelines.errors import ConfigError, QuorumSmsError, SyncFailed
from pipelines.logs import exception_words
from pipelines.process_memory import release_free_memory
from pipelines.quorum import (
    SourceObserver,
    effective_lag,
    load_windows,
    quorum_source,
    settings,
)
from pipelines.quorum.normalize import PersonalDataPolicy
from pipelines.quorum.rejects import KNOWN_REJECTS_QUERY, KnownReject
from pipelines.quorum.versions import StoredVersions
from pipelines.redaction import redact
from pipelines.target import POSTGRES, builds_models, postgres_credentials, warehouse_target
from pipelines.warehouse.database import vacuum_settings
from pipelines.warehouse.engine import Warehouse, open_warehouse
from pipelines.warehouse.incremental import BOOKKEEPING_SCHEMA
from pipelines.warehouse.memory import (
    DUCKDB_OUT_OF_MEMORY_WORDS,
    SMALL_LIMIT,
    is_auto,
    load_limit,
    memory_limit_for,
    night_limit,
    raised_limit,
)
from pipelines.warehouse.pg_indexes import ensure_raw_indexes
from pipelines.warehouse.raw_refresh import drop_views_on_raw, refuse_foreign_views
from pipelines.warehouse.vectors import parquet_ids, vectors_holding_sql

logger = logging.getLogger(__name__)


@dataclass
class SyncSummary:
    """What a sync did, for the terminal, a cron mail and the run history."""

    database: Path
    records_fetched: int = 0
    #: of those, read again exactly as stored (the lag window's re-reads): not loaded again
    records_unchanged: int = 0
    records_new: int = 0
    records_updated: int = 0
    events_loaded: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    paging_mode: str = "keyset"
    fallback_reason: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None
    read_from: str | None = None
    pending_load_finished: bool = False
    #: open rejects after this run (records set aside in quorum_raw.sendsms_rejects)
    records_rejected: int = 0
    rejects_new: int = 0
    rejects_resolved: int = 0
    rejects_gone: int = 0
    #: the first few (id, reason) of the open rejects
    reject_samples: list[tuple[int | None, str]] = field(default_factory=list)
    duration_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary as aligned `label: value` lines."""
        rows = [
            ("database", str(self.database)),
            ("records fetched", f"{self.records_fetched:,}"),
            ("unchanged", f"{self.records_unchanged:,} (read again in the lag window as "
                          "already loaded: not loaded again)"),
            ("new", f"{self.records_new:,}"),
            ("updated", f"{self.records_updated:,}"),
            ("event rows loaded", f"{self.events_loaded:,}"),
            ("pages", f"{self.pages:,} ({self.requests:,} requests, {self.retries:,} retries)"),
            ("paging", f"{self.paging_mode}: {self.fallback_reason or 'as planned'}"),
            ("read from", self.read_from or "the beginning"),
            ("cursor before", self.cursor_before or "none (first run)"),
            ("cursor after", self.cursor_after or "none"),
            ("duration", f"{self.duration_seconds:.1f} s"),
        ]
        if self.records_rejected or self.rejects_resolved or self.rejects_gone:
            rows.append((
                "rejected",
                f"{self.records_rejected:,} set aside in quorum_raw.sendsms_rejects "
                f"({self.rejects_new:,} new), {self.rejects_resolved:,} earlier rejects loaded, "
                f"{self.rejects_gone:,} gone at the source",
            ))
            rows += [("  reject", f"id {i}: {reason}") for i, reason in self.reject_samples]
        if self.pending_load_finished:
            rows.append(("note", "finished the load a previous run left pending"))
        rows += [("note", note) for note in self.notes]
        width = max(len(label) for label, _ in rows)
        return [f"  {label:<{width}}  {value}" for label, value in rows]


#: The loader file format per destination; others take dlt's preferred one. PostgreSQL's
#: parquet loading needs the ADBC driver, and its csv copy reads an empty string as NULL;
#: insert_values keeps empty strings and NULLs apart.
LOADER_FILE_FORMATS: dict[str, TLoaderFileFormat] = {
    "duckdb": "parquet",
    POSTGRES: "insert_values",
}


#: dlt's own table of finished loads, in the raw dataset.
DLT_LOADS_TABLE = "_dlt_loads"


def pipelines_dir_for(database: Path, destination: str = "duckdb") -> Path:
    """dlt's working folder: beside the database path, so state follows the data.

    `<database>.dlt` for DuckDB; `<database>.<destination>.dlt` for the others, so that a
    switch of destination never reuses a cursor saved for another warehouse.
    """
    if destination == "duckdb":
        return database.with_name(database.name + ".dlt")
    return database.with_name(f"{database.name}.{destination}.dlt")


def duckdb_settings(config: SyncConfig, memory_limit: str | None = None) -> dict[str, Any]:
    """The DuckDB settings of the sync's connections.

    DuckDB's default memory limit is 80 % of RAM: the merge of a large load would take it. A
    fixed limit makes it spill to disk instead, so memory stays flat however big the sync.
    Row groups are merged at the load's checkpoint only when the run may compact
    (`database.vacuum_settings`).

    Args:
        config: the validated settings.
        memory_limit: the ceiling to use instead of the configured one (a retry's).
    """
    return {
        "memory_limit": memory_limit
        or memory_limit_for(config.run.duckdb_memory_limit, config.database),
        "threads": config.run.duckdb_threads,
        "preserve_insertion_order": False,
        # the run's choice (`orchestrator`): merge row groups at this load's checkpoint or not
        **vacuum_settings(),
    }


def make_pipeline(
    config: SyncConfig, connection: duckdb.DuckDBPyConnection | None = None
) -> dlt.Pipeline:
    """The dlt pipeline writing `quorum_raw` into the configured destination.

    Args:
        config: the validated settings.
        connection: DuckDB only: an open connection to the database that dlt uses (and does
            not close) instead of opening and closing its own per job.
    """
    destination: Any
    if config.is_duckdb and connection is not None:
        destination = dlt.destinations.duckdb(credentials=DuckDbCredentials(connection))
    elif config.is_duckdb:
        credentials = DuckDbCredentials(str(config.database))
        credentials.global_config = duckdb_settings(config)
        destination = dlt.destinations.duckdb(credentials=credentials)
    elif config.run.destination == POSTGRES:
        destination = dlt.destinations.postgres(credentials=postgres_credentials())
    else:
        destination = config.run.destination
    # Every raw row carries the load that wrote it: the incremental model build finds what
    # changed since its last run by it (the Arrow extractor adds the column as it writes).
    dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
    return dlt.pipeline(
        pipeline_name=settings.PIPELINE_NAME,
        pipelines_dir=str(pipelines_dir_for(config.database, config.run.destination)),
        destination=destination,
        dataset_name=settings.RAW_DATASET,
    )


#: dlt's setting: failed attempts of one load job before the load step raises.
RETRIES_SETTING = "load.raise_on_max_retries"
#: dlt's default of RETRIES_SETTING, put back after a DuckDB window's load when unset.
DLT_LOAD_RETRIES = 5
#: Attempts at one window's load on DuckDB, each on a new connection.
DUCKDB_LOAD_ATTEMPTS = 3


@contextmanager
def loading_pipeline(
    config: SyncConfig, *, trace: bool = True, memory_limit: str | None = None
) -> Iterator[dlt.Pipeline]:
    """The pipeline for one window's load, holding one DuckDB connection for the block.

    dlt opens and closes a DuckDB connection per load job, and the last close of a database
    checkpoints it: three or four checkpoints per load, each compressing what the last wrote
    (the staging copies too) and syncing the file; 2.4 s of a 10M nightly's 2.9 s load. One
    connection held through the load, its clean-up and its bookkeeping checkpoints once, at
    its close. It is closed after each window's load, so DuckDB's buffers go back (and the
    warehouse is open to other processes) while the next window is read.
    Inside the block nothing else in this process may open the database (DuckDB refuses a
    second connection with other settings): use the pipeline's `sql_client()`.

    Args:
        config: the validated settings.
        trace: keep dlt's runtime trace of the load in the pipeline's folder. A load beside
            the next window's read runs without: both pipelines would replace the one trace
            file at once, and dlt's replacement is not safe against that.
        memory_limit: DuckDB's ceiling for this load instead of the configured one.
    """
    if not config.is_duckdb:
        pipeline = make_pipeline(config)
        pipeline.config.enable_runtime_trace = trace
        try:
            yield pipeline
        finally:
            forget_config_traces()
        return
    connection = duckdb.connect(
        str(config.database), config=duckdb_settings(config, memory_limit)
    )
    # dlt retries a failed job on the same connection, where what the failed attempt did is
    # still in the way (`Conflict on tuple deletion`): it stops at the first failure instead,
    # and `_load_and_clean_up` retries the load on a new connection
    retries: int | None = dlt.config.get(RETRIES_SETTING)
    dlt.config[RETRIES_SETTING] = 1
    try:
        pipeline = make_pipeline(config, connection)
        pipeline.config.enable_runtime_trace = trace
        yield pipeline
    finally:
        dlt.config[RETRIES_SETTING] = DLT_LOAD_RETRIES if retries is None else retries
        connection.close()
        forget_config_traces()


def resource_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The `sendsms` resource's saved state (cursor and paging notes), or an empty dict."""
    state: Any = pipeline.state
    try:
        found = state["sources"]["quorum"]["resources"][settings.SENDSMS_TABLE]
    except (KeyError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def saved_cursor(pipeline: dlt.Pipeline) -> str | None:
    """The `updated` cursor in the pipeline's state, as an ISO string, or None."""
    try:
        value = resource_state(pipeline)["incremental"][settings.CURSOR_FIELD]["last_value"]
    except (KeyError, TypeError):
        return None
    return None if value is None else str(value)


def delete_loaded_packages(pipeline: dlt.Pipeline) -> int:
    """Delete the load packages dlt has finished loading; return how many.

    dlt keeps every loaded package (the night's records as Parquet, personal data included)
    under `load/loaded/` for ever; the warehouse has the data, so they are only a plaintext
    copy that grows every night. Packages not yet loaded (`load/normalized/`: a load that
    failed or was killed, which the next run finishes first) are never touched, and neither
    is an aborted package (kept for diagnosis).
    """
    removed = 0
    for load_id in pipeline.list_completed_load_packages():
        info = pipeline.get_load_package_info(load_id)
        if info.state == "loaded":
            shutil.rmtree(info.package_path, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def _raw_sendsms(config: SyncConfig) -> Iterator[tuple[Warehouse, str] | None]:
    """A light read-only connection and the name of `quorum_raw.sendsms`; None where we
    build no models or the table does not exist yet."""
    if not builds_models(config.run.destination) or (
        config.is_duckdb and not config.database.exists()
    ):
        yield None
        return
    target = warehouse_target(config.run.destination, config.database)
    with open_warehouse(target, read_only=True, light=True) as warehouse:
        if settings.SENDSMS_TABLE not in warehouse.table_names(settings.RAW_DATASET):
            yield None
            return
        yield warehouse, f"{settings.RAW_DATASET}.{settings.SENDSMS_TABLE}"


def count_records(config: SyncConfig) -> int | None:
    """Rows in `quorum_raw.sendsms` (DuckDB or PostgreSQL), or None when there is none yet."""
    with _raw_sendsms(config) as raw:
        return None if raw is None else _count(*raw)


def records_before(
    config: SyncConfig, stored_from: datetime | None
) -> tuple[int | None, StoredVersions | None]:
    """Before the read, on one connection: `count_records`, and the stored versions of the
    records changed at or after `stored_from` (None reads none; see `stored_versions`)."""
    with _raw_sendsms(config) as raw:
        if raw is None:
            return None, None
        return _count(*raw), stored_versions(*raw, stored_from)


def _count(warehouse: Warehouse, table: str) -> int:
    return int(warehouse.query(f"select count(*) from {table}").rows[0][0])


#: The most stored versions a run reads for its lag window (16 bytes each in memory). A wider
#: window (a lag widened after a long full scan) loads its re-reads again, as before.
MAX_STORED_VERSIONS = 500_000


def stored_versions(
    warehouse: Warehouse, table: str, start: datetime | None
) -> StoredVersions | None:
    """The `(id, updated)` of the records in `table` changed at or after `start`.

    A nightly run reads again, in its lag window, records the last run loaded; those whose
    `updated` is the stored one are not loaded again (`quorum.versions`). The caller passes
    None, and every record read is loaded, on a first run, with `--full-refresh` or
    `--since` (a backfill re-reads to rewrite); so does a window holding more than
    `MAX_STORED_VERSIONS` records. Rows `reconcile` marked deleted at the source are left
    out: one the API serves again is loaded, which clears its mark.
    """
    if start is None:
        return None
    rows = warehouse.query(
        f"select id, updated from {table} where updated >= ? and source_deleted_at is null "
        f"limit {MAX_STORED_VERSIONS + 1}",
        [start],
    ).rows
    if len(rows) > MAX_STORED_VERSIONS:
        logger.info("more than %d records in the lag window: every re-read is loaded again",
                    MAX_STORED_VERSIONS)
        return None
    return StoredVersions.from_rows(rows)


def ensure_postgres_indexes(config: SyncConfig) -> None:
    """PostgreSQL: give the raw tables the indexes the next merge and cleanup look up by
    (dlt creates none; see warehouse/pg_indexes.py). Cheap when they exist."""
    if config.run.destination == POSTGRES:
        with open_warehouse(postgres_credentials()) as warehouse:
            ensure_raw_indexes(warehouse)


def known_rejects(pipeline: dlt.Pipeline) -> list[KnownReject]:
    """The rows of `quorum_raw.sendsms_rejects` in the destination (none before the first).

    The source fetches the open ones again by id and keeps their `first_seen_at`.
    """
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(KNOWN_REJECTS_QUERY) or []
    except DatabaseUndefinedRelation:
        return []
    return [KnownReject(*row) for row in rows]


def unwrap(error: BaseException) -> BaseException:
    """The error of ours (or the Ctrl-C) that dlt wrapped (PipelineStepFailed, ...), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, QuorumSmsError | KeyboardInterrupt):
            return current
        inner = getattr(current, "exception", None)
        current = inner if isinstance(inner, BaseException) else (
            current.__cause__ or current.__context__
        )
    return error


#: How `database_failure_text` starts when DuckDB ran out of memory.
DUCKDB_OUT_OF_MEMORY = "DuckDB ran out of its memory ceiling"


def unwrap_load_job(error: BaseException) -> BaseException | None:
    """The failed load job's error (dlt's retry or terminal job failure) inside `error`."""
    inner = getattr(error, "exception", None)
    return inner if isinstance(inner, LoadClientJobRetry | LoadClientJobFailed) else None


def _out_of_memory(job: BaseException) -> bool:
    """Whether a failed load job ran out of DuckDB's memory ceiling."""
    return DUCKDB_OUT_OF_MEMORY_WORDS in str(getattr(job, "failed_message", None) or job)


def step_failure_text(config: SyncConfig, error: PipelineStepFailed) -> str:
    """What stopped dlt's step, in words a terminal and a cron mail can show."""
    job = unwrap_load_job(error)
    message = getattr(job, "failed_message", None) if job is not None else None
    if isinstance(message, str):
        # the job's message is a whole traceback: the database's own words are on its last
        # exception line
        lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
        cause = exception_words(message) or (lines[-1] if lines else message)
        what = f"the load job {getattr(job, 'job_id', '?')} failed: "
    else:
        cause, what = str(unwrap(error)), ""
    text = database_failure_text(config, cause)
    # the advice on memory stands alone; any other failure names its job
    return text if text.startswith(DUCKDB_OUT_OF_MEMORY) else what + text


def database_failure_text(config: SyncConfig, cause: str) -> str:
    """The database's own words on a failure, trimmed and redacted; for DuckDB out of memory,
    which setting to raise."""
    # DuckDB appends advice about SET statements the user cannot run here
    cause = redact(" ".join(cause.split()).split(" Possible solutions:")[0])[:400]
    if config.is_duckdb and DUCKDB_OUT_OF_MEMORY_WORDS in cause:
        setting = config.run.duckdb_memory_limit
        now = (
            f"now auto: {memory_limit_for(setting, config.database)} at this warehouse's size, "
            f"up to {_last_auto_limit(config)} in a load's retries" if is_auto(setting)
            else f"now {setting}"
        )
        return (
            f"{DUCKDB_OUT_OF_MEMORY} ({cause}). Raise [quorum_sms] "
            f"duckdb_memory_limit ({now}; "
            "QUORUM_DUCKDB_MEMORY_LIMIT in the environment), say to twice that, and run again"
        )
    return cause


def _last_auto_limit(config: SyncConfig) -> str:
    """The ceiling of the last of a load's attempts under `auto`."""
    limit = memory_limit_for(config.run.duckdb_memory_limit, config.database)
    for _ in range(DUCKDB_LOAD_ATTEMPTS - 1):
        limit = raised_limit(limit)
    return limit


def run_sync(
    config: SyncConfig,
    *,
    observer: SourceObserver | None = None,
    policy: PersonalDataPolicy | None = None,
    run_id: str | None = None,
) -> SyncSummary:
    """Run one sync end to end and return its summary; the caller holds the database lock.

    Args:
        config: the validated settings.
        observer: filled by the source as it reads (progress, and counts of a failed run).
        policy: the personal-data policy, applied before anything is written.
        run_id: the run history's id, stored with every reject row.

    Raises:
        QuorumSmsError: a typed error (auth, API unavailable, bad record, ...); a failure of
            dlt's own as `SyncFailed`, redacted.
    """
    started = time.monotonic()
    summary = SyncSummary(database=config.database)
    pipeline = make_pipeline(config)
    try:
        _sync(pipeline, config, summary, observer or SourceObserver(), policy, run_id)
    except PipelineStepFailed as error:
        inner = unwrap(error)
        if isinstance(inner, QuorumSmsError | KeyboardInterrupt):
            raise inner from None
        raise SyncFailed(
            f"The sync failed in dlt's {error.step} step: {step_failure_text(config, error)}. "
            "Nothing from this run was loaded unless the load step had started, and then "
            "the next run finishes it first; the saved cursor only moves with the data."
        ) from None
    summary.duration_seconds = time.monotonic() - started
    return summary


def _cursor_time(pipeline: dlt.Pipeline) -> datetime | None:
    value = saved_cursor(pipeline)
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def start_lag(config: SyncConfig, pipeline: dlt.Pipeline) -> tuple[float, str | None]:
    """The lag window of this run, and a note when `--since` widened it into a backfill.

    dlt starts at the later of `initial_value` (where `--since` lands) and the saved cursor
    minus the lag. So an earlier `--since` is honoured by widening the lag to reach it (a
    backfill: merging on `id` makes the re-read harmless), and a later one, which would skip
    every record in between for good, is refused.

    Raises:
        ConfigError: `--since` is later than the saved cursor minus the lag.
    """
    previous = {} if config.full_refresh else resource_state(pipeline)
    lag = effective_lag(config.source.lag_seconds, previous)
    cursor = None if config.full_refresh else _cursor_time(pipeline)
    if cursor is None or not config.since_given:
        return lag, None
    since = datetime.fromisoformat(config.source.initial_value)
    earliest_start = cursor - timedelta(seconds=lag)
    if since > earliest_start:
        raise ConfigError(
            f"--since {since.isoformat()} is later than where this sync continues "
            f"({earliest_start.isoformat()}: the saved cursor {cursor.isoformat()} minus the "
            f"{lag:.0f} s lag window), so the records changed in between would never be read; "
            "nothing was changed. Leave --since out to continue from the saved cursor, give an "
            "earlier date to re-read from it, or, to deliberately start over from that date "
            "with nothing before it, add --full-refresh (it drops the raw tables first)."
        )
    # one second more, so rounding the lag never starts a microsecond after --since
    return max(lag, (cursor - since).total_seconds() + 1), (
        f"backfill: re-read from --since {since.isoformat()}, before the saved cursor "
        f"{cursor.isoformat()}"
    )


def check_start(config: SyncConfig) -> None:
    """Refuse a `--since` that would skip records, before anything is written.

    The caller holds the database lock. Reads the saved cursor (restoring dlt's state from
    the destination when the local folder is gone); writes nothing to the warehouse.

    Raises:
        ConfigError: see `start_lag`; or, with `--full-refresh`, a view that is not this
            project's reads the raw tables (see `refuse_blocked_refresh`).
    """
    if config.full_refresh:
        refuse_blocked_refresh(config)
        return
    if not config.since_given:
        return
    if config.is_duckdb and not config.database.exists():
        return  # a new warehouse: --since is simply where the first sync starts
    pipeline = make_pipeline(config)
    pipeline.sync_destination()
    start_lag(config, pipeline)


def refuse_blocked_refresh(config: SyncConfig) -> None:
    """Refuse a `--full-refresh` that a user's view on the raw tables would block (or lose).

    Reads only. The destinations without the SQL models have no views of ours to drop, and
    are left to dlt.

    Raises:
        ConfigError: names the views and what to do (warehouse/raw_refresh.py).
    """
    if builds_models(config.run.destination):
        refuse_foreign_views(warehouse_target(config.run.destination, config.database),
                             config.sql_dir)


def last_load_id(pipeline: dlt.Pipeline) -> str | None:
    """The newest load dlt finished in the destination (`_dlt_loads`), or None."""
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return None
        loads = client.make_qualified_table_name(DLT_LOADS_TABLE)
        try:
            rows = client.execute_sql(f"select max(load_id) from {loads}")
        except DatabaseUndefinedRelation:
            return None
    return str(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else None


#: One row: the newest load whose superseded-events clean-up finished (`cleaned_through`).
#: In the ops schema, where the destination has one (DuckDB, PostgreSQL).
CLEANUP_MARKER_TABLE = f"{BOOKKEEPING_SCHEMA}.event_cleanup"


@dataclass(frozen=True)
class CleanupScope:
    """Which loads' records the superseded-events clean-up joins to the events.

    Attributes:
        load_id: the bound; None covers every record (a check of the whole table).
        inclusive: the records of `load_id` itself too (`>=`), or only later ones (`>`).
        remember: write the newest load it covered as the marker afterwards.
    """

    load_id: str | None
    inclusive: bool = True
    remember: bool = False

    def after(self, cleaned: str | None) -> CleanupScope:
        """The scope of the next clean-up in this run, once this one covered `cleaned`."""
        if cleaned is None:
            return self
        return CleanupScope(cleaned, inclusive=False, remember=self.remember)


def cleanup_scope(
    newest_before: str | None, marker: str | None, *, remember: bool
) -> CleanupScope:
    """Where this run's first superseded-events clean-up starts.

    Args:
        newest_before: the newest load finished before this run (`last_load_id`).
        marker: the newest load whose clean-up finished (`cleaned_through`), or None.
        remember: the destination keeps the marker.
    """
    if marker is None:
        # No marker (another destination, or a warehouse cleaned by an older version): from
        # the newest load before this run, itself included, which covers a previous run
        # killed between its load and its clean-up.
        return CleanupScope(newest_before, inclusive=True, remember=remember)
    # Every load up to the marker is clean, every later one may not be (a clean-up only moves
    # the marker over the loads it covered). At or after the newest load before this run,
    # the marker leaves out the loads already cleaned: only this run's are joined. Before it,
    # the last clean-up did not finish, and starting after the marker covers more than
    # starting at the newest load: every load left unclean, not just the last one (two runs
    # killed in a row leave two).
    return CleanupScope(marker, inclusive=False, remember=remember)


def cleaned_through(pipeline: dlt.Pipeline) -> str | None:
    """The newest load whose superseded-events clean-up finished, or None (no marker yet)."""
    with pipeline.sql_client() as client:
        try:
            rows = client.execute_sql(f"select max(load_id) from {CLEANUP_MARKER_TABLE}")
        except DatabaseUndefinedRelation:
            return None
    return str(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else None


def drop_superseded_events(pipeline: dlt.Pipeline, scope: CleanupScope | None = None) -> int:
    """Delete event rows of a record version that was not kept; return how many.

    dlt merges events on (record, event type), so an event type the kept version of a record
    does not have survives from an older version: one served earlier in the same load (twice
    on one page, or changed while the run paged), or loaded by an earlier run (a `delivered`
    beside tonight's `failed`). Every event row carries its record's `updated`: a row whose
    `updated` is not the kept record's belongs to a replaced version, and goes.

    Only records loaded since the last finished clean-up can have such rows, so the delete
    joins the records of the loads in `scope` to the events (a hash join on the night's ids)
    and its cost follows the night, not the history (see `cleanup_scope`). With
    `scope.remember`, the newest load it covered is written as the marker in the same
    transaction, so a clean-up that does not finish leaves the marker where it was. A None
    scope checks every row.
    """
    scope = scope or CleanupScope(None)
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return 0
        events = client.make_qualified_table_name(settings.EVENTS_TABLE)
        records = client.make_qualified_table_name(settings.SENDSMS_TABLE)
        if scope.load_id is None:
            query = (
                f"delete from {events} where not exists (select 1 from {records} as r "
                f"where r.id = {events}.sendsms_id and r.updated = {events}.updated)"
            )
            args: tuple[str, ...] = ()
        else:
            compare = ">=" if scope.inclusive else ">"
            query = (
                f"delete from {events} using {records} as r where r._dlt_load_id {compare} %s "
                f"and r.id = {events}.sendsms_id and r.updated is distinct from {events}.updated"
            )
            args = (scope.load_id,)
        try:
            with client.begin_transaction():
                # under the run lock no load lands meanwhile: this is the newest the delete sees
                covered = _newest_load(client) if scope.remember else None
                rows = client.execute_sql(query, *args)
                if covered is not None:
                    _remember_cleanup(client, covered)
        except DatabaseUndefinedRelation:
            return 0  # no event has been loaded yet
    return int(rows[0][0]) if rows and rows[0] else 0


def _newest_load(client: Any) -> str | None:
    loads = client.make_qualified_table_name(DLT_LOADS_TABLE)
    rows = client.execute_sql(f"select max(load_id) from {loads}")
    return str(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else None


def _remember_cleanup(client: Any, load_id: str) -> None:
    """Write the marker: the clean-up of every load up to `load_id` finished."""
    client.execute_sql(f"create schema if not exists {BOOKKEEPING_SCHEMA}")
    client.execute_sql(
        f"create table if not exists {CLEANUP_MARKER_TABLE} "
        "(load_id varchar, cleaned_at timestamp with time zone)"
    )
    client.execute_sql(f"delete from {CLEANUP_MARKER_TABLE}")
    client.execute_sql(
        f"insert into {CLEANUP_MARKER_TABLE} values (%s, %s)", load_id, datetime.now(UTC)
    )


def _window_start(config: SyncConfig, pipeline: dlt.Pipeline, lag: float) -> datetime | None:
    """Where dlt's incremental will start this run: the saved cursor minus the lag, or the
    configured first date (`--since`); mirrors `dlt.sources.incremental`."""
    cursor = None if config.full_refresh else _cursor_time(pipeline)
    initial = datetime.fromisoformat(str(config.source.initial_value))
    if initial.tzinfo is None:
        initial = initial.replace(tzinfo=UTC)
    if cursor is None:
        return initial
    return max(initial, cursor - timedelta(seconds=lag))


def _loaded_rows(
    pipeline: dlt.Pipeline, summary: SyncSummary, normalized: NormalizeInfo | None = None
) -> int:
    """`sendsms` rows of the pipeline's last load (from `normalized` when the steps ran one
    by one, each with its own trace); adds its event rows to the summary."""
    trace = pipeline.last_trace
    normalize_info = normalized or (trace.last_normalize_info if trace is not None else None)
    row_counts = normalize_info.row_counts if normalize_info is not None else {}
    summary.events_loaded += int(row_counts.get(settings.EVENTS_TABLE, 0))
    return int(row_counts.get(settings.SENDSMS_TABLE, 0))


def _extract_window(
    pipeline: dlt.Pipeline,
    source: Any,
    file_format: TLoaderFileFormat,
    *,
    refresh: bool,
) -> None:
    """Read one window into a load package (`pipeline.run()`'s first step).

    The window's steps run one by one, not as `pipeline.run()`, for three reasons. The
    warehouse is opened only for the load (`loading_pipeline`, one connection), so during the
    read, which takes minutes in a large window, `quorum-sms status` and the other readers of
    the warehouse still get in. With `refresh` (`--full-refresh`, first window) our views on
    the raw tables are dropped between normalizing and loading: dlt drops the raw tables in
    the load step, which PostgreSQL refuses while a view reads them, and dropping the views
    only once the read has succeeded leaves them in place when it fails (the model build
    after a refresh is then a full one: a view is missing). And the load of one window runs
    beside the read of the next (`_sync`).
    """
    pipeline.extract(
        source, loader_file_format=file_format, refresh="drop_sources" if refresh else None
    )


def _normalize_window(
    pipeline: dlt.Pipeline, config: SyncConfig, *, refresh: bool
) -> NormalizeInfo:
    """Normalize the extracted window; with `refresh`, drop our views on the raw tables."""
    normalized = pipeline.normalize()
    if refresh and builds_models(config.run.destination):
        drop_views_on_raw(warehouse_target(config.run.destination, config.database),
                          config.sql_dir)
    return normalized


def _reject_activity(observer: SourceObserver) -> tuple[int, int, int]:
    """What the run has written to the rejects so far: its load changes the known rejects."""
    stats = observer.rejects
    return stats.rejected, stats.resolved, stats.gone


def forget_config_traces() -> None:
    """Drop dlt's log of the settings it resolved in this thread.

    dlt appends every value it resolves (for each pipeline, destination and step the windows
    make) to a per-thread list that only the end of a runtime trace clears. A window's load
    beside the next read runs without a trace, so that list only grew: ~1 MB a window, held to
    the end of the run (~30 MB of a 10M first sync's 40 windows). Nothing of ours reads it; a
    load with a trace still records what it resolved itself.
    """
    get_resolved_traces().clear()


def _load_and_clean_up(
    config: SyncConfig,
    scope: CleanupScope,
    notes: list[str],
    *,
    fills_empty: bool = False,
    window_records: int = 0,
    trace: bool = True,
) -> CleanupScope:
    """Load the normalized window and clean up after it; the next window's clean-up scope.

    `notes`: the run summary's notes, told when the load needed a larger memory ceiling.
    `fills_empty`: the warehouse held no records when the run began, and `window_records`
    the window's records: they size DuckDB's ceiling (`memory.load_limit`).
    `trace`: see `loading_pipeline`.
    """
    if not config.is_duckdb:
        with loading_pipeline(config, trace=trace) as loading:
            loading.load()
            return _after_load(loading, config, scope)
    limit = load_limit(config.run.duckdb_memory_limit, config.database,
                       fills_empty=fills_empty, window_records=window_records)
    # a night's load into a warehouse with history: sized by what its deletes reach, counted
    # on the load's own connection opened at the floor
    by_night = is_auto(config.run.duckdb_memory_limit) and not fills_empty
    for attempt in range(1, DUCKDB_LOAD_ATTEMPTS + 1):
        first = attempt == 1 and by_night
        with loading_pipeline(
            config, trace=trace, memory_limit=SMALL_LIMIT if first else limit
        ) as loading:
            if first:
                limit = _night_load_limit(loading, config)
            logger.debug("loading a window at DuckDB's memory ceiling %s", limit)
            try:
                # one job at a time: the jobs share one DuckDB buffer pool, and the merges'
                # deletes pin the blocks they scan (the events one 160-192 MB at 10M
                # records), so two at once could run out of the ceiling
                loading.load(workers=1)
            except PipelineStepFailed as error:
                job = unwrap_load_job(error)
                if isinstance(job, LoadClientJobRetry) and attempt < DUCKDB_LOAD_ATTEMPTS:
                    if is_auto(config.run.duckdb_memory_limit) and _out_of_memory(job):
                        raised = raised_limit(limit)
                        note = (
                            f"DuckDB ran out of its memory ceiling ({limit}, "
                            f"duckdb_memory_limit = auto) in the load: tried again at {raised}"
                        )
                        logger.warning(note)
                        notes.append(note)  # list.append: safe from the load's thread
                        limit = raised
                    continue  # the failed attempt's transaction goes with its connection
                raise
            return _after_load(loading, config, scope)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _night_load_limit(loading: dlt.Pipeline, config: SyncConfig) -> str:
    """Count the vectors the pending packages' records reach and set the connection's ceiling
    (`memory.night_limit`); the ceiling set. The file's share when they cannot be counted."""
    jobs = [
        job
        for load_id in loading.list_normalized_load_packages()
        for job in loading.get_load_package_info(load_id).jobs.get("new_jobs", [])
        if job.job_file_info.table_name == settings.SENDSMS_TABLE
    ]
    setting = config.run.duckdb_memory_limit
    files = [job.file_path for job in jobs if job.file_path.endswith(".parquet")]
    if len(files) < len(jobs):
        # records in a file DuckDB cannot read the ids from: the worst night's ceiling
        return _set_memory_limit(loading, memory_limit_for(setting, config.database))
    vectors = 0
    if files:
        try:
            with loading.sql_client() as client:
                rows = client.execute_sql(vectors_holding_sql(parquet_ids(files), "id"))
        except DatabaseException as error:
            # no raw table yet (nothing to delete from), or a count that failed: the worst
            # night's ceiling, as before the count existed
            logger.debug("the window's vectors were not counted: %s", redact(str(error)))
            return _set_memory_limit(loading, memory_limit_for(setting, config.database))
        vectors = int(rows[0][0] or 0) if rows else 0
    # no records (a window of unchanged re-reads, the rejects alone): nothing to delete
    logger.debug("the window's records lie in %d vectors of the raw tables", vectors)
    return _set_memory_limit(loading, night_limit(setting, config.database, vectors))


def _set_memory_limit(loading: dlt.Pipeline, limit: str) -> str:
    with loading.sql_client() as client:
        client.execute_sql(f"set memory_limit = '{limit}'")
    return limit


def _after_load(pipeline: dlt.Pipeline, config: SyncConfig, scope: CleanupScope) -> CleanupScope:
    """Index (PostgreSQL) and clean up after a window's load; the next window's scope."""
    # after the load that created (or, --full-refresh, recreated) the tables
    ensure_postgres_indexes(config)
    try:
        drop_superseded_events(pipeline, scope)
    except DatabaseException as error:
        raise SyncFailed(
            "The clean-up of replaced event rows after a load failed: "
            f"{database_failure_text(config, str(error))}. The loaded records and their "
            "cursor are kept; the next run does the clean-up again after its load."
        ) from None
    # this window's load is clean: the next window's clean-up starts after it
    return scope.after(last_load_id(pipeline))


def _sync(
    pipeline: dlt.Pipeline,
    config: SyncConfig,
    summary: SyncSummary,
    observer: SourceObserver,
    policy: PersonalDataPolicy | None,
    run_id: str | None,
) -> None:
    pipeline.sync_destination()
    if config.full_refresh:
        # before the pending load and the read: a refused refresh changes nothing
        refuse_blocked_refresh(config)
    remember = builds_models(config.run.destination)
    scope = cleanup_scope(
        last_load_id(pipeline), cleaned_through(pipeline) if remember else None,
        remember=remember,
    )
    if pipeline.has_pending_data:
        # A load that failed (or was killed) last time goes first; then tonight's data.
        if pipeline.list_extracted_load_packages():
            pipeline.normalize()
        pipeline.load()
        summary.pending_load_finished = True
    summary.cursor_before = None if config.full_refresh else saved_cursor(pipeline)
    previous = {} if config.full_refresh else resource_state(pipeline)
    source_settings = copy.copy(config.source)
    source_settings.lag_seconds, backfill = start_lag(config, pipeline)
    full_scan_lag = effective_lag(config.source.lag_seconds, previous)
    if backfill:
        summary.notes.append(backfill)
    elif source_settings.lag_seconds > config.source.lag_seconds:
        summary.notes.append(f"lag widened to {full_scan_lag:.0f} s after the last run's full scan")
    start = _window_start(config, pipeline, source_settings.lag_seconds)
    ensure_postgres_indexes(config)  # a warehouse synced before they existed
    # After the pending load above: the versions it wrote are stored ones. A backfill
    # (--since) reads no versions: it re-reads to rewrite.
    stored_from = start if summary.cursor_before and not config.since_given else None
    rows_before, versions = (
        (None, None) if config.full_refresh else records_before(config, stored_from)
    )
    # nothing in the warehouse to delete from: a load's DuckDB ceiling follows its window
    fills_empty = not rows_before
    windows = load_windows(
        copy.copy(source_settings), start, max_records=config.run.records_per_load
    )
    if len(windows) > 1:
        summary.notes.append(
            f"loaded in up to {len(windows)} windows of about "
            f"{config.run.records_per_load:,} records (records_per_load)"
        )
    # None lets dlt choose (its run() defaults to None, though typed without it)
    file_format = cast(TLoaderFileFormat, LOADER_FILE_FORMATS.get(config.run.destination))
    loaded = 0
    requests = retries = 0
    read_from: datetime | None = None
    # A window's load runs beside the next window's read (mostly DuckDB or the server, outside
    # the GIL, against mostly Python); the last window's load runs here, where a Ctrl-C stops
    # it as before.
    loads: BackgroundStep[CleanupScope] = BackgroundStep("quorum-window-load")
    known: list[KnownReject] = []
    activity = _reject_activity(observer)
    try:
        for index, window_end in enumerate(windows):
            if index == 0:
                known = [] if config.full_refresh else known_rejects(pipeline)
            elif _reject_activity(observer) != activity:
                # the last window set records aside (or resolved some): its load writes them,
                # and this window must know them. Otherwise the known rejects are unchanged,
                # as only this run's loads write them.
                scope = loads.wait() or scope
                known = known_rejects(pipeline)
            activity = _reject_activity(observer)
            source = quorum_source(
                source_settings,
                observer=observer,
                policy=policy,
                known_rejects=known,
                run_id=run_id,
                window_end=window_end,
                # later windows start at the cursor this run moved: past the lag window
                stored_versions=versions if index == 0 else None,
            )
            if index:
                # the open rejects are retried once, with the first window
                source = source.with_resources(settings.SENDSMS_TABLE)
            refresh = config.full_refresh and index == 0
            _extract_window(pipeline, source, file_format, refresh=refresh)
            # dlt's load step takes every normalized package: the last window's load first
            scope = loads.wait() or scope
            delete_loaded_packages(pipeline)
            normalized = _normalize_window(pipeline, config, refresh=refresh)
            window_records = _loaded_rows(pipeline, summary, normalized)
            loaded += window_records
            read_from = read_from or observer.cursor_start
            if observer.client is not None:
                requests += observer.client.stats.requests
                retries += observer.client.stats.retries
            last = observer.read_to_end or index == len(windows) - 1
            if last or not config.run.load_beside_read:
                scope = _load_and_clean_up(config, scope, summary.notes, fills_empty=fills_empty,
                                           window_records=window_records)
                delete_loaded_packages(pipeline)
                if last:
                    break
            else:
                loads.start(functools.partial(
                    _load_and_clean_up, config, scope, summary.notes,
                    fills_empty=fills_empty, window_records=window_records, trace=False,
                ))
            release_free_memory()  # the window's pages, before the next window
            # Later windows continue from the cursor the last one saved, without a lag: the
            # lag is for records committed late with an older `updated`, which the next run's
            # lag reads; a window's bound is exact, so re-reading an hour per window (5 % of a
            # 10M first sync) would buy nothing. A --since backfill concerns the first window.
            source_settings = copy.copy(config.source)
            source_settings.lag_seconds = 0
    finally:
        # a read that failed (or a Ctrl-C) waits for the window being loaded: it commits
        # with its cursor, as it would have before the read began
        failed_load = loads.close()
        if failed_load is not None:
            logger.warning("the load of a window failed while the next was read: %s",
                           redact(str(failed_load)))
    summary.requests, summary.retries = requests, retries
    summary.read_from = read_from.isoformat() if read_from else None
    summary.cursor_after = saved_cursor(pipeline)
    summary.pages = observer.pages
    summary.records_fetched = observer.records
    summary.records_unchanged = observer.unchanged
    summary.records_rejected = observer.rejects.rejected
    summary.rejects_new = observer.rejects.new
    summary.rejects_resolved = observer.rejects.resolved
    summary.rejects_gone = observer.rejects.gone
    summary.reject_samples = list(observer.rejects.samples)
    for stats in observer.pagers:
        if stats.fallback_reason:
            summary.paging_mode = stats.mode
            summary.fallback_reason = redact(stats.fallback_reason)
        summary.notes += stats.notes
    rows_after = count_records(config)
    if rows_after is not None:
        summary.records_new = rows_after - (rows_before or 0)
        summary.records_updated = max(0, min(loaded, summary.records_fetched) - summary.records_new)

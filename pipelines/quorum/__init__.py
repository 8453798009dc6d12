"""A dlt source for Quorum's SendSMS API (quorum.us), shaped like a dlt verified source.

`quorum_source` yields two resources: `sendsms`, incremental on `updated`, and
`sendsms_retry`, which fetches the records earlier runs rejected again by id (the cursor may
have moved past them). Together they load three tables with merge semantics:

* `sendsms`: one row per SendSMS record (primary key `id`);
* `sendsms_events`: one row per event that happened to a record (`queued`, `sent`, ...),
  replaced as a whole whenever the record is loaded again (merge key `sendsms_id`);
* `sendsms_rejects`: one row per record that could not be loaded (see `quorum.rejects`),
  deleted once it loads; committed in the same load as the data and the cursor.

Example:
    >>> pipeline = dlt.pipeline("quorum_sms", destination="duckdb", dataset_name="quorum_raw")
    >>> pipeline.run(quorum_source())  # settings from .dlt/config.toml and secrets.toml
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dlt
import pendulum
import pyarrow as pa
from dlt.sources import DltResource

from pipelines.errors import BadRecordError, ConfigError
from pipelines.quorum.client import (
    QuorumClient,
    require_secure_transport,
    validate_base_url,
)
from pipelines.quorum.normalize import PersonalDataPolicy, TableBatch
from pipelines.quorum.paging import Pager, PagingStats
from pipelines.quorum.rejects import (
    DEFAULT_MAX_REJECT_FRACTION,
    REJECTS_TABLE,
    KnownReject,
    RejectLog,
    RejectStats,
    split_page,
    too_many_rejects_error,
)
from pipelines.quorum.settings import (
    CURSOR_FIELD,
    EVENTS_TABLE,
    MAX_PAGE_SIZE,
    ROWS_PER_EXTRACT_ITEM,
    SENDSMS_TABLE,
    SOURCE_SECTION,
    QuorumSourceSettings,
    check_values,
)
from pipelines.quorum.slicing import iter_pages_concurrently, plan_load_windows
from pipelines.quorum.timestamps import parse_api_time, parse_since
from pipelines.quorum.versions import StoredVersions
from pipelines.quorum.workers import DecodedPage, DecodeWorkers
from pipelines.redaction import register_secret

#: Resource-state key: seconds the last run's full scan took (0 when it paged by key).
FULL_SCAN_STATE_KEY = "last_full_scan_seconds"


def effective_lag(configured_lag: float, resource_state: Mapping[str, Any] | None) -> float:
    """The lag window for this run: the configured one, widened after a full-scan run.

    A record changed while a full scan was running, after the scan had passed it, was missed
    by that run; its new `updated` is no older than the newest value read minus the scan's
    duration. Twice that duration (for clock skew and commit delays) covers it.
    """
    scan_seconds = float((resource_state or {}).get(FULL_SCAN_STATE_KEY) or 0.0)
    return max(configured_lag, 2 * scan_seconds)


@dataclass
class SourceObserver:
    """Collects what the source did, for progress lines and the run summary."""

    client: QuorumClient | None = None
    pagers: list[PagingStats] = field(default_factory=list)
    cursor_start: datetime | None = None
    on_page: Callable[[SourceObserver], None] | None = None
    #: records set aside this run: counts and the first few (id, reason)
    rejects: RejectStats = field(default_factory=RejectStats)
    #: pages decoded and normalized in worker processes (`decode_workers`)
    worker_pages: int = 0
    #: the last read went to the newest record, past any load window's end (a window's read
    #: fell back to a full scan, or it had no end): no later window is left to load
    read_to_end: bool = False
    #: records read again exactly as the warehouse holds them (`stored_versions`): not loaded
    unchanged: int = 0

    @property
    def pages(self) -> int:
        """Pages read by all pagers."""
        return sum(p.pages for p in self.pagers)

    @property
    def records(self) -> int:
        """Records yielded by all pagers (a record changed mid-run counts twice)."""
        return sum(p.records for p in self.pagers)

    def page_done(self, _stats: PagingStats) -> None:
        """Forward a page-finished notification to the progress display."""
        if self.on_page is not None:
            self.on_page(self)


SENDSMS_HINTS: dict[str, Any] = {
    # when one run reads a record twice (it changed mid-run), keep the newest version
    "updated": {"dedup_sort": "desc"},
}


def _sendsms_hints() -> Any:
    return dlt.mark.make_hints(
        table_name=SENDSMS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="id",
        columns=SENDSMS_HINTS,
    )


#: The rows of the events table the merge replaces: the primary key's rows, as dlt's own
#: delete picks them, behind a semi join on `sendsms_id` alone. dlt's `exists` on both key
#: columns makes DuckDB hash a number and a string for every one of the table's rows (0.16-0.2 s
#: at 27M rows, 10M records); the integer semi join narrows it to the night's records first
#: (0.05 s). The rows deleted are the same.
EVENTS_MERGE_SCOPE = (
    "{table}.sendsms_id in (select sendsms_id from {staging_table}) and exists (select 1 from "
    "{staging_table} as s where s.sendsms_id = {table}.sendsms_id "
    "and s.event_type = {table}.event_type)"
)


def _events_hints() -> Any:
    # No merge key beside the primary key: dlt would delete by `pk OR merge key`, which
    # DuckDB and PostgreSQL can only answer by grouping the whole events table (out of
    # memory at 10M records). An event type a newer version of a record no longer has is
    # deleted after the load instead (`pipelines.sync.drop_superseded_events`). The explicit
    # False clears the merge key that warehouses written by earlier versions have stored.
    return dlt.mark.make_hints(
        table_name=EVENTS_TABLE,
        write_disposition={
            "disposition": "merge",
            "strategy": "delete-insert",
            "destination_scope": EVENTS_MERGE_SCOPE,
        },
        primary_key=["sendsms_id", "event_type"],
        columns={"updated": {"dedup_sort": "desc"}, "sendsms_id": {"merge_key": False}},
    )


def _rejects_hints() -> Any:
    return dlt.mark.make_hints(
        table_name=REJECTS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="reject_key",
        # a row carrying `resolved_at` deletes its reject instead of being inserted
        columns={"resolved_at": {"hard_delete": True}},
    )


def check_settings(settings: QuorumSourceSettings) -> QuorumSourceSettings:
    """Validate resolved source settings before any request; normalise URL and start date.

    Raises:
        ConfigError: no credentials, a malformed base URL, plain http to a host that is not
            loopback (unless `allow_insecure_http`), a number out of range or an
            `initial_value` that is not a date (one paragraph that says what to fix).
    """
    if not settings.username or not settings.api_key:
        raise ConfigError(
            "No Quorum credentials are configured. Set QUORUM_USERNAME and QUORUM_API_KEY, or "
            "username and api_key under [sources.quorum] in .dlt/secrets.toml (copy "
            ".dlt/secrets.toml.example)."
        )
    register_secret(settings.api_key)
    check_values(settings, ".".join(SOURCE_SECTION))
    settings.base_url = validate_base_url(settings.base_url)
    require_secure_transport(settings.base_url, allow_insecure_http=settings.allow_insecure_http)
    settings.initial_value = parse_since(settings.initial_value)
    return settings


def make_client(settings: QuorumSourceSettings) -> QuorumClient:
    """The HTTP client for checked settings (see `check_settings`)."""
    return QuorumClient(
        settings.base_url,
        settings.username or "",
        settings.api_key or "",
        timeout=settings.timeout,
        max_attempts=settings.max_attempts,
        max_total_wait=settings.max_total_wait,
        backoff_initial=settings.backoff_initial,
        requests_per_second=settings.rate_ceiling,
        max_connections=max(settings.concurrency, 1) + 1,
    )


def load_windows(
    settings: QuorumSourceSettings, start: datetime | None, *, max_records: int
) -> list[datetime | None]:
    """Upper bounds of the load windows a sync from `start` reads one dlt load at a time.

    Requests of one record each probe the range, two and then one per window bound
    (`slicing.plan_load_windows`: windows of equal counts); the last bound is None (open
    ended). Pass each to `quorum_source(window_end=...)` in turn, running the pipeline once
    per window, and stop early when the observer says `read_to_end`.

    Raises:
        ConfigError: a setting is missing or invalid (see `check_settings`).
        QuorumSmsError: the API refused the probes (bad credentials, unavailable).
    """
    settings = check_settings(settings)
    with make_client(settings) as client:
        return plan_load_windows(client, start, max_records=max_records)


@dlt.source(name="quorum", max_table_nesting=0, spec=QuorumSourceSettings)
def quorum_source(
    settings: QuorumSourceSettings = dlt.config.value,
    observer: SourceObserver | None = None,
    policy: PersonalDataPolicy | None = None,
    known_rejects: Sequence[KnownReject] = (),
    run_id: str | None = None,
    window_end: datetime | None = None,
    stored_versions: StoredVersions | None = None,
) -> list[DltResource]:
    """The Quorum SendSMS source.

    Args:
        settings: every setting (`QuorumSourceSettings`); dlt resolves it from
            `SOURCES__QUORUM__<KEY>` environment variables, `.dlt/secrets.toml` and
            `.dlt/config.toml` under `[sources.quorum]` when it is not given.
        observer: collects statistics for progress and the summary.
        policy: the personal-data policy, applied to every column before it is written,
            and to the records stored as rejects.
        known_rejects: the rows of `quorum_raw.sendsms_rejects` (`rejects.KNOWN_REJECTS_QUERY`):
            open ones are fetched again by id, and their `first_seen_at` is kept.
        run_id: stored with every reject row; dlt's load id when None.
        window_end: read only records with `updated` before it (one load window of a large
            sync, see `load_windows`); None reads to the newest record.
        stored_versions: the `(id, updated)` the warehouse holds in the lag window: a record
            read again with the stored `updated` is the stored row, and is not loaded again
            (`quorum.versions`). None loads every record read.

    Returns:
        The `sendsms` and `sendsms_retry` resources.

    Raises:
        ConfigError: a setting is missing or invalid (see `check_settings`).
    """
    settings = check_settings(settings)
    client = make_client(settings)
    watcher = observer if observer is not None else SourceObserver()
    watcher.client = client
    reject_log = RejectLog(known_rejects, transform=policy, run_id=run_id, stats=watcher.rejects)
    close = _SharedClose(client, users=2)
    return [
        sendsms_resource(
            client,
            initial_value=pendulum.parse(settings.initial_value),
            lag_seconds=settings.lag_seconds,
            page_size=min(settings.page_size, MAX_PAGE_SIZE),
            concurrency=settings.concurrency,
            force_full_scan=settings.force_full_scan,
            decode_workers=settings.decode_workers,
            observer=watcher,
            policy=policy,
            reject_log=reject_log,
            max_reject_fraction=settings.max_reject_fraction,
            close=close,
            window_end=window_end,
            stored_versions=stored_versions,
        ),
        retry_resource(client, reject_log=reject_log, policy=policy, close=close),
    ]


class _SharedClose:
    """Closes the client when the last of the resources sharing it has finished."""

    def __init__(self, client: QuorumClient, users: int) -> None:
        self._client = client
        self._left = users

    def __call__(self) -> None:
        self._left -= 1  # resources are extracted in one thread, one step at a time
        if self._left <= 0:
            self._client.close()


def _stamp_run_id(reject_log: RejectLog) -> None:
    """Without a run id from the caller, reject rows carry dlt's load id."""
    if reject_log.run_id is None:
        reject_log.run_id = str(dlt.current.load_package_state()["load_id"])


def sendsms_resource(
    client: QuorumClient,
    *,
    initial_value: Any,
    lag_seconds: float,
    page_size: int,
    concurrency: int,
    force_full_scan: bool,
    observer: SourceObserver,
    policy: PersonalDataPolicy | None,
    reject_log: RejectLog | None = None,
    max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION,
    close: Callable[[], None] | None = None,
    decode_workers: int = 0,
    window_end: datetime | None = None,
    stored_versions: StoredVersions | None = None,
) -> DltResource:
    """Build the `sendsms` resource around a ready client (see `quorum_source`).

    With `decode_workers` > 0 a large read decodes and normalizes its pages in that many
    worker processes (`quorum.workers`), started on first use and stopped when the resource
    ends, however it ends.
    """
    log = reject_log or RejectLog((), transform=policy, run_id=None, stats=observer.rejects)

    @dlt.resource(
        name=SENDSMS_TABLE,
        table_name=SENDSMS_TABLE,
        primary_key="id",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    )
    def sendsms(
        updated: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008 (dlt idiom)
            CURSOR_FIELD,
            initial_value=initial_value,
            lag=lag_seconds,
            # merge on `id` makes re-read records harmless; no boundary hashes needed
            primary_key=(),
            # reject rows whose `updated` does not parse carry NULL: kept, cursor untouched
            on_cursor_value_missing="include",
        ),
    ) -> Iterator[Any]:
        """Every SendSMS record changed since the saved cursor (minus the lag window)."""
        start = updated.start_value
        observer.cursor_start = start
        started = time.monotonic()
        _stamp_run_id(log)
        rejected: list[str] = []
        batch = TableBatch(ROWS_PER_EXTRACT_ITEM)
        workers = DecodeWorkers(decode_workers, client, policy) if decode_workers > 0 else None
        try:
            for page in iter_pages_concurrently(
                client,
                start,
                page_size=page_size,
                concurrency=concurrency,
                force_full_scan=force_full_scan,
                on_pager=observer.pagers.append,
                on_page=observer.page_done,
                slice_decoder=workers.decode if workers is not None else None,
                end=window_end,
            ):
                split = page.split() if isinstance(page, DecodedPage) else split_page(page, policy)
                if stored_versions is not None:
                    split, unchanged = stored_versions.drop_unchanged(split)
                    observer.unchanged += unchanged
                for tables in batch.add(split.sendsms, split.events):
                    yield from _data_items(*tables)
                for record, reason in split.bad:
                    if log.is_retried(record) or _before(record, start):
                        continue  # the retry owns it / out of the window, as dlt would drop it
                    rejected.append(log.reject(record, reason))
            yield from _data_items(*batch.flush())
            # Decided before dlt loads anything: raising here fails the extract step, so the
            # warehouse and the cursor stay as they were.
            if log.stats.new > max_reject_fraction * observer.records:
                raise too_many_rejects_error(
                    log.stats.new, observer.records, max_reject_fraction, log.new_samples
                )
            table = log.table(rejected)
            if table is not None:
                yield dlt.mark.with_hints(table, _rejects_hints(), create_table_variant=True)
            # A full scan cannot see a record that changes after the scan passed its id; its
            # new `updated` is at least (end of scan - scan duration). Remembering the duration
            # lets the next run widen its lag window to cover it (see `effective_lag`).
            full_scan = any(stats.mode == "full-scan" for stats in observer.pagers)
            observer.read_to_end = window_end is None or full_scan
            dlt.current.resource_state()[FULL_SCAN_STATE_KEY] = (
                round(time.monotonic() - started, 3) if full_scan else 0.0
            )
        finally:
            if workers is not None:
                workers.close()
                observer.worker_pages = workers.pages
            (close or client.close)()

    return sendsms


def _data_items(sendsms: pa.Table | None, events: pa.Table | None) -> Iterator[Any]:
    # each table carries its own hints, so neither inherits the other's columns
    if sendsms is not None and sendsms.num_rows:
        yield dlt.mark.with_hints(sendsms, _sendsms_hints(), create_table_variant=True)
    if events is not None and events.num_rows:
        yield dlt.mark.with_hints(events, _events_hints(), create_table_variant=True)


def _before(record: Any, start: Any) -> bool:
    """Whether a record's `updated` parses and is older than the run's window (full scans)."""
    if start is None or not isinstance(record, dict):
        return False
    try:
        return bool(parse_api_time(record.get(CURSOR_FIELD)) < start)
    except BadRecordError:
        return False


def retry_resource(
    client: QuorumClient,
    *,
    reject_log: RejectLog,
    policy: PersonalDataPolicy | None,
    close: Callable[[], None] | None = None,
) -> DltResource:
    """The `sendsms_retry` resource: every open reject fetched again by id.

    Not incremental on purpose: a rejected record's `updated` may be older than the cursor,
    which moved past it; this retry, not the cursor, brings it back. A record that now loads
    is merged into `sendsms` and its reject deleted; one the API no longer has (404) is
    marked `gone`; one still bad keeps its reject with a new `last_seen_at`.
    """

    @dlt.resource(name="sendsms_retry", table_name=REJECTS_TABLE)
    def sendsms_retry() -> Iterator[Any]:
        try:
            yield from _retry(client, reject_log, policy)
        finally:
            (close or client.close)()

    return sendsms_retry


def _retry(
    client: QuorumClient, reject_log: RejectLog, policy: PersonalDataPolicy | None
) -> Iterator[Any]:
    ids = reject_log.retry_ids()
    if ids:
        _stamp_run_id(reject_log)
        touched: list[str] = []
        for record_id in ids:
            record = client.get_sendsms(record_id)
            if record is None:
                reject_log.gone(record_id)
                touched.append(f"id:{record_id}")
                continue
            split = split_page([record], policy)
            if split.bad:
                touched.append(reject_log.reject(record, split.bad[0][1]))
                continue
            yield from _data_items(split.sendsms, split.events)
            reject_log.resolve(record_id)
            touched.append(f"id:{record_id}")
        table = reject_log.table(touched)
        if table is not None:
            yield dlt.mark.with_hints(table, _rejects_hints(), create_table_variant=True)


__all__ = [
    "FULL_SCAN_STATE_KEY",
    "Pager",
    "QuorumSourceSettings",
    "SourceObserver",
    "check_settings",
    "effective_lag",
    "load_windows",
    "make_client",
    "quorum_source",
    "retry_resource",
    "sendsms_resource",
]

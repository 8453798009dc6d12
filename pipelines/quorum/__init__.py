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

from pipelines.errors import BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.quorum.normalize import Transform
from pipelines.quorum.paging import Pager, PagingStats, parse_api_time
from pipelines.quorum.rejects import (
    DEFAULT_MAX_REJECT_FRACTION,
    REJECTS_TABLE,
    KnownReject,
    RejectLog,
    RejectStats,
    split_page,
    too_many_rejects_error,
)
from pipelines.quorum.slicing import iter_pages_concurrently

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
        table_name=settings.SENDSMS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="id",
        columns=SENDSMS_HINTS,
    )


def _events_hints() -> Any:
    return dlt.mark.make_hints(
        table_name=settings.EVENTS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=["sendsms_id", "event_type"],
        merge_key="sendsms_id",
        columns={"updated": {"dedup_sort": "desc"}},
    )


def _rejects_hints() -> Any:
    return dlt.mark.make_hints(
        table_name=REJECTS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="reject_key",
        # a row carrying `resolved_at` deletes its reject instead of being inserted
        columns={"resolved_at": {"hard_delete": True}},
    )


@dlt.source(name="quorum", max_table_nesting=0)
def quorum_source(
    base_url: str = dlt.config.value,
    username: str = dlt.secrets.value,
    api_key: str = dlt.secrets.value,
    initial_value: str = settings.DEFAULT_INITIAL_VALUE,
    lag_seconds: float = settings.DEFAULT_LAG_SECONDS,
    page_size: int = settings.DEFAULT_PAGE_SIZE,
    concurrency: int = 4,
    requests_per_second: float | None = None,
    max_attempts: int = settings.DEFAULT_MAX_ATTEMPTS,
    max_total_wait: float = settings.DEFAULT_MAX_TOTAL_WAIT_SECONDS,
    backoff_initial: float = settings.DEFAULT_BACKOFF_INITIAL_SECONDS,
    timeout: float = settings.DEFAULT_TIMEOUT_SECONDS,
    force_full_scan: bool = False,
    observer: SourceObserver | None = None,
    transform: Transform | None = None,
    max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION,
    known_rejects: Sequence[KnownReject] = (),
    run_id: str | None = None,
) -> list[DltResource]:
    """The Quorum SendSMS source.

    Args:
        base_url: the API's scheme and host, `https://www.quorum.us` for the live API.
        username: the Quorum API user (a secret: `.dlt/secrets.toml` or `QUORUM_USERNAME`).
        api_key: the Quorum API key (a secret: never logged, raised or stored).
        initial_value: ISO date-time the first run starts from.
        lag_seconds: later runs start this many seconds before the saved cursor, so changes
            committed late (with an older `updated`) are still read; merge on `id` makes the
            records read twice harmless.
        page_size: records per request (the API caps it at 1000).
        concurrency: how many slices of the `updated` range are read side by side.
        requests_per_second: ceiling on the request rate across all slices (None: no ceiling).
        max_attempts: attempts per request for transient failures.
        max_total_wait: seconds one request may spend retrying.
        backoff_initial: first backoff in seconds (doubles per attempt, with jitter).
        timeout: seconds per request.
        force_full_scan: skip keyset paging and scan every record (the fallback path).
        observer: collects statistics for progress and the summary.
        transform: `(column, values) -> values` applied to every column before it is
            written (the personal-data policy), and to the records stored as rejects.
        max_reject_fraction: when more than this share of the records read are newly
            rejected, the API's format changed: the run fails (BadRecordError) before
            anything is loaded. 0 makes any new bad record fail the run.
        known_rejects: the rows of `quorum_raw.sendsms_rejects` (`rejects.KNOWN_REJECTS_QUERY`):
            open ones are fetched again by id, and their `first_seen_at` is kept.
        run_id: stored with every reject row; dlt's load id when None.

    Returns:
        The `sendsms` and `sendsms_retry` resources.
    """
    client = QuorumClient(
        base_url,
        username,
        api_key,
        timeout=timeout,
        max_attempts=max_attempts,
        max_total_wait=max_total_wait,
        backoff_initial=backoff_initial,
        requests_per_second=requests_per_second,
        max_connections=max(concurrency, 1) + 1,
    )
    watcher = observer if observer is not None else SourceObserver()
    watcher.client = client
    reject_log = RejectLog(
        known_rejects, transform=transform, run_id=run_id, stats=watcher.rejects
    )
    close = _SharedClose(client, users=2)
    return [
        sendsms_resource(
            client,
            initial_value=pendulum.parse(initial_value),
            lag_seconds=lag_seconds,
            page_size=page_size,
            concurrency=concurrency,
            force_full_scan=force_full_scan,
            observer=watcher,
            transform=transform,
            reject_log=reject_log,
            max_reject_fraction=max_reject_fraction,
            close=close,
        ),
        retry_resource(client, reject_log=reject_log, transform=transform, close=close),
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
    transform: Transform | None,
    reject_log: RejectLog | None = None,
    max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION,
    close: Callable[[], None] | None = None,
) -> DltResource:
    """Build the `sendsms` resource around a ready client (see `quorum_source`)."""
    log = reject_log or RejectLog((), transform=transform, run_id=None, stats=observer.rejects)

    @dlt.resource(
        name=settings.SENDSMS_TABLE,
        table_name=settings.SENDSMS_TABLE,
        primary_key="id",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    )
    def sendsms(
        updated: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008 (dlt idiom)
            settings.CURSOR_FIELD,
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
        try:
            for page in iter_pages_concurrently(
                client,
                start,
                page_size=page_size,
                concurrency=concurrency,
                force_full_scan=force_full_scan,
                on_pager=observer.pagers.append,
                on_page=observer.page_done,
            ):
                split = split_page(page, transform)
                yield from _data_items(split.sendsms, split.events)
                for record, reason in split.bad:
                    if log.is_retried(record) or _before(record, start):
                        continue  # the retry owns it / out of the window, as dlt would drop it
                    rejected.append(log.reject(record, reason))
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
            dlt.current.resource_state()[FULL_SCAN_STATE_KEY] = (
                round(time.monotonic() - started, 3) if full_scan else 0.0
            )
        finally:
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
        return bool(parse_api_time(record.get(settings.CURSOR_FIELD)) < start)
    except BadRecordError:
        return False


def retry_resource(
    client: QuorumClient,
    *,
    reject_log: RejectLog,
    transform: Transform | None,
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
            yield from _retry(client, reject_log, transform)
        finally:
            (close or client.close)()

    return sendsms_retry


def _retry(
    client: QuorumClient, reject_log: RejectLog, transform: Transform | None
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
            split = split_page([record], transform)
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
    "SourceObserver",
    "effective_lag",
    "quorum_source",
    "retry_resource",
    "sendsms_resource",
]

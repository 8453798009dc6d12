"""A dlt source for Quorum's SendSMS API (quorum.us), shaped like a dlt verified source.

`quorum_source` yields one resource, `sendsms`, incremental on `updated`, that loads two
tables with merge semantics:

* `sendsms`: one row per SendSMS record (primary key `id`);
* `sendsms_events`: one row per event that happened to a record (`queued`, `sent`, ...),
  replaced as a whole whenever the record is loaded again (merge key `sendsms_id`).

Example:
    >>> pipeline = dlt.pipeline("quorum_sms", destination="duckdb", dataset_name="quorum_raw")
    >>> pipeline.run(quorum_source())  # settings from .dlt/config.toml and secrets.toml
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dlt
import pendulum
import pyarrow as pa
from dlt.sources import DltResource

from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.quorum.normalize import Transform, events_table, sendsms_table
from pipelines.quorum.paging import Pager, PagingStats
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
) -> DltResource:
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
            written (the personal-data policy).

    Returns:
        The `sendsms` resource.
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
    return sendsms_resource(
        client,
        initial_value=pendulum.parse(initial_value),
        lag_seconds=lag_seconds,
        page_size=page_size,
        concurrency=concurrency,
        force_full_scan=force_full_scan,
        observer=watcher,
        transform=transform,
    )


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
) -> DltResource:
    """Build the `sendsms` resource around a ready client (see `quorum_source`)."""

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
        ),
    ) -> Iterator[Any]:
        """Every SendSMS record changed since the saved cursor (minus the lag window)."""
        start = updated.start_value
        observer.cursor_start = start
        started = time.monotonic()
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
                # each table carries its own hints, so neither inherits the other's columns
                yield dlt.mark.with_hints(
                    sendsms_table(page, transform), _sendsms_hints(), create_table_variant=True
                )
                events: pa.Table = events_table(page, transform)
                if events.num_rows:
                    yield dlt.mark.with_hints(events, _events_hints(), create_table_variant=True)
            # A full scan cannot see a record that changes after the scan passed its id; its
            # new `updated` is at least (end of scan - scan duration). Remembering the duration
            # lets the next run widen its lag window to cover it (see `effective_lag`).
            full_scan = any(stats.mode == "full-scan" for stats in observer.pagers)
            dlt.current.resource_state()[FULL_SCAN_STATE_KEY] = (
                round(time.monotonic() - started, 3) if full_scan else 0.0
            )
        finally:
            client.close()

    return sendsms


__all__ = [
    "FULL_SCAN_STATE_KEY",
    "Pager",
    "SourceObserver",
    "effective_lag",
    "quorum_source",
    "sendsms_resource",
]

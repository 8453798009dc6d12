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

from pipelines.errors import ConfigError
from pipelines.quorum.client import (
    QuorumClient,
    require_secure_transport,
    validate_base_url,
)
from pipelines.quorum.normalize import PersonalDataPolicy, events_table, sendsms_table
from pipelines.quorum.paging import Pager, PagingStats
from pipelines.quorum.settings import (
    CURSOR_FIELD,
    EVENTS_TABLE,
    MAX_PAGE_SIZE,
    SENDSMS_TABLE,
    SOURCE_SECTION,
    QuorumSourceSettings,
    check_values,
)
from pipelines.quorum.slicing import iter_pages_concurrently
from pipelines.quorum.timestamps import parse_since
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


def _events_hints() -> Any:
    return dlt.mark.make_hints(
        table_name=EVENTS_TABLE,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=["sendsms_id", "event_type"],
        merge_key="sendsms_id",
        columns={"updated": {"dedup_sort": "desc"}},
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


@dlt.source(name="quorum", max_table_nesting=0, spec=QuorumSourceSettings)
def quorum_source(
    settings: QuorumSourceSettings = dlt.config.value,
    observer: SourceObserver | None = None,
    policy: PersonalDataPolicy | None = None,
) -> DltResource:
    """The Quorum SendSMS source.

    Args:
        settings: every setting (`QuorumSourceSettings`); dlt resolves it from
            `SOURCES__QUORUM__<KEY>` environment variables, `.dlt/secrets.toml` and
            `.dlt/config.toml` under `[sources.quorum]` when it is not given.
        observer: collects statistics for progress and the summary.
        policy: the personal-data policy, applied to every column before it is written.

    Returns:
        The `sendsms` resource.

    Raises:
        ConfigError: a setting is missing or invalid (see `check_settings`).
    """
    settings = check_settings(settings)
    client = QuorumClient(
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
    watcher = observer if observer is not None else SourceObserver()
    watcher.client = client
    return sendsms_resource(
        client,
        initial_value=pendulum.parse(settings.initial_value),
        lag_seconds=settings.lag_seconds,
        page_size=min(settings.page_size, MAX_PAGE_SIZE),
        concurrency=settings.concurrency,
        force_full_scan=settings.force_full_scan,
        observer=watcher,
        policy=policy,
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
    policy: PersonalDataPolicy | None,
) -> DltResource:
    """Build the `sendsms` resource around a ready client (see `quorum_source`)."""

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
                    sendsms_table(page, policy), _sendsms_hints(), create_table_variant=True
                )
                events: pa.Table = events_table(page, policy)
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
    "QuorumSourceSettings",
    "SourceObserver",
    "check_settings",
    "effective_lag",
    "quorum_source",
    "sendsms_resource",
]

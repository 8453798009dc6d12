"""Paging through SendSMS so that nothing is lost or skipped while the data moves.

Offset paging over a set ordered by `updated` loses records: when a record already read is
updated during the run, it jumps to the end and everything after it shifts back by one, so
the record at the next offset is never served. This module pages by key instead:

* **Keyset** (the fast path): `updated__gte=<last updated read>` with
  `order_by=updated&order_by=id`, skipping the records of the boundary instant already read.
  A record updated mid-run moves *after* the read position, so it is read again later in
  the same run. When more records share one `updated` instant than a page holds, that
  instant is read as a bucket `[t, t + resolution)` ordered by `id` with `id__gt`.
  Every page is checked: `updated` must not go backwards and must respect the filter. If the
  server refuses the filter or the ordering (400) or ignores them, the pager falls back.
* **Full scan** (the fallback, still correct, slower): every record in the server's default
  `id` order, by `id__gt` when the server filters on `id`, else by offset (stable in `id`
  order, since updates do not move a record and new records get new, larger ids). The
  cursor is then applied on the client by dlt's incremental.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload

from pipelines.errors import ApiBadRequestError, ApiRequestError, BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.quorum.pages import (
    Fetched,
    NotAListError,
    PageDecoder,
    decode_records,
)
from pipelines.quorum.timestamps import format_api_time

logger = logging.getLogger(__name__)

Record = dict[str, Any]
Page = list[Record]
#: A page as its decoder hands it on: a list of records, or tables a worker normalized.
P = TypeVar("P")

ONE_MICROSECOND = timedelta(microseconds=1)
ONE_SECOND = timedelta(seconds=1)


class CapabilityError(Exception):
    """The server does not filter or order by `updated` as keyset paging needs."""


@dataclass
class PagingStats:
    """What the pager did, for the run summary."""

    pages: int = 0
    records: int = 0
    mode: str = "keyset"
    fallback_reason: str | None = None
    notes: list[str] = field(default_factory=list)


def _stuck(what: str) -> BadRecordError:
    return BadRecordError(
        f"A whole page of SendSMS records had no readable {what}, so paging cannot move past "
        "it. That is a change of the API's format, not a bad record: nothing from this run "
        "was loaded and the saved cursor is unchanged; report it to Quorum support."
    )


def _respects_lower_bound(updated: datetime, lower: datetime) -> bool:
    # A server that renders whole seconds may show a value that sorts just below the filter.
    if updated.microsecond == 0:
        return updated >= lower.replace(microsecond=0)
    return updated >= lower


def _resolution(instant: datetime) -> timedelta:
    """The width of the bucket that surely holds every record rendered as `instant`."""
    return ONE_MICROSECOND if instant.microsecond else ONE_SECOND


class Pager(Generic[P]):
    """Reads SendSMS pages of records changed at or after `start`, never losing one.

    Args:
        client: the HTTP client.
        start: read records with `updated >= start` (None: all records).
        end: optional exclusive upper bound on `updated`, for slicing a range.
        page_size: records per request (the API caps it at 1000).
        on_page: called after every page with the pager's stats (progress display).
        force_full_scan: skip keyset paging.
        decoder: turns a body into a page and its keys; by default in this process, with
            lists of records as pages (`pages.decode_records`).
    """

    @overload
    def __init__(
        self: Pager[Page],
        client: QuorumClient,
        start: datetime | None,
        *,
        end: datetime | None = ...,
        page_size: int = ...,
        on_page: Callable[[PagingStats], None] | None = ...,
        force_full_scan: bool = ...,
        decoder: None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pager[P],
        client: QuorumClient,
        start: datetime | None,
        *,
        end: datetime | None = ...,
        page_size: int = ...,
        on_page: Callable[[PagingStats], None] | None = ...,
        force_full_scan: bool = ...,
        decoder: PageDecoder[P],
    ) -> None: ...

    def __init__(
        self,
        client: QuorumClient,
        start: datetime | None,
        *,
        end: datetime | None = None,
        page_size: int = settings.DEFAULT_SETTINGS.page_size,
        on_page: Callable[[PagingStats], None] | None = None,
        force_full_scan: bool = False,
        decoder: PageDecoder[Any] | None = None,
    ) -> None:
        self._decode: PageDecoder[Any] = decoder or decode_records
        self.client = client
        self.start = start
        self.end = end
        self.page_size = min(page_size, settings.MAX_PAGE_SIZE)
        self.stats = PagingStats()
        self._on_page = on_page
        self._force_full_scan = force_full_scan
        #: False for a slice of a concurrent read: the caller falls back for the whole range.
        self.allow_fallback = True

    def __iter__(self) -> Iterator[P]:
        if self._force_full_scan:
            yield from self._fall_back("full scan requested")
            return
        try:
            yield from self._keyset()
        except CapabilityError as reason:
            if not self.allow_fallback:
                raise
            yield from self._fall_back(str(reason))

    def _fall_back(self, reason: str) -> Iterator[P]:
        self.stats.mode = "full-scan"
        self.stats.fallback_reason = reason
        logger.warning("keyset paging unavailable (%s): falling back to a full scan", reason)
        yield from self._full_scan()

    # -- requests ----------------------------------------------------------------------------

    def _fetch(self, params: list[tuple[str, str | int]]) -> Fetched[P]:
        """One page: its records (as the decoder hands them on), their keys, and `more`."""
        try:
            fetched = self.client.get_decoded(
                settings.LIST_PATH, [("limit", self.page_size), *params], self._decode
            )
        except NotAListError:
            fetched = None
        if fetched is None:
            raise ApiRequestError(
                "The Quorum API returned a page that is not a tastypie list (no `meta` and "
                "`objects`). Nothing from this run was loaded and the saved cursor is "
                "unchanged; check --base-url points at the Quorum API."
            )
        self.stats.pages += 1
        return fetched

    def _emit(self, fetched: Fetched[P], dropped: set[int] | None = None) -> P:
        """The fetched page without the `dropped` positions, counted and reported."""
        self.stats.records += len(fetched.ids) - len(dropped or ())
        if self._on_page is not None:
            self._on_page(self.stats)
        return fetched.without(dropped) if dropped else fetched.page

    def _range_params(self) -> list[tuple[str, str | int]]:
        return [("updated__lt", format_api_time(self.end))] if self.end is not None else []

    # -- keyset ------------------------------------------------------------------------------

    def _keyset(self) -> Iterator[P]:
        lower = self.start
        top: datetime | None = None
        seen_at_top: set[int] = set()
        while True:
            params: list[tuple[str, str | int]] = [("order_by", "updated"), ("order_by", "id")]
            if lower is not None:
                params.append(("updated__gte", format_api_time(lower)))
            params += self._range_params()
            try:
                fetched = self._fetch(params)
            except ApiBadRequestError as error:
                raise CapabilityError(
                    f"the API refused keyset paging: {error.api_message.rstrip('.')}"
                ) from None
            keys, more, count = fetched.keys, fetched.more, len(fetched.ids)
            readable = [key for key in keys if key is not None]
            self._check_keyset_page(readable, lower)
            # records of the boundary instant the previous page already handed on
            dropped = {
                i
                for i, key in enumerate(keys)
                if key is not None and key[0] == top and key[1] in seen_at_top
            }
            progressed = False
            for updated, record_id in readable:
                if top is None or updated > top:
                    top, seen_at_top, progressed = updated, {record_id}, True
                elif updated == top and record_id not in seen_at_top:
                    seen_at_top.add(record_id)
                    progressed = True
            if count > len(dropped):
                yield self._emit(fetched, dropped)
            if not more or count < self.page_size:
                return
            if top is None or not progressed:
                raise _stuck("`updated` and `id`")
            if len(seen_at_top) > self.page_size // 2:
                # One instant holds (nearly) a page: read it as a bucket by id, then go past it.
                yield from self._bucket(top, seen_at_top)
                lower, top, seen_at_top = top + _resolution(top), None, set()
            else:
                lower = top

    def _check_keyset_page(self, keys: list[tuple[datetime, int]], lower: datetime | None) -> None:
        previous: datetime | None = None
        for updated, record_id in keys:
            if lower is not None and not _respects_lower_bound(updated, lower):
                raise CapabilityError(
                    f"the API ignored the `updated__gte` filter (record {record_id})"
                )
            if self.end is not None and updated >= self.end:
                raise CapabilityError(f"the API ignored the `updated__lt` filter ({record_id})")
            if previous is not None and updated < previous:
                raise CapabilityError(f"the API ignored `order_by=updated` (record {record_id})")
            previous = updated

    def _bucket(self, instant: datetime, already_read: set[int]) -> Iterator[P]:
        upper = instant + _resolution(instant)
        last_id: int | None = None
        while True:
            params: list[tuple[str, str | int]] = [
                ("order_by", "id"),
                ("updated__gte", format_api_time(instant)),
                ("updated__lt", format_api_time(upper)),
            ]
            if last_id is not None:
                params.append(("id__gt", last_id))
            try:
                fetched = self._fetch(params)
            except ApiBadRequestError as error:
                raise CapabilityError(
                    f"the API refused id paging in a bucket: {error.api_message.rstrip('.')}"
                ) from None
            dropped: set[int] = set()
            page_start = last_id
            for position, (the_id, key) in enumerate(zip(fetched.ids, fetched.keys, strict=True)):
                if the_id is None:
                    continue  # a reject: handed on, no part in the ordering
                if (last_id is not None and the_id <= last_id) or (
                    key is not None
                    and not (_respects_lower_bound(key[0], instant) and key[0] < upper)
                ):
                    raise CapabilityError("the API ignored `order_by=id` or a filter in a bucket")
                last_id = the_id
                if the_id in already_read:
                    dropped.add(position)
            count = len(fetched.ids)
            if count > len(dropped):
                yield self._emit(fetched, dropped)
            if not fetched.more or count < self.page_size:
                return
            if last_id == page_start:
                raise _stuck("`id`")

    # -- full scan ---------------------------------------------------------------------------

    def _full_scan(self) -> Iterator[P]:
        last_id: int | None = None
        offset = 0
        by_id = True
        while True:
            params: list[tuple[str, str | int]] = (
                [("id__gt", last_id)] if by_id and last_id is not None else []
            )
            if not by_id:
                params = [("offset", offset)]
            try:
                fetched = self._fetch(params)
            except ApiBadRequestError:
                if not by_id:
                    raise
                by_id = False
                continue
            more, count = fetched.more, len(fetched.ids)
            ids = [i for i in fetched.ids if i is not None]
            in_order = all(b > a for a, b in itertools.pairwise(ids)) and (
                last_id is None or not ids or ids[0] > last_id
            )
            if not in_order:
                if by_id and last_id is not None:
                    # `id__gt` was ignored: offset paging, which is stable in id order.
                    by_id = False
                    continue
                raise ApiRequestError(
                    "The Quorum API neither supports keyset paging nor returns records in "
                    "`id` order, so no reliable way to read every record is left. Nothing was "
                    "loaded and the saved cursor is unchanged; report this to Quorum support."
                )
            if by_id is False and "offset paging" not in " ".join(self.stats.notes):
                self.stats.notes.append("the id filter is not available: offset paging by id")
            if ids:
                last_id = ids[-1]
            elif by_id and more and count >= self.page_size:
                raise _stuck("`id`")
            offset += count
            if count:
                yield self._emit(fetched)
            if not more or count < self.page_size:
                return

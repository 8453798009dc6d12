"""Reading the `updated` range as slices side by side, for throughput on slow APIs.

Keyset paging is sequential within one range, so the range `[start, now)` is cut into
slices of equal width that worker threads page through concurrently; the last slice is open
ended and is read after all the others, so records changed while the run pages (they move to
the newest end of the range) are read in the same run. Pages flow through a bounded queue:
memory stays flat however large the sync.

Slicing needs the server to filter and order by `updated`; three probes check that first
(the newest record really is the newest: nothing is newer than it). When they fail, or the
range is small, one sequential `Pager` does the work and falls back by itself.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from pipelines.errors import ApiBadRequestError, BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.quorum.pages import PageDecoder, decode_records
from pipelines.quorum.paging import (
    CapabilityError,
    Page,
    Pager,
    PagingStats,
)
from pipelines.quorum.timestamps import format_api_time, parse_api_time

logger = logging.getLogger(__name__)

#: Slices per worker: more slices balance uneven density at the cost of a few short pages.
SLICES_PER_WORKER = 8
#: Below this many pages a sliced read decodes in this process: starting worker processes
#: (~1 s of CPU each, for their imports) costs more than they save on a small nightly range.
MIN_PAGES_FOR_DECODER = 50
_DONE = object()
P = TypeVar("P")


def _probe(
    client: QuorumClient, params: list[tuple[str, str | int]]
) -> tuple[int, datetime | None]:
    body = client.get_json(settings.LIST_PATH, [("limit", 1), *params])
    if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
        raise CapabilityError("a probe returned no tastypie meta block")
    total = body["meta"].get("total_count")
    objects = body.get("objects") or []
    if not isinstance(total, int):
        raise CapabilityError("a probe returned no total_count")
    if not objects or not isinstance(objects[0], dict):
        return total, None
    first = objects[0]
    try:
        return total, parse_api_time(
            first.get(settings.CURSOR_FIELD), record_id=first.get("id"), field_name="updated"
        )
    except BadRecordError:
        # a malformed record at the edge of the range: the sequential pager sets it aside
        raise CapabilityError("a probe's record has no readable `updated`") from None


def plan_load_windows(
    client: QuorumClient, start: datetime | None, *, max_records: int
) -> list[datetime | None]:
    """Cut `[start, newest]` into consecutive load windows of about `max_records` records.

    A sync larger than `max_records` is loaded window by window, each a dlt load of its own
    that moves the cursor with its data: a merge never has to hold the whole history at once,
    and a run killed halfway keeps the windows it finished. Returns the windows' exclusive
    upper bounds on `updated`, oldest first; the last is None (open ended: it also reads what
    changed during the run). `[None]` (one load) when the range is small, `max_records` is 0,
    or the API cannot filter and order by `updated` (then a window could not be bounded).

    The windows hold equal numbers of records, not equal spans of time: a load's memory
    follows its records, and history is not evenly dense (at 10M records, equal spans gave
    windows of 180,000 to 490,000 records for a target of 250,000). Each bound is the
    `updated` of the record at its position in the `updated` ordering, one request of one
    record each (`offset`); a server that refuses those gets windows of equal spans of time.
    """
    if max_records <= 0:
        return [None]
    lower = [("updated__gte", format_api_time(start))] if start is not None else []
    try:
        total, oldest = _probe(client, [("order_by", "updated"), *lower])
        if total <= max_records or oldest is None:
            return [None]
        _, newest = _probe(client, [("order_by", "-updated"), *lower])
    except (ApiBadRequestError, CapabilityError) as reason:
        logger.info("one load window (%s)", reason)
        return [None]
    if newest is None or newest <= oldest:
        return [None]
    count = -(-total // max_records)
    try:
        return [*_even_bounds(client, lower, oldest, total, count), None]
    except (ApiBadRequestError, CapabilityError) as reason:
        logger.info("load windows of equal spans of time (%s)", reason)
        width = (newest - oldest) / count
        return [*(oldest + width * i for i in range(1, count)), None]


def _even_bounds(
    client: QuorumClient,
    lower: list[tuple[str, str]],
    oldest: datetime,
    total: int,
    count: int,
) -> list[datetime]:
    """The bounds that cut the range into `count` windows of equal counts: the `updated` of
    the record at each `i * total / count` position of the `updated` ordering.

    Raises:
        CapabilityError: the first position's record is the oldest: the API ignores `offset`.
    """
    bounds: list[datetime] = []
    for index in range(1, count):
        _, at = _probe(
            client, [("order_by", "updated"), *lower, ("offset", index * total // count)]
        )
        if at is None:  # records went away since the range was counted
            break
        if not bounds and at <= oldest:
            raise CapabilityError("a probe at an offset returned the oldest record")
        if not bounds or at > bounds[-1]:  # else a bucket of one instant fills a window
            bounds.append(at)
    return bounds


def plan_slices(
    client: QuorumClient,
    start: datetime | None,
    *,
    page_size: int,
    concurrency: int,
    end: datetime | None = None,
) -> list[tuple[datetime | None, datetime | None]] | None:
    """Cut `[start, newest]` (or `[start, end)`) into slice bounds, or None when one
    sequential pager is better.

    The returned bounds are `(lower, upper)` with `upper` exclusive; the last is `(b, end)`.
    """
    plan = _plan(client, start, page_size=page_size, concurrency=concurrency, end=end)
    return None if plan is None else plan[0]


def _plan(
    client: QuorumClient,
    start: datetime | None,
    *,
    page_size: int,
    concurrency: int,
    end: datetime | None = None,
) -> tuple[list[tuple[datetime | None, datetime | None]], int] | None:
    """`plan_slices` and the number of records the range held when it was probed."""
    if concurrency <= 1:
        return None
    lower = [("updated__gte", format_api_time(start))] if start is not None else []
    upper = [("updated__lt", format_api_time(end))] if end is not None else []
    try:
        total, oldest = _probe(client, [("order_by", "updated"), *lower, *upper])
        if total <= page_size * concurrency or oldest is None:
            return None
        _, newest = _probe(client, [("order_by", "-updated"), *lower, *upper])
        if newest is None or newest < oldest:
            return None
        newer, _ = _probe(client, [("updated__gt", format_api_time(newest)), *upper])
        if newer:
            return None
    except (ApiBadRequestError, CapabilityError) as reason:
        logger.info("not slicing (%s): the pager reads sequentially", reason)
        return None
    count = max(2, min(concurrency * SLICES_PER_WORKER, total // page_size))
    width = (newest - oldest) / count
    if width.total_seconds() <= 0:
        return None
    bounds: list[datetime | None] = [start, *(oldest + width * i for i in range(1, count)), end]
    return list(itertools.pairwise(bounds)), total


def iter_pages_concurrently(
    client: QuorumClient,
    start: datetime | None,
    *,
    page_size: int,
    concurrency: int,
    force_full_scan: bool,
    on_pager: Callable[[PagingStats], None],
    on_page: Callable[[PagingStats], None],
    slice_decoder: PageDecoder[P] | None = None,
    end: datetime | None = None,
) -> Iterator[Page | P]:
    """Yield pages of records with `updated >= start`, read by up to `concurrency` threads.

    With `end`, only records with `updated < end` (a load window) are asked for; a pager
    that falls back to a full scan reads every record whatever `end` (its stats say
    `full-scan`), which the caller must treat as the whole range read.

    `slice_decoder`, when given, decodes the pages of a sliced read of at least
    `MIN_PAGES_FOR_DECODER` pages (a worker pool's `decode`); pages are then what it returns.
    Sequential reads, and small ranges, yield lists of records decoded in this process.
    """
    plan = None if force_full_scan else _plan(
        client, start, page_size=page_size, concurrency=concurrency, end=end
    )
    if plan is None:
        pager = Pager(
            client,
            start,
            end=end,
            page_size=page_size,
            on_page=on_page,
            force_full_scan=force_full_scan,
        )
        on_pager(pager.stats)
        yield from pager
        return
    slices, total = plan
    decoder = slice_decoder if total >= MIN_PAGES_FOR_DECODER * page_size else None
    try:
        yield from _read_slices(client, slices, page_size, concurrency, on_pager, on_page, decoder)
    except CapabilityError as reason:
        logger.warning("slice paging failed (%s): reading sequentially", reason)
        pager = Pager(client, start, end=end, page_size=page_size, on_page=on_page)
        on_pager(pager.stats)
        yield from pager


def _read_slices(
    client: QuorumClient,
    slices: list[tuple[datetime | None, datetime | None]],
    page_size: int,
    concurrency: int,
    on_pager: Callable[[PagingStats], None],
    on_page: Callable[[PagingStats], None],
    decoder: PageDecoder[Any] | None,
) -> Iterator[Any]:
    # One page waiting is enough to keep the consumer (normalize + dlt, which holds the GIL
    # longest) busy; each thread blocked on a full queue holds one more decoded page (~4 MB of
    # Python objects). A longer queue only kept more pages resident and fragmented the heap.
    pages: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    errors: list[BaseException] = []

    def read(bounds: tuple[datetime | None, datetime | None]) -> None:
        try:
            pager = Pager(
                client,
                bounds[0],
                end=bounds[1],
                page_size=page_size,
                on_page=on_page,
                decoder=decoder or decode_records,
            )
            pager.allow_fallback = False
            on_pager(pager.stats)
            for page in pager:
                if not put(page):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            errors.append(error)
            stop.set()

    def run_all() -> None:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="quorum-slice") as pool:
            for bounds in slices[:-1]:
                pool.submit(read, bounds)
        # the open-ended newest slice last: it also holds what changed during the run
        if not errors:
            read(slices[-1])
        if errors:
            _drain_and_put(pages, errors[0])
        else:
            put(_DONE)

    producer = threading.Thread(target=run_all, name="quorum-slices", daemon=True)
    producer.start()
    try:
        while True:
            item = pages.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join(timeout=30)


def _drain_and_put(pages: queue.Queue[Any], item: Any) -> None:
    while True:
        with contextlib.suppress(queue.Empty):
            pages.get_nowait()
        try:
            pages.put_nowait(item)
            return
        except queue.Full:
            continue

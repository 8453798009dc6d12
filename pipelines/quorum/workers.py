"""Decoding and normalizing pages in worker processes, beside the interpreter that loads.

JSON decoding and normalization hold the GIL, so threads cannot run them beside dlt's
extract; a few spawned processes can. A slice thread hands a worker the body's bytes (with
the API key cut out of `meta`: workers never see a URL or the key) and waits; the worker
decodes, reads every record's (`updated`, `id`) key for the pager, splits the page into Arrow
tables and rejects with the personal-data policy applied (`rejects.split_page`), and sends it
all back pickled (Arrow tables pickle as their buffers). The tables are the ones the
in-process path builds from the same records.

The pool starts on first use and is always shut down by `close()`: workers ignore SIGINT so
a Ctrl-C reaches only the parent, which then closes the pool and re-raises.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.quorum.client import QuorumClient, decode_json
from pipelines.quorum.normalize import PersonalDataPolicy
from pipelines.quorum.pages import Fetched, Key, list_objects, record_id, record_key
from pipelines.quorum.rejects import SplitPage, split_page


@dataclass
class DecodedPage:
    """A page normalized in a worker: its tables and its rejects, ready for dlt.

    Attributes:
        sendsms: rows of the good records, in page order (None when there are none).
        events: their event rows.
        bad: the records that cannot be loaded, with reasons (policy not yet applied: the
            reject log applies it when it stores them).
        bad_positions: each bad record's position in the page.
        count: records in the page, good and bad.
    """

    sendsms: pa.Table | None
    events: pa.Table | None
    bad: list[tuple[Any, str]]
    bad_positions: list[int]
    count: int

    def __len__(self) -> int:
        return self.count

    def split(self) -> SplitPage:
        """The page as `rejects.split_page` returns it."""
        return SplitPage(self.sendsms, self.events, list(self.bad))

    def without(self, positions: set[int], ids: set[int]) -> DecodedPage:
        """The page without the records at `positions` (whose ids are `ids`)."""
        kept_bad = [
            (record, position)
            for record, position in zip(self.bad, self.bad_positions, strict=True)
            if position not in positions
        ]
        return DecodedPage(
            sendsms=_without_ids(self.sendsms, "id", ids),
            events=_without_ids(self.events, "sendsms_id", ids),
            bad=[record for record, _ in kept_bad],
            bad_positions=[position for _, position in kept_bad],
            count=self.count - len(positions),
        )


def _without_ids(table: pa.Table | None, column: str, ids: set[int]) -> pa.Table | None:
    if table is None or not ids or not table.num_rows:
        return table
    drop = pc.is_in(table[column], value_set=pa.array(sorted(ids), type=pa.int64()))
    return table.filter(pc.invert(pc.fill_null(drop, False)))


@dataclass
class WorkerResult:
    """What a worker sends back for one body: the page, `more`, and the pager's keys."""

    page: DecodedPage
    more: bool
    keys: list[Key | None]
    ids: list[int | None]


_policy: PersonalDataPolicy | None = None


def _start_worker(policy: PersonalDataPolicy | None) -> None:
    """Worker initializer: keep the policy, and leave Ctrl-C to the parent."""
    global _policy
    _policy = policy
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_page(content: bytes, policy: PersonalDataPolicy | None = None) -> WorkerResult:
    """Decode and normalize one list body (what a worker runs; callable in-process too).

    Raises:
        NotJsonError: the body is not JSON (the client retries the request).
        NotAListError: the body is not a tastypie list.
    """
    objects, more = list_objects(decode_json(content))
    split = split_page(objects, policy)
    position = {id(record): i for i, record in enumerate(objects)}
    return WorkerResult(
        page=DecodedPage(
            sendsms=split.sendsms,
            events=split.events,
            bad=split.bad,
            bad_positions=[position[id(record)] for record, _ in split.bad],
            count=len(objects),
        ),
        more=more,
        keys=[record_key(record) for record in objects],
        ids=[record_id(record) for record in objects],
    )


def _decode_in_worker(content: bytes) -> WorkerResult:
    return decode_page(content, _policy)


class DecodeWorkers:
    """A small pool of spawned processes that decode and normalize pages.

    Args:
        workers: processes (at least 1).
        client: cuts the API key out of each body before it leaves this process.
        policy: the personal-data policy (pickled once into each worker).
    """

    def __init__(
        self, workers: int, client: QuorumClient, policy: PersonalDataPolicy | None
    ) -> None:
        self.workers = workers
        self._client = client
        self._policy = policy
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        #: bodies decoded in a worker so far
        self.pages = 0

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode workers are closed")
            if self._pool is None:
                # spawn, not fork: the parent runs threads, and a forked child could inherit
                # a lock held by one of them
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(self._policy,),
                )
            return self._pool

    def decode(self, content: bytes) -> Fetched[DecodedPage]:
        """Decode one body in a worker (or here, when its key cannot be cut out safely)."""
        scrubbed = self._client.without_key(content)
        if scrubbed is None:
            result = decode_page(content, self._policy)
        else:
            result = self._executor().submit(_decode_in_worker, scrubbed).result()
            with self._lock:
                self.pages += 1
        page, ids = result.page, result.ids

        def without(positions: set[int]) -> DecodedPage:
            dropped_ids = {i for p in positions if (i := ids[p]) is not None}
            return page.without(positions, dropped_ids)

        return Fetched(page=page, more=result.more, keys=result.keys, ids=ids, without=without)

    @property
    def started(self) -> bool:
        """Whether worker processes were started."""
        return self._pool is not None

    def close(self) -> None:
        """Stop the workers (idempotent); queued pages are cancelled, running ones finish."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

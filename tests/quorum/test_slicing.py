"""`pipelines/quorum/slicing.py` against the simulator over HTTP: slices, workers, fallback."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pipelines.errors import BadRecordError
from pipelines.quorum import slicing
from pipelines.quorum.client import QuorumClient
from pipelines.quorum.paging import Pager, PagingStats
from pipelines.quorum.slicing import iter_pages_concurrently, plan_slices
from pipelines.quorum.timestamps import parse_api_time
from pipelines.simulator import Faults
from tests.conftest import API_KEY, API_USER

START = datetime(2000, 1, 1, tzinfo=UTC)


def client_for(base_url: str) -> QuorumClient:
    return QuorumClient(base_url, API_USER, API_KEY, backoff_initial=0.01, max_attempts=3)


class Reading:
    """What one `iter_pages_concurrently` call did: its pagers and the ids it yielded."""

    def __init__(self) -> None:
        self.pagers: list[PagingStats] = []
        self.ids: list[int] = []
        self.records: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def on_pager(self, stats: PagingStats) -> None:
        with self._lock:
            self.pagers.append(stats)

    def read(self, pages: Iterator[list[dict[str, Any]]]) -> Reading:
        for page in pages:
            for record in page:
                self.ids.append(record["id"])
                self.records[record["id"]] = record
        return self


def pages_of(
    client: QuorumClient,
    *,
    concurrency: int,
    page_size: int = 50,
    force_full_scan: bool = False,
    start: datetime | None = START,
    on_pager: Callable[[PagingStats], None] = lambda stats: None,
) -> Iterator[list[dict[str, Any]]]:
    """`iter_pages_concurrently` with the arguments the tests do not vary filled in."""
    return iter_pages_concurrently(
        client,
        start,
        page_size=page_size,
        concurrency=concurrency,
        force_full_scan=force_full_scan,
        on_pager=on_pager,
        on_page=lambda stats: None,
    )


def read_concurrently(base_url: str, **options: Any) -> Reading:
    """Read to the end through `pages_of(client, **options)`, recording every pager."""
    reading = Reading()
    with client_for(base_url) as client:
        return reading.read(pages_of(client, on_pager=reading.on_pager, **options))


def slice_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("quorum-slice")]


def wait_for_slice_threads_to_end(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while slice_threads():
        assert time.monotonic() < deadline, f"workers still running: {slice_threads()}"
        time.sleep(0.02)  # paces the poll; the condition is observable, not timed


def truth_ids(sim: Any) -> list[int]:
    return sorted(r["id"] for r in sim.world.ground_truth())


# ---------------------------------------------------------------------------- planning


@pytest.mark.parametrize("start", [START, None])
def test_slices_cover_the_range_without_gap_or_overlap(simulator_factory, start):
    sim = simulator_factory(n_records=1200)
    with client_for(sim.base_url) as client:
        slices = plan_slices(client, start, page_size=50, concurrency=3)
    assert slices is not None
    # 3 workers x SLICES_PER_WORKER, capped by the pages there are (1200 / 50 = 24)
    assert len(slices) == min(3 * slicing.SLICES_PER_WORKER, 1200 // 50)
    assert slices[0][0] == start
    assert slices[-1][1] is None, "the newest slice is open ended"
    for (_, upper), (lower, _) in itertools.pairwise(slices):
        assert upper == lower, "each slice starts exactly where the previous one stops"
    inner = [lower for lower, _ in slices[1:]]
    assert inner == sorted(inner) and len(set(inner)) == len(inner)
    # the cut points lie between the oldest and the newest record
    times = sorted(parse_api_time(r["updated"]) for r in sim.world.ground_truth())
    assert times[0] < inner[0] and inner[-1] < times[-1]


def test_no_slices_when_one_reader_is_better_or_the_api_cannot_filter(simulator_factory):
    small = simulator_factory(n_records=100)
    refusing = simulator_factory(n_records=1200, faults=Faults(refuse_range_filters=True))
    unordered = simulator_factory(n_records=1200, faults=Faults(refuse_order_by=True))
    with client_for(small.base_url) as client:
        assert plan_slices(client, START, page_size=50, concurrency=1) is None
        assert plan_slices(client, START, page_size=50, concurrency=4) is None  # 2 pages
    for sim in (refusing, unordered):
        with client_for(sim.base_url) as client:
            assert plan_slices(client, START, page_size=50, concurrency=4) is None


# ---------------------------------------------------------------------------- reading


def test_every_record_is_yielded_exactly_once_across_slices(simulator_factory):
    sim = simulator_factory(n_records=1500)
    reading = read_concurrently(sim.base_url, concurrency=4)
    assert len(reading.pagers) > 4, "the range was not sliced: the test proves nothing"
    assert all(stats.mode == "keyset" for stats in reading.pagers)
    assert len(reading.ids) == len(set(reading.ids))
    assert sorted(reading.ids) == truth_ids(sim)


def test_one_worker_and_many_workers_read_the_same_records(simulator_factory):
    sim = simulator_factory(n_records=1500)
    one = read_concurrently(sim.base_url, concurrency=1)
    many = read_concurrently(sim.base_url, concurrency=3)
    assert len(one.pagers) == 1 and len(many.pagers) > 3
    assert sorted(one.ids) == sorted(many.ids) == truth_ids(sim)
    assert one.records == many.records


def test_the_open_ended_newest_slice_is_read_after_all_the_others(simulator_factory, monkeypatch):
    sim = simulator_factory(n_records=1200)
    log: list[tuple[str, datetime | None, datetime | None]] = []
    lock = threading.Lock()

    class LoggingPager(Pager):
        def __iter__(self) -> Iterator[list[dict[str, Any]]]:
            with lock:
                log.append(("start", self.start, self.end))
            yield from super().__iter__()
            with lock:
                log.append(("end", self.start, self.end))

    monkeypatch.setattr(slicing, "Pager", LoggingPager)
    reading = read_concurrently(sim.base_url, concurrency=3)
    assert sorted(reading.ids) == truth_ids(sim)
    open_starts = [i for i, (what, _, end) in enumerate(log) if what == "start" and end is None]
    assert len(open_starts) == 1
    ends_of_others = [i for i, (what, _, end) in enumerate(log) if what == "end" and end]
    assert len(ends_of_others) == len(log) // 2 - 1 > 1
    assert max(ends_of_others) < open_starts[0]


def test_records_changed_while_the_slices_are_read_arrive_in_their_last_version(
    simulator_factory,
):
    # every list request first touches 3 records already served (they move to the newest
    # end of the range) and creates 3: the open-ended slice, read last, must pick them up
    sim = simulator_factory(n_records=1200, faults=Faults(mutate_while_paging=3, seed=5))
    reading = read_concurrently(sim.base_url, concurrency=3)
    assert sim.stats.faults_injected.get("mutate_while_paging", 0) > 10
    truth = {r["id"]: r for r in sim.world.ground_truth()}
    assert set(reading.records) >= set(truth) - {
        # created by the last request's mutation, after that request was answered
        record_id for record_id in truth if record_id > max(reading.records)
    }
    stale = [
        record_id
        for record_id, record in reading.records.items()
        if parse_api_time(record["updated"]) != parse_api_time(truth[record_id]["updated"])
    ]
    # only a change made by the very last request can postdate what this run read
    assert len(stale) <= 3, stale


# ---------------------------------------------------------------------------- failures


def test_an_error_in_one_worker_reaches_the_caller_and_stops_the_others(simulator_factory):
    sim = simulator_factory(n_records=3000)
    by_updated = sorted(sim.world.ground_truth(), key=lambda r: parse_api_time(r["updated"]))
    # A lone bad record is handed on to be set aside (quorum.rejects); a whole page of them
    # leaves the pager nothing to move its keyset by, so it fails: the first slice's first page.
    bad_ids = tuple(record["id"] for record in by_updated[:40])
    sim.faults = Faults(malformed_ids=bad_ids)
    with pytest.raises(BadRecordError) as caught:
        read_concurrently(sim.base_url, concurrency=4, page_size=20)
    assert "updated" in str(caught.value)
    wait_for_slice_threads_to_end()
    stopped_at = sim.stats.requests
    # a full read is 3000 / 20 = 150 pages; the workers stopped long before that
    assert stopped_at < 100, stopped_at
    assert not slice_threads()


def test_a_caller_that_stops_early_stops_the_workers(simulator_factory):
    sim = simulator_factory(n_records=3000)
    with client_for(sim.base_url) as client:
        pages = pages_of(client, page_size=20, concurrency=4)
        assert next(pages), "a first page"
        pages.close()  # what dlt does when a step fails downstream
    wait_for_slice_threads_to_end()
    assert sim.stats.requests < 100


def test_forced_full_scan_reads_every_record_once_without_slicing(simulator_factory):
    sim = simulator_factory(n_records=1200)
    reading = read_concurrently(sim.base_url, concurrency=4, force_full_scan=True)
    assert [stats.mode for stats in reading.pagers] == ["full-scan"]
    assert sorted(reading.ids) == truth_ids(sim)
    assert len(reading.ids) == len(set(reading.ids))


def test_an_api_that_refuses_filters_is_read_by_one_full_scan(simulator_factory):
    sim = simulator_factory(n_records=1200, faults=Faults(refuse_range_filters=True))
    reading = read_concurrently(sim.base_url, concurrency=4)
    assert [stats.mode for stats in reading.pagers] == ["full-scan"]
    assert sorted(set(reading.ids)) == truth_ids(sim)


def test_a_slice_that_loses_its_ordering_sends_the_whole_range_to_the_fallback(
    simulator_factory,
):
    sim = simulator_factory(n_records=1500)
    switched = threading.Event()
    reading = Reading()

    def on_pager(stats: PagingStats) -> None:
        # the plan is made (its probes succeeded); from now on the API refuses ordering
        if not switched.is_set():
            sim.faults = Faults(refuse_order_by=True)
            switched.set()
        reading.on_pager(stats)

    with client_for(sim.base_url) as client:
        pages = pages_of(client, page_size=50, concurrency=3, on_pager=on_pager)
        reading.read(pages)
    assert switched.is_set()
    fallback = reading.pagers[-1]
    assert fallback.mode == "full-scan"
    assert "order" in (fallback.fallback_reason or "")
    # pages a slice yielded before the failure may come again (the merge on `id` dedups)
    assert sorted(set(reading.ids)) == truth_ids(sim)
    wait_for_slice_threads_to_end()

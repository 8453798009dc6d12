"""Keyset paging against the simulator: ties, buckets, fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.quorum.client import QuorumClient
from pipelines.quorum.paging import Pager
from pipelines.simulator import Faults
from tests.conftest import API_KEY, API_USER

START = datetime(2000, 1, 1, tzinfo=UTC)


def read_all(base_url: str, page_size: int, **kwargs) -> tuple[list[int], Pager]:
    with QuorumClient(base_url, API_USER, API_KEY, backoff_initial=0.01) as client:
        pager = Pager(client, START, page_size=page_size, **kwargs)
        ids = [record["id"] for page in pager for record in page]
    return ids, pager


def test_every_record_once_with_small_pages_and_ties(simulator_factory):
    sim = simulator_factory(n_records=1200)
    ids, pager = read_all(sim.base_url, page_size=10)
    assert sorted(ids) == sorted(r["id"] for r in sim.world.ground_truth())
    assert len(ids) == len(set(ids))
    assert pager.stats.mode == "keyset"


def test_one_instant_larger_than_a_page_is_read_as_a_bucket(simulator_factory):
    sim = simulator_factory(n_records=900)
    everything = [r["id"] for r in sim.world.ground_truth()]
    touched = sim.world.touch(ids=everything[:700])  # all get the same `updated`
    assert len(touched) == 700
    ids, pager = read_all(sim.base_url, page_size=100)
    assert sorted(ids) == sorted(everything)
    assert len(ids) == len(set(ids))
    # a bucket read costs about one pass over the instant, not one request per record
    assert pager.stats.pages < 40


def test_ignored_order_by_is_detected_and_the_full_scan_is_exact(simulator_factory):
    sim = simulator_factory(n_records=800, faults=Faults(ignore_order_by=True))
    ids, pager = read_all(sim.base_url, page_size=100)
    assert pager.stats.mode == "full-scan"
    assert "order_by" in (pager.stats.fallback_reason or "")
    assert sorted(set(ids)) == sorted(r["id"] for r in sim.world.ground_truth())


def test_refused_filters_fall_back_to_offset_paging_in_id_order(simulator_factory):
    sim = simulator_factory(n_records=800, faults=Faults(refuse_range_filters=True))
    ids, pager = read_all(sim.base_url, page_size=100)
    assert pager.stats.mode == "full-scan"
    assert ids == sorted(r["id"] for r in sim.world.ground_truth())
    assert pager.stats.notes, "offset paging should be noted in the summary"

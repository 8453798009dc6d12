"""Small changes update the derived state and the cached orderings in place, exactly as a
full recompute and re-sort would give them (over real HTTP, page by page)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pipelines.simulator import SimulatorServer, World, query
from pipelines.simulator.schema import Rows
from pipelines.simulator.state import ROW_FIELDS, derive, field_values
from tests.simulator.conftest import KEY, USER, Api

N = 3000
GTE = ("updated__gte", "2026-10-20T00:00:00Z")
# The orderings the sync asks for (window probes, keyset paging, buckets), and a few with
# many ties on the first key, where the later keys place a changed row.
ORDERS: list[query.Order] = [
    (("updated", False),),
    (("updated", True),),
    (("updated", False), ("id", False)),
    (("id", False),),
    (("opens", True),),
    (("current_status", False), ("updated", True)),
    (("send_time", False), ("opens", False)),
    (("created", True),),
]
# Listings read to the end, 250 records a page.
LISTINGS: list[list[tuple[str, Any]]] = [
    [("order_by", "updated"), GTE],
    [("order_by", "updated"), ("order_by", "id"), GTE],
    [("order_by", "id")],
    [("order_by", "-opens"), ("current_status", 3)],
    [("order_by", "current_status"), ("order_by", "-updated")],
]
# The window probe: the newest record only.
PROBE = [("order_by", "-updated"), ("limit", 1)]

Change = Callable[[World, Api], None]


def fill_cache(world: World) -> None:
    """Ask for every ordering, so each change has cached orderings to update."""
    for order in ORDERS:
        world.query([], list(order), 0, 1)


def assert_same_as_a_full_sort(world: World, step: str) -> None:
    """The world's derived state and each cached ordering equal a recompute from scratch."""
    fill_cache(world)  # a no-op for orderings still cached; sorts those a recompute dropped
    state = world._state()
    fresh = derive(world._store, world.now_us, world.catalog.camp_time)
    for name in ROW_FIELDS:
        assert np.array_equal(getattr(state, name), getattr(fresh, name)), (step, name)
    assert np.array_equal(state.base, fresh.base), step

    def values(field: str, rows: Rows) -> tuple[np.ndarray, npt.NDArray[np.bool_] | None]:
        return field_values(world._store, fresh, field, rows)

    for order in ORDERS:
        rows, primary = world._sort_cache[query.full_keys(order)]
        want_rows, want_primary = query.sorted_rows(fresh.base, order, values, {})
        assert np.array_equal(rows, want_rows), (step, order)
        assert np.array_equal(primary, want_primary), (step, order)


def ids_of(world: World, picks: list[int]) -> list[int]:
    """Ids of visible records at the given places of the id order (a stable choice)."""
    base = world._state().base
    return [int(world._store["id"][base[p]]) for p in picks]


def touch_share(world: World, api: Api) -> None:
    assert api.post("/_simulator/touch", {"fraction": 0.01}).status_code == 200


def touch_again(world: World, api: Api) -> None:
    # Records touched twice at one clock keep their keys; others move for the first time.
    touched = api.post("/_simulator/touch", {"fraction": 0.004}).json()["ids"]
    again = touched[:5] + ids_of(world, [0, 1, 2, N // 2])
    assert api.post("/_simulator/touch", {"ids": again}).status_code == 200


def delete_some(world: World, api: Api) -> None:
    doomed = ids_of(world, [3, 10, N // 3, N - 20])
    assert api.post("/_simulator/delete", {"ids": doomed}).status_code == 200


def send_texts(world: World, api: Api) -> None:
    for supporter, text in zip(world.supporter_ids()[:3], ("one", "two", "three"), strict=True):
        world.send_individual_sms(supporter, text)
    # A record created now and touched at once: new to the store and changed in one update.
    world.touch(ids=[world._next_id - 1])


def advance_hours(world: World, api: Api) -> None:
    # Eight hours: a few rows reach their next change (an open, a conversion, ...).
    assert api.post("/_simulator/advance", {"hours": 8}).status_code == 200


def advance_a_day(world: World, api: Api) -> None:
    # Too many rows change for the default share; with a share of 1 it goes in place.
    assert api.post("/_simulator/advance", {"days": 1}).status_code == 200


def advance_into_new_weeks(world: World, api: Api) -> None:
    # Future weeks are generated: rows new to the store, new campaigns, records given ids.
    assert api.post("/_simulator/advance", {"days": 9}).status_code == 200


def touch_delete_and_send_together(world: World, api: Api) -> None:
    world.touch(fraction=0.005)
    world.delete(ids_of(world, [7, 8]))
    world.send_individual_sms(world.supporter_ids()[5], "together")


def mutate_between_pages(world: World, api: Api) -> None:
    # The clock moves (a full recompute), then records change and appear (small changes).
    world.mutate(ids_of(world, [40, 41, 42]), n_create=4, seed=11)


SMALL: list[tuple[str, Change]] = [
    ("touch", touch_share),
    ("touch again", touch_again),
    ("delete", delete_some),
    ("send", send_texts),
    ("touch, delete and send", touch_delete_and_send_together),
    ("advance hours", advance_hours),
]
LARGE: list[tuple[str, Change]] = [
    ("advance a day", advance_a_day),
    ("advance into new weeks", advance_into_new_weeks),
    ("mutate", mutate_between_pages),
]


@pytest.fixture
def served() -> Iterator[tuple[World, Api]]:
    world = World(seed=7, n_records=N)
    with SimulatorServer(world, username=USER, api_key=KEY) as server:
        api = Api(server.base_url)
        yield world, api
        api.close()


@pytest.mark.parametrize(("name", "change"), SMALL)
def test_a_small_change_updates_in_place_exactly_as_a_full_sort(
    served: tuple[World, Api], name: str, change: Change
) -> None:
    world, api = served
    fill_cache(world)
    before = world._state()
    change(world, api)
    assert world._state() is before, f"{name} recomputed the world instead of updating it"
    assert_same_as_a_full_sort(world, name)


@pytest.mark.parametrize("share", [World.incremental_share, 1.0])
def test_changes_in_a_row_stay_exact(served: tuple[World, Api], share: float) -> None:
    world, api = served
    world.incremental_share = share
    fill_cache(world)
    for name, change in [*SMALL, *LARGE, *SMALL]:
        before = world._state()
        change(world, api)
        if share == 1.0:
            assert world._state() is before, f"{name} recomputed the world"
        assert_same_as_a_full_sort(world, name)


def test_a_large_change_recomputes(served: tuple[World, Api]) -> None:
    world, _ = served
    fill_cache(world)
    before = world._state()
    world.touch(fraction=0.05)
    assert world._state() is not before, "a large change must recompute"
    assert_same_as_a_full_sort(world, "large touch")


def listing(api: Api, params: list[tuple[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Every object of a listing, page by page, and each page's `total_count`."""
    objects, metas = api.list_all([*params, ("limit", 250)])
    return objects, [meta["total_count"] for meta in metas]


def test_every_page_matches_a_world_that_recomputes_after_each_change() -> None:
    incremental, reference = World(seed=7, n_records=N), World(seed=7, n_records=N)
    reference.incremental_share = 0.0
    with (SimulatorServer(incremental, username=USER, api_key=KEY) as fast,
          SimulatorServer(reference, username=USER, api_key=KEY) as slow):
        fast_api, slow_api = Api(fast.base_url), Api(slow.base_url)
        try:
            steps = [*SMALL, *LARGE, *SMALL[:2]]
            for name, change in steps:
                # Listing first fills the orderings' caches, which the change then updates.
                for params in [*LISTINGS, PROBE]:
                    fast_api.get("/api/sendsms/", params)
                before = incremental._state()
                change(incremental, fast_api)
                change(reference, slow_api)
                if (name, change) in SMALL:
                    assert incremental._state() is before, name
                for params in LISTINGS:
                    got, want = listing(fast_api, params), listing(slow_api, params)
                    assert got[1] == want[1], (name, params)
                    assert got[0] == want[0], (name, params)
                    assert got[0], (name, params)
                probe = fast_api.get("/api/sendsms/", PROBE).json()["objects"]
                assert probe == slow_api.get("/api/sendsms/", PROBE).json()["objects"], name
        finally:
            fast_api.close()
            slow_api.close()


@pytest.mark.parametrize("splice", [query.splice_by_segment, query.splice_by_mask])
def test_both_ways_to_splice_give_what_list_edits_give(
    splice: Callable[..., list[np.ndarray]],
) -> None:
    rng = np.random.default_rng(5)
    for size, changes in [(0, 0), (1, 1), (50, 3), (400, 60), (400, 399)]:
        array = rng.integers(0, 1000, size)
        removed = np.sort(rng.choice(size, min(changes, size), replace=False))
        # Places repeat, fall on removed places, and reach the end.
        at = np.sort(rng.integers(0, size + 1, changes))
        inserts = rng.integers(1000, 2000, changes)
        want: list[int] = []
        for place in range(size + 1):
            want.extend(inserts[at == place].tolist())
            if place < size and place not in removed:
                want.append(int(array[place]))
        (got, doubled) = splice([array, array * 2], removed, at, [inserts, inserts * 2])
        assert got.tolist() == want, (size, changes)
        assert doubled.tolist() == [2 * v for v in want]

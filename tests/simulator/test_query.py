"""A listing read through another ordering's index is exactly the listing its own ordering
gives (`World.query` picks the ordering whose ranges leave the fewest rows, as a database's
planner picks an index)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from pipelines.simulator import World, query
from pipelines.simulator.api import Capabilities, parse_filters, parse_order

N = 4000


@pytest.fixture(scope="module")
def bucketed() -> World:
    """A world where 10 % of the records share one `updated` instant (touched at once)."""
    world = World(seed=11, n_records=N)
    world.touch(fraction=0.1)
    return world


def _instant(world: World) -> str:
    newest = world.query([], [("updated", True)], 0, 1)[1]
    return str(world.render(newest)[0]["updated"])


def _listing(world: World, params: list[tuple[str, str]]) -> tuple[int, list[int]]:
    caps = Capabilities()
    conditions, order = parse_filters(params, caps), parse_order(params, caps)
    total, rows = world.query(conditions, order, 0, 10 * N)
    return total, world.ids(rows)


def _reference(world: World, params: list[tuple[str, str]]) -> tuple[int, list[int]]:
    """The same listing through its own ordering only (masks over every row)."""
    caps = Capabilities()
    conditions, order = parse_filters(params, caps), parse_order(params, caps)
    rows, primary = query.sorted_rows(world._state().base, tuple(order), world.values, {})
    selected = query.select(rows, primary, order, conditions, world.values)
    return len(selected), world.ids(selected)


def _id_at(world: World, place: int) -> str:
    """The id at a place of the id order, as a query parameter."""
    return str(world.ids(world.query([], [], place, 1)[1])[0])


def _cases(world: World) -> list[list[tuple[str, str]]]:
    instant = _instant(world)
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(UTC)
    bucket_end = (moment + timedelta(microseconds=1)).isoformat().replace("+00:00", "Z")
    return [
        # the pager's bucket: one `updated` instant listed by id, from the start and mid-way
        [("order_by", "id"), ("updated__gte", instant), ("updated__lt", bucket_end)],
        [("order_by", "id"), ("updated__gte", instant), ("updated__lt", bucket_end),
         ("id__gt", "0")],
        [("order_by", "id"), ("updated__gte", instant), ("updated__lt", bucket_end),
         ("id__gt", _id_at(world, N // 2))],
        # ranges too wide for the other index, and other orderings
        [("order_by", "id"), ("updated__gte", "2026-10-01T00:00:00Z")],
        [("order_by", "-opens"), ("updated__gte", instant)],
        [("order_by", "current_status"), ("order_by", "-updated"), ("updated__lte", instant)],
        [("updated__gte", instant), ("current_status", "3")],
        [("order_by", "updated"), ("id__gt", "0"), ("id__lt", "2000000000")],
        [("order_by", "-updated"), ("id__gte", _id_at(world, N - 5))],
    ]


def test_every_listing_equals_the_one_its_own_ordering_gives(bucketed: World) -> None:
    cases = _cases(bucketed)
    for params in cases:
        assert _listing(bucketed, params) == _reference(bucketed, params), params
    bucket = _listing(bucketed, cases[0])
    assert bucket[0] >= N // 10  # the touched records, listed by id
    assert bucket[1] == sorted(bucket[1])


def test_the_bucket_is_read_through_the_updated_index(
    bucketed: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket never masks every row of the id ordering (the cost that grew with the
    world: ~30 ms a page at 10M records)."""
    masked: list[int] = []
    real_mask = query.mask

    def counting_mask(cond: Any, rows: np.ndarray, values: Any) -> Any:
        masked.append(len(rows))
        return real_mask(cond, rows, values)

    monkeypatch.setattr(query, "mask", counting_mask)
    total, _ = _listing(bucketed, _cases(bucketed)[2])
    assert total and max(masked) <= N // 10 + 1, masked

"""Small changes of the world applied in place: the derived state and every cached ordering
catch up with a few changed rows without recomputing or re-sorting the world.

A real server keeps indexes; this is the simulator's equivalent. After `touch`, `delete`, new
records or a short move of the clock (the rows whose `next_change` came), only the changed
rows get their state recomputed, and each cached ordering
(`query.sorted_rows`) loses the changed rows at their old places and gets the visible ones
back at their new places, found by binary search. The result is exactly the order a full
sort gives; the cost is the changed rows plus one contiguous copy of each ordering.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipelines.simulator import query
from pipelines.simulator.schema import I64, Rows, Store
from pipelines.simulator.state import Derived, field_values, get_rows, grow, row_state, set_rows

BY_ID: query.Order = (("id", False),)


def apply_change(store: Store, derived: Derived, cache: query.SortCache, changed: Rows,
                 now: int, camp_time: I64) -> None:
    """Bring `derived` and `cache` up to date after a change of exactly the rows `changed`.

    Only these rows may differ from the state `derived` was made for: their plan, their
    visibility (deleted, or given an id), they are new to the store, or the clock reached
    their `next_change`. Every other row must have the same state at `now` as before.

    Args:
        store: the world's records, already changed.
        derived: the state before the change; updated in place (`base` included).
        cache: the sort cache of that state; every ordering in it is updated in place.
        changed: the changed store rows, ascending and unique.
        now: the clock.
        camp_time: each campaign's scheduled time.
    """
    was_known = changed[changed < len(derived.updated)]
    grow(derived, store.n)
    before = get_rows(derived, was_known)
    after = row_state(store, changed, now, camp_time)

    def values(field: str, rows: Rows) -> tuple[np.ndarray, npt.NDArray[np.bool_] | None]:
        return field_values(store, derived, field, rows)

    # The id ordering is the visible rows themselves (`base`); keep it in the cache to update.
    cache.setdefault(BY_ID, (derived.base, store["id"][derived.base]))
    visible = changed[(store["id"][changed] >= 0) & store["alive"][changed]]
    # The new places of the changed rows are keyed by their new state...
    set_rows(derived, changed, after)
    new_keys = {keys: [query.sort_key(f, d, visible, values) for f, d in keys] for keys in cache}
    # ...but searched for, like their old places, among the orderings as they were sorted.
    set_rows(derived, was_known, before)
    moves = {keys: _moves(rows, primary, keys, was_known, visible, new_keys[keys], values)
             for keys, (rows, primary) in cache.items()}
    set_rows(derived, changed, after)
    for keys, (removed, at, inserts, primary_inserts) in moves.items():
        if not len(removed) and not len(at):
            continue
        rows, primary = cache[keys]
        new_rows, new_primary = query.splice(
            [rows, primary], removed, at, [inserts, primary_inserts]
        )
        cache[keys] = (new_rows, new_primary)
    derived.base = cache[BY_ID][0]


def _moves(rows: Rows, primary: I64, keys: query.Order, was_known: Rows, visible: Rows,
           new_keys: list[I64], values: query.Values) -> tuple[I64, I64, Rows, I64]:
    """Where the changed rows leave the ordering and where the visible ones enter it.

    Rows whose keys did not change (the id ordering after a touch) neither leave nor enter.

    Returns:
        The places to remove (ascending), the places to insert before (ascending), the rows to
        insert in that order, and their primary keys.
    """
    old_keys = [query.sort_key(f, d, was_known, values) for f, d in keys]
    found = query.locate(rows, primary, keys, old_keys, values)
    inside = found < len(rows)
    # A changed row that was not visible (new, or deleted before) is not in the ordering.
    present = inside.copy()
    present[inside] = rows[found[inside]] == was_known[inside]
    # `visible` is a subset of the ascending `changed`, like `was_known`: match them by row.
    match = np.minimum(np.searchsorted(visible, was_known), max(len(visible) - 1, 0))
    stays = present & (visible[match] == was_known) if len(visible) else present & False
    for old, new in zip(old_keys, new_keys, strict=True):
        stays[stays] = old[stays] == new[match[stays]]
    moving = np.ones(len(visible), np.bool_)
    moving[match[stays]] = False
    removed = np.sort(found[present & ~stays])
    # Inserts sorted by their keys, so those that share a place go in in the right order.
    among = np.flatnonzero(moving)[np.lexsort([key[moving] for key in new_keys[::-1]])]
    columns = [column[among] for column in new_keys]
    at = query.locate(rows, primary, keys, columns, values)
    return removed, at, visible[among], columns[0]

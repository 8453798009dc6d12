"""Queries over the visible records: ordering, filtering (tastypie/Django semantics), paging.

Pure functions over row numbers: `values(field, rows)` supplies a field's values (see
`state.field_values`), so this module knows nothing of how the world stores them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.simulator.schema import I64, INT_FIELDS, TIME_FIELDS, Condition, Rows

Values = Callable[[str, Rows], tuple[np.ndarray, npt.NDArray[np.bool_] | None]]
Order = tuple[tuple[str, bool], ...]
SortCache = dict[Order, tuple[Rows, I64]]


def full_keys(order: Order) -> Order:
    """The keys a listing is really sorted by: `order`, then `id` unless it is already there."""
    if any(field == "id" for field, _ in order):
        return tuple(order)
    return (*order, ("id", False))


def sort_key(field: str, desc: bool, rows: Rows, values: Values) -> I64:
    """`field` of `rows` as an ascending int64 sort key (negated for a descending field)."""
    vals = values(field, rows)[0].astype(np.int64)
    return -vals if desc else vals


def sorted_rows(base: Rows, order: Order, values: Values, cache: SortCache
                ) -> tuple[Rows, I64]:
    """Visible rows in `order` (id breaks ties) and the primary key's values, ascending.

    `cache` is kept by the caller, keyed by `full_keys(order)` (so `updated` and
    `updated,id` share one entry); whenever the world changes the caller must clear it or
    update every entry (`changes.apply_change`).
    """
    keys = full_keys(order)
    cached = cache.get(keys)
    if cached is not None:
        return cached
    if keys[0] == ("id", False):
        rows = base
    else:
        columns = [sort_key(field, desc, base, values) for field, desc in reversed(keys)]
        rows = base[np.lexsort(columns)]
    field, desc = keys[0]
    primary = sort_key(field, desc, rows, values)
    cache[keys] = (rows, primary)
    return rows, primary


def locate(rows: Rows, primary: I64, keys: Order, columns: Sequence[I64], values: Values
           ) -> I64:
    """Where each key tuple goes in `rows` (sorted by `keys`): the number of rows below it.

    Args:
        rows: an order as `sorted_rows` makes it; `primary` its first key (`sort_key`).
        keys: the full keys of the order (`full_keys`).
        columns: one `sort_key` column per key, the tuples to place side by side.
        values: field values of `rows` consistent with the order (the state it was made in).
    """
    lo = np.searchsorted(primary, columns[0], "left")
    hi = np.searchsorted(primary, columns[0], "right")
    # [lo, hi) holds the rows equal to each tuple on the keys so far; the next key is sorted
    # within that range, so a binary search on it narrows the range again.
    for (field, desc), target in zip(keys[1:], columns[1:], strict=True):
        if not (hi > lo).any():
            break
        first = _bound(rows, lo, hi, target, field, desc, values, right=False)
        hi = _bound(rows, lo, hi, target, field, desc, values, right=True)
        lo = first
    return lo


def _bound(rows: Rows, lo: I64, hi: I64, target: I64, field: str, desc: bool, values: Values,
           right: bool) -> I64:
    """Per tuple, the first place in its range [lo, hi) of `rows` whose key is above
    `target` (`right`) or not below it; every tuple's binary search runs side by side."""
    lo, hi = lo.copy(), hi.copy()
    active = np.flatnonzero(lo < hi)
    while len(active):
        mid = (lo[active] + hi[active]) // 2
        key = sort_key(field, desc, rows[mid], values)
        after = key <= target[active] if right else key < target[active]
        lo[active] = np.where(after, mid + 1, lo[active])
        hi[active] = np.where(after, hi[active], mid)
        active = active[lo[active] < hi[active]]
    return lo


# Above this many removals and inserts, `splice` copies by masks (a few passes over the
# arrays) rather than segment by segment (one pass, but a Python step per change).
SPLICE_STEPS_BY_SEGMENT = 50_000


def splice(arrays: Sequence[np.ndarray], removed: I64, at: I64, inserts: Sequence[np.ndarray]
           ) -> list[np.ndarray]:
    """Copies of the parallel `arrays` without the places `removed` and with `inserts` added.

    Args:
        arrays: equally long arrays, changed alike (an order and its keys).
        removed: places to drop, ascending.
        at: for each inserted element, the place it goes before (the length: at the end),
            ascending; elements with the same place go in the order given.
        inserts: the elements to insert, one array per array of `arrays`, in the order of `at`.
    """
    if len(removed) + len(at) > SPLICE_STEPS_BY_SEGMENT:
        return splice_by_mask(arrays, removed, at, inserts)
    return splice_by_segment(arrays, removed, at, inserts)


def splice_by_segment(arrays: Sequence[np.ndarray], removed: I64, at: I64,
                      inserts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`splice` in one pass of contiguous copies, a Python step per removal or insert."""
    size = len(arrays[0]) - len(removed) + len(at)
    out = [np.empty(size, dtype=array.dtype) for array in arrays]
    places = np.concatenate([at, removed])
    # At one place the inserts go first: they belong before the element that is dropped.
    steps = np.concatenate([np.arange(len(at)), np.full(len(removed), -1)])
    in_order = np.lexsort((steps < 0, places))
    src = dst = 0
    for place, step in zip(places[in_order].tolist(), steps[in_order].tolist(), strict=True):
        if place > src:
            span = place - src
            for target, array in zip(out, arrays, strict=True):
                target[dst : dst + span] = array[src:place]
            dst, src = dst + span, place
        if step >= 0:
            for target, values in zip(out, inserts, strict=True):
                target[dst] = values[step]
            dst += 1
        else:
            src += 1
    for target, array in zip(out, arrays, strict=True):
        target[dst:] = array[src:]
    return out


def splice_by_mask(arrays: Sequence[np.ndarray], removed: I64, at: I64,
                   inserts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`splice` by boolean masks: a few vectorised passes, whatever the number of changes."""
    size = len(arrays[0]) - len(removed) + len(at)
    kept = np.ones(len(arrays[0]), np.bool_)
    kept[removed] = False
    # An insert lands after the kept elements before its place and the inserts before it.
    landing = at - np.searchsorted(removed, at, "left") + np.arange(len(at))
    free = np.ones(size, np.bool_)
    free[landing] = False
    out = []
    for array, values in zip(arrays, inserts, strict=True):
        target = np.empty(size, dtype=array.dtype)
        target[landing] = values
        target[free] = array[kept]
        out.append(target)
    return out


def select(
    rows: Rows,
    primary: I64,
    order: Sequence[tuple[str, bool]],
    conditions: Sequence[Condition],
    values: Values,
) -> Rows:
    """The rows (already in `order`, primary key values `primary`) that meet every condition.

    Range conditions on the primary ordering key are answered by binary search; the rest by
    masks over what remains.
    """
    key = order[0] if order else ("id", False)
    lo, hi = span(primary, key, conditions)
    remaining = [cond for cond in conditions if not _narrowable(cond, key[0])]
    selected = rows[lo:hi] if hi > lo else rows[:0]
    for cond in remaining:
        if not len(selected):
            break
        selected = selected[mask(cond, selected, values)]
    return selected


def _narrowable(cond: Condition, field: str) -> bool:
    """Whether `cond` is a range on `field` that a binary search on its ordering answers."""
    return (
        cond.field == field
        and cond.op in ("exact", "gt", "gte", "lt", "lte")
        and (field in INT_FIELDS or field in TIME_FIELDS)
        and cond.value is not None
    )


def span(primary: I64, field_desc: tuple[str, bool], conditions: Sequence[Condition]
         ) -> tuple[int, int]:
    """The `[lo, hi)` of an ordering (primary key values `primary`) that its range
    conditions leave: what `select` reads before its masks."""
    field, desc = field_desc
    lo, hi = 0, len(primary)
    for cond in conditions:
        if not _narrowable(cond, field):
            continue
        value = -int(cond.value) if desc else int(cond.value)
        op = cond.op
        if desc:
            op = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}.get(op, op)
        if op in ("gt", "gte", "exact"):
            lo = max(lo, int(np.searchsorted(primary, value, "right" if op == "gt" else "left")))
        if op in ("lt", "lte", "exact"):
            hi = min(hi, int(np.searchsorted(primary, value, "left" if op == "lt" else "right")))
    return lo, max(lo, hi)


def in_order(rows: Rows, order: Order, values: Values) -> Rows:
    """`rows` sorted by `order`, `id` breaking ties: as `sorted_rows` would list them."""
    keys = full_keys(order)
    return rows[np.lexsort([sort_key(field, desc, rows, values) for field, desc in reversed(keys)])]


def mask(cond: Condition, rows: Rows, values: Values) -> npt.NDArray[np.bool_]:
    """Which of `rows` meet `cond`."""
    vals, null = values(cond.field, rows)
    present = ~null if null is not None else np.ones(len(rows), np.bool_)
    op, value = cond.op, cond.value
    if op == "isnull":
        isnull = ~present
        return isnull if value else ~isnull
    if op == "exact" and value is None:
        return ~present
    if op in ("exact", "gt", "gte", "lt", "lte") and vals.dtype != object:
        compare = {
            "exact": np.equal,
            "gt": np.greater,
            "gte": np.greater_equal,
            "lt": np.less,
            "lte": np.less_equal,
        }[op]
        return compare(vals, value) & present
    if op == "in" and vals.dtype != object:
        return np.isin(vals, np.asarray(value, dtype=vals.dtype)) & present
    # Everything else is decided on the distinct values, as text (like a SQL cast).
    distinct = np.unique(vals[present])
    keep = [v for v in distinct.tolist() if _text_match(op, _as_text(v), value)]
    return np.isin(vals, np.asarray(keep, dtype=vals.dtype)) & present


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text_match(op: str, text: str, value: Any) -> bool:
    if op == "in":
        return text in {_as_text(v) for v in value}
    needle = _as_text(value)
    if op in ("iexact", "icontains", "istartswith", "iendswith"):
        text, needle = text.casefold(), needle.casefold()
        op = op[1:]
    if op == "exact":
        return text == needle
    if op == "contains":
        return needle in text
    if op == "startswith":
        return text.startswith(needle)
    if op == "endswith":
        return text.endswith(needle)
    if op == "gt":
        return text > needle
    if op == "gte":
        return text >= needle
    if op == "lt":
        return text < needle
    if op == "lte":
        return text <= needle
    raise ValueError(op)

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


def sorted_rows(base: Rows, order: Order, values: Values, cache: SortCache
                ) -> tuple[Rows, I64]:
    """Visible rows in `order` (id breaks ties) and the primary key's values, ascending.

    `cache` is kept by the caller and must be cleared whenever the world changes.
    """
    cached = cache.get(order)
    if cached is not None:
        return cached
    keys = list(order)
    if not any(field == "id" for field, _ in keys):
        keys.append(("id", False))
    if keys[0] == ("id", False):
        rows = base
    else:
        columns = []
        for field, desc in reversed(keys):
            vals = values(field, base)[0].astype(np.int64)
            columns.append(-vals if desc else vals)
        rows = base[np.lexsort(columns)]
    field, desc = keys[0]
    primary = values(field, rows)[0].astype(np.int64)
    primary = -primary if desc else primary
    cache[order] = (rows, primary)
    return rows, primary


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
    key_field, desc = order[0] if order else ("id", False)
    lo, hi = 0, len(rows)
    remaining: list[Condition] = []
    for cond in conditions:
        narrow = (
            cond.field == key_field
            and cond.op in ("exact", "gt", "gte", "lt", "lte")
            and (cond.field in INT_FIELDS or cond.field in TIME_FIELDS)
            and cond.value is not None
        )
        if not narrow:
            remaining.append(cond)
            continue
        value = -int(cond.value) if desc else int(cond.value)
        op = cond.op
        if desc:
            op = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}.get(op, op)
        if op in ("gt", "gte", "exact"):
            at = np.searchsorted(primary, value, "right" if op == "gt" else "left")
            lo = max(lo, int(at))
        if op in ("lt", "lte", "exact"):
            at = np.searchsorted(primary, value, "left" if op == "lt" else "right")
            hi = min(hi, int(at))
    selected = rows[lo:hi] if hi > lo else rows[:0]
    for cond in remaining:
        if not len(selected):
            break
        selected = selected[mask(cond, selected, values)]
    return selected


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

"""The state of every record at the clock, derived from the plans with vectorised comparisons.

Moving the clock is cheap because nothing is stored per moment: status, opens, `updated` and the
rest are recomputed from the plan (once per world version) when a query needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.simulator import pools
from pipelines.simulator.schema import (
    CAMPAIGN_BASE,
    I64,
    INBOUND,
    QUEUED,
    RECEIVED,
    SENT,
    Rows,
    Store,
)
from pipelines.simulator.timefmt import NEVER, NO_TIME

_ORG_NUMBERS = np.asarray(pools.ORG_NUMBERS, dtype=object)


@dataclass
class Derived:
    """The state of every row at the clock, for one world version."""

    updated: I64
    status: npt.NDArray[np.int8]
    opens: I64
    converted: npt.NDArray[np.bool_]
    archived: npt.NDArray[np.bool_]
    send_time: I64
    sent_at: I64  # sent time if it happened, else NEVER
    final_at: I64
    next_change: I64  # the first time after the clock when the row's state changes, or NEVER
    base: Rows  # visible rows sorted by id


# The fields of `Derived` that hold one value per store row.
ROW_FIELDS = ("updated", "status", "opens", "converted", "archived", "send_time", "sent_at",
              "final_at", "next_change")


def derive(store: Store, now: int, camp_time: I64) -> Derived:
    """Every row's state at `now` (µs); `camp_time` is each campaign's scheduled time."""
    cols = row_state(store, slice(None), now, camp_time)
    visible = np.flatnonzero((store["id"] >= 0) & store["alive"])
    base = visible[np.argsort(store["id"][visible], kind="stable")]
    return Derived(**cols, base=base)


def grow(derived: Derived, size: int) -> None:
    """Lengthen every per-row column to `size` rows (rows new to the store; fill them with
    `set_rows`)."""
    if size <= len(derived.updated):
        return
    for name in ROW_FIELDS:
        old = getattr(derived, name)
        grown = np.zeros(size, dtype=old.dtype)
        grown[: len(old)] = old
        setattr(derived, name, grown)


def get_rows(derived: Derived, rows: Rows) -> dict[str, np.ndarray]:
    """The per-row state fields of `rows` as `derived` holds them (copies)."""
    return {name: getattr(derived, name)[rows] for name in ROW_FIELDS}


def set_rows(derived: Derived, rows: Rows, fields: dict[str, np.ndarray]) -> None:
    """Overwrite the per-row state of `rows` with `fields` (as `row_state` returns them)."""
    for name, values in fields.items():
        getattr(derived, name)[rows] = values


def row_state(store: Store, rows: Rows | slice, now: int, camp_time: I64
              ) -> dict[str, np.ndarray]:
    """The per-row state fields (`ROW_FIELDS`) of `rows` at `now`, by name; a full slice
    computes every row without copying the plan."""

    def col(name: str) -> np.ndarray:
        return store[name][rows]

    created = col("created")
    sent, final, first, gap = col("sent"), col("final"), col("first_open"), col("open_gap")
    conv, arch = col("conv"), col("arch")
    sent_at = np.where(sent <= now, sent, NEVER)
    final_at = np.where(final <= now, final, NEVER)
    started = first <= now
    opened = np.where(
        started, np.minimum((now - np.minimum(first, now)) // gap + 1, col("n_opens")), 0
    )
    last_open = np.where(opened > 0, first + (opened - 1) * gap, NO_TIME)
    conv_ok = conv <= now
    arch_ok = arch <= now
    # `updated` is the latest change that has happened by now.
    updated = created.copy()
    np.maximum(updated, np.where(sent_at != NEVER, sent_at, NO_TIME), out=updated)
    np.maximum(updated, np.where(final_at != NEVER, final_at, NO_TIME), out=updated)
    np.maximum(updated, last_open, out=updated)
    np.maximum(updated, np.where(conv_ok, conv, NO_TIME), out=updated)
    np.maximum(updated, np.where(arch_ok, arch, NO_TIME), out=updated)
    np.maximum(updated, col("touch"), out=updated)
    status = np.where(
        col("kind") == INBOUND,
        RECEIVED,
        np.where(final_at != NEVER, col("fstatus"), np.where(sent_at != NEVER, SENT, QUEUED)),
    ).astype(np.int8)
    camp = col("camp")
    camp_at = camp_time[np.maximum(camp, 0)] if len(camp_time) else created
    send_time = np.where(camp >= 0, camp_at, created)
    # Lets the clock move without recomputing every row: only rows whose time has come change.
    next_change = np.where(opened < col("n_opens"), first + opened * gap, NEVER)
    for when in (created, sent, final, conv, arch):
        np.minimum(next_change, np.where(when > now, when, NEVER), out=next_change)
    return {
        "updated": updated,
        "status": status,
        "opens": (opened + col("extra_opens")).astype(np.int64),
        "converted": conv_ok,
        "archived": arch_ok,
        "send_time": send_time,
        "sent_at": sent_at,
        "final_at": final_at,
        "next_change": next_change,
    }




def field_values(
    store: Store, derived: Derived, field: str, rows: Rows
) -> tuple[np.ndarray, npt.NDArray[np.bool_] | None]:
    """Values of a filterable/orderable field for `rows`, with a null mask (or None).

    Raises:
        KeyError: for a field that cannot be filtered or ordered on.
    """
    s, d = store, derived
    if field == "id":
        return s["id"][rows], None
    if field in ("created", "timestamp"):
        return s["created"][rows], None
    if field == "updated":
        return d.updated[rows], None
    if field == "send_time":
        return d.send_time[rows], None
    if field == "opens":
        return d.opens[rows], None
    if field == "current_status":
        return d.status[rows].astype(np.int64), None
    if field == "archived":
        return d.archived[rows], None
    if field == "converted":
        return d.converted[rows], None
    if field == "associated_number":
        return _ORG_NUMBERS[s["num"][rows]], None
    if field in ("bulk_sms", "bulk_sms_id"):
        camp = s["camp"][rows].astype(np.int64)
        return np.where(camp >= 0, CAMPAIGN_BASE + camp, -1), camp < 0
    raise KeyError(field)

"""The shape of the simulated world: constants, the columns of a record's plan, their store.

A record's *plan* is one row of numpy columns: when it is created (queued), sent, reaches its
final status, each link open, its conversion and its archiving, in int64 microseconds since
the epoch. Everything else is derived from the plan and the clock (see `state.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Rows = npt.NDArray[np.int64]
Batch = dict[str, np.ndarray]

DEFAULT_START = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
HISTORY_DAYS = 30
CHUNK_DAYS = 7
ID_BASE = 100_000
SUPPORTER_BASE = 880_000
CAMPAIGN_BASE = 4_000

CAMPAIGN, INDIVIDUAL, INBOUND = 0, 1, 2
QUEUED, SENT, DELIVERED, UNDELIVERED, FAILED, REJECTED, RECEIVED = 1, 2, 3, 4, 5, 6, 7
OUTBOUND_DIRECTION, INBOUND_DIRECTION = 2, 1

# Columns of a record's plan, with their dtypes.
COLUMNS: dict[str, Any] = {
    "id": np.int64,  # -1 until the clock reaches `created`
    "created": np.int64,
    "kind": np.int8,  # CAMPAIGN, INDIVIDUAL, INBOUND
    "camp": np.int32,  # campaign index or -1
    "sup": np.int32,  # supporter index
    "msg": np.int32,  # index into Catalog.messages
    "num": np.int8,  # index into pools.ORG_NUMBERS
    "sent": np.int64,
    "final": np.int64,
    "fstatus": np.int8,  # final status, 0 when the text stays "sent"
    "err": np.int16,  # index into pools.ERRORS or -1
    "first_open": np.int64,
    "open_gap": np.int64,
    "n_opens": np.int16,
    "conv": np.int64,
    "arch": np.int64,
    "touch": np.int64,  # last touch() of the record, NO_TIME if never
    "extra_opens": np.int32,
    "alive": np.bool_,
    "fmt": np.uint8,  # timestamp form seed, 0..3
    "whole": np.bool_,  # every time of the record is a whole second
    "flags": np.uint8,  # optional event keys: 1 provider_sid, 2 price, 4 carrier on rejected
    "uuid_hi": np.uint64,
    "uuid_lo": np.uint64,
    "extra": np.int8,  # _extra variant
    "rcpt": np.int8,  # rcpt_dict variant
}
TIME_COLUMNS = ("created", "sent", "final", "first_open", "open_gap", "conv", "arch")

# Fields that can be filtered or ordered on, and how their values are typed.
INT_FIELDS = frozenset({"id", "opens", "current_status"})
TIME_FIELDS = frozenset({"created", "updated", "timestamp", "send_time"})
BOOL_FIELDS = frozenset({"archived", "converted"})


@dataclass
class Condition:
    """One parsed filter: `field`, a qualifier (`exact`, `in`, `gt`, ...) and a typed value."""

    field: str
    op: str
    value: Any


class Store:
    """Growable columns (amortised append) holding the plan of every record, row by row."""

    def __init__(self) -> None:
        """An empty store with every column of `COLUMNS`."""
        self.n = 0
        self.cap = 0
        self.cols: dict[str, np.ndarray] = {k: np.empty(0, dtype=t) for k, t in COLUMNS.items()}

    def append(self, batch: Batch) -> None:
        """Append the rows of a complete plan (every column of `COLUMNS`)."""
        size = len(batch["created"])
        if self.cap == 0:
            # The first batch is the whole past: adopt its arrays rather than copy millions.
            self.cols = {k: np.ascontiguousarray(batch[k], dtype=t) for k, t in COLUMNS.items()}
            self.n = self.cap = size
            return
        if self.n + size > self.cap:
            # 1.25x keeps appends amortised O(1) without doubling a world of millions.
            cap = max(1024, self.cap + self.cap // 4, self.n + size)
            for key, arr in self.cols.items():
                grown = np.empty(cap, dtype=arr.dtype)
                grown[: self.n] = arr[: self.n]
                self.cols[key] = grown
            self.cap = cap
        for key, arr in self.cols.items():
            arr[self.n : self.n + size] = batch[key]
        self.n += size

    def __getitem__(self, key: str) -> np.ndarray:
        return self.cols[key][: self.n]

    def nbytes(self) -> int:
        """Bytes held by the columns (capacity included)."""
        return sum(arr.nbytes for arr in self.cols.values())


def concat(batches: list[Batch]) -> Batch:
    """The rows of `batches` one after the other (every batch has the same keys)."""
    keys = batches[0].keys()
    return {k: np.concatenate([b[k] for b in batches]) for k in keys}

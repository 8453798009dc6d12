"""The record versions the warehouse already holds, so a re-read of one is not loaded again.

Each run starts its read the lag window (an hour by default) before the saved cursor, so
records the API committed late are not missed. Most of what that hour returns is records the
last run loaded, unchanged: `updated` moves forward on every change of a record (the
contract), so a record whose `id` and `updated` are the stored ones is the stored row. Loading
it again would delete and re-insert its row and its event rows, and mark it changed for the
incremental model build, for nothing. `StoredVersions` holds the stored `(id, updated)` of the
window, and `drop_unchanged` takes those rows out of a page before dlt sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from pipelines.quorum.rejects import SplitPage

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_microseconds(value: datetime) -> int:
    """`value` (naive means UTC) as whole microseconds since 1970, exactly."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class StoredVersions:
    """The `updated` of each record the warehouse holds in the run's lag window.

    Attributes:
        ids: record ids, sorted ascending, each once.
        updated: the stored `updated` of `ids[i]`, microseconds since 1970.
    """

    ids: np.ndarray
    updated: np.ndarray

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, datetime | None]]) -> StoredVersions:
        """Build from `(id, updated)` rows as the warehouse returns them.

        A row without `updated` is left out: no version can equal it. Should an id come
        twice (it cannot, the table's primary key), either row is kept: a mismatch only
        means a record is loaded again, as without this.
        """
        pairs = [(int(i), epoch_microseconds(u)) for i, u in rows if u is not None]
        if not pairs:
            return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        array = np.array(pairs, dtype=np.int64)
        order = np.argsort(array[:, 0], kind="stable")
        return cls(array[order, 0].copy(), array[order, 1].copy())

    def __len__(self) -> int:
        return int(self.ids.size)

    def unchanged(self, ids: pa.ChunkedArray | pa.Array, updated: pa.ChunkedArray | pa.Array
                  ) -> np.ndarray:
        """Per row, whether its `(id, updated)` is a stored version (nulls never are)."""
        count = len(ids)
        if not self.ids.size or not count:
            return np.zeros(count, dtype=bool)
        valid = np.asarray(_not_null(ids) & _not_null(updated))
        record_ids = np.asarray(_as_int64(ids).fill_null(0))
        versions = np.asarray(_as_int64(updated).fill_null(0))
        found = np.searchsorted(self.ids, record_ids)
        inside = found < self.ids.size
        at = np.where(inside, found, 0)
        return valid & inside & (self.ids[at] == record_ids) & (self.updated[at] == versions)

    def drop_unchanged(self, page: SplitPage) -> tuple[SplitPage, int]:
        """The page without its unchanged records and their event rows; how many went.

        Event rows carry their record's `updated`, so they are matched the same way: an
        event row goes exactly when its record does.
        """
        if not self.ids.size or page.sendsms is None or not page.sendsms.num_rows:
            return page, 0
        same = self.unchanged(page.sendsms["id"], page.sendsms["updated"])
        dropped = int(same.sum())
        if not dropped:
            return page, 0
        sendsms = page.sendsms.filter(pa.array(~same))
        events = page.events
        if events is not None and events.num_rows:
            events = events.filter(
                pa.array(~self.unchanged(events["sendsms_id"], events["updated"]))
            )
        return SplitPage(sendsms, events, page.bad), dropped


def _as_int64(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return array.cast(pa.int64())


def _not_null(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return np.asarray(array.is_valid())

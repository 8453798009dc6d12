"""The simulated Quorum organisation: the `World` facade over plans, clock, queries and rendering.

The world is columnar (see `schema.py`): each record is a row of numpy arrays holding its plan,
and the state at the clock is derived from it (`state.py`), so moving the clock is cheap and
only the records of a served page are ever turned into JSON (`render.py`).

The past is generated up front with exactly `n_records` records created at or before the
initial clock; the future is pre-generated lazily in week-long chunks, each with its own seed
(`generate.py`), so a campaign scheduled for next Tuesday appears when the clock passes next
Tuesday, whatever steps the clock took to get there. A record gets its `id` when the clock
reaches its creation time, so ids grow with creation order and are never reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from pipelines.simulator import changes, generate, pools, query
from pipelines.simulator.catalog import Catalog
from pipelines.simulator.gsm import segment_count
from pipelines.simulator.render import Renderer
from pipelines.simulator.schema import (
    BOOL_FIELDS,
    CHUNK_DAYS,
    DEFAULT_START,
    ID_BASE,
    INBOUND,
    INDIVIDUAL,
    INT_FIELDS,
    SUPPORTER_BASE,
    TIME_FIELDS,
    Condition,
    Rows,
    Store,
)
from pipelines.simulator.state import Derived, derive, field_values
from pipelines.simulator.timefmt import US_PER_DAY, US_PER_S, from_us, to_us

# Re-exported: the API layer and older callers import these from here.
__all__ = ["BOOL_FIELDS", "INT_FIELDS", "TIME_FIELDS", "Condition", "World"]

# A change of at most this share of the visible records updates the derived state and every
# cached ordering in place (work in proportion to the change, plus one pass over each
# ordering); a larger or unspecified one recomputes them.
INCREMENTAL_SHARE = 0.02

# `touch(recent_share=...)`: the records created this many days before the clock are "recent".
RECENT_TOUCH_DAYS = 3

# The orderings sorted when the world is built (its "indexes"): `updated` both ways (a sync's
# window probes and keyset paging, which shares the `updated` entry) and `id` (buckets).
INDEXED_ORDERS: tuple[tuple[tuple[str, bool], ...], ...] = (
    (("updated", False),), (("updated", True),), (("id", False),),
)


class World:
    """A deterministic simulated Quorum organisation on a simulated clock.

    Thread-safe: every public method takes `lock` (an RLock), which the HTTP server also holds
    while it queries and renders a page.

    Attributes:
        incremental_share: changes of known rows up to this share of the visible records are
            applied in place (`changes.py`); 0 recomputes after every change.
    """

    incremental_share: float = INCREMENTAL_SHARE

    def __init__(self, seed: int = 7, n_records: int = 5000, start: datetime | None = None) -> None:
        """Generate the world.

        Args:
            seed: seeds every random choice; the same seed gives the same world, byte for byte.
            n_records: records that exist at the initial clock (exactly).
            start: the initial clock (aware or naive UTC), default 2026-11-01T06:00:00Z.
        """
        if n_records < 0:
            raise ValueError("n_records must be >= 0")
        self.seed = int(seed)
        self.lock = threading.RLock()
        self._now = to_us(start or DEFAULT_START)
        self._start = self._now
        self._store = Store()
        self._version = 0
        self._derived: Derived | None = None
        self._derived_version = -1
        self._sort_cache: query.SortCache = {}
        # Rows changed since `_derived` was made; None when a change did not say which.
        self._pending: list[Rows] | None = []
        self._next_id = ID_BASE + 1
        self._created_at_runtime = 0
        self._ops_rng = np.random.default_rng([self.seed, 3])
        self._chunks = 0
        self.catalog = Catalog()

        rng = np.random.default_rng([self.seed, 0])
        self.catalog.build_supporters(rng, min(120_000, max(200, n_records // 10)))
        self._renderer = Renderer(self.catalog)
        past, self._rates = generate.make_past(rng, self.catalog, self._now, n_records)
        past["id"] = np.arange(ID_BASE + 1, ID_BASE + 1 + n_records, dtype=np.int64)
        self._next_id = ID_BASE + 1 + n_records
        self._store.append(past)
        self._ensure_horizon(self._now)
        self._build_indexes()

    def _build_indexes(self) -> None:
        """Sort the world once in the orderings a sync reads by, as a server keeps indexes.

        Without this the first request of each ordering after start sorts every record (a
        second at 10M), which a benchmark against a freshly started simulator would count
        as the sync's time; later changes update these orderings in place (`changes.py`).
        """
        with self.lock:
            for order in INDEXED_ORDERS:
                query.sorted_rows(self._state().base, order, self.values, self._sort_cache)

    @property
    def n_supporters(self) -> int:
        """Number of supporters."""
        return self.catalog.n_supporters

    def _ensure_horizon(self, until: int) -> None:
        """Pre-generate every future week that starts at or before `until`."""
        while self._start + self._chunks * CHUNK_DAYS * US_PER_DAY <= until:
            chunk = generate.make_chunk(self.seed, self._chunks, self._start, self.catalog,
                                        self._rates)
            if chunk is not None:
                self._store.append(chunk)
            self._chunks += 1

    # ------------------------------------------------------------------ the clock and changes

    @property
    def now(self) -> datetime:
        """The simulated clock (aware UTC datetime)."""
        return from_us(self._now)

    @property
    def now_us(self) -> int:
        """The simulated clock in microseconds since the epoch."""
        return self._now

    @property
    def version(self) -> int:
        """A counter that moves on every change of the world."""
        return self._version

    def _changed(self, rows: Rows | None = None) -> None:
        """Note a change of the world: of exactly `rows` (store rows), or of anything (None).

        The derived state and the sort cache catch up on the next `_state()`, so a burst of
        small changes (one created record at a time) costs one update.
        """
        self._version += 1
        if rows is None or self._pending is None:
            self._pending = None
        else:
            self._pending.append(np.asarray(rows, dtype=np.int64))

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta`: texts progress, opens arrive, campaigns go out."""
        step = int(delta / timedelta(microseconds=1))
        if step < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            target = self._now + step
            first_new_row = self._store.n
            self._ensure_horizon(target)
            store = self._store
            ids = store["id"]
            fresh = np.flatnonzero((ids < 0) & (store["created"] <= target))
            if len(fresh):
                fresh = fresh[np.lexsort((fresh, store["created"][fresh]))]
                ids[fresh] = np.arange(self._next_id, self._next_id + len(fresh))
                self._next_id += len(fresh)
            self._now = target
            derived = self._derived
            if derived is None or self._pending is None:
                self._changed(None)
            else:
                # Rows not yet changed keep their state until their `next_change`; rows a
                # pending change lists are recomputed anyway, at the new clock.
                due = np.flatnonzero(derived.next_change <= target)
                new_rows = np.arange(first_new_row, store.n, dtype=np.int64)
                self._changed(np.concatenate([due, fresh, new_rows]))

    def _rows_of_ids(self, ids: Sequence[int]) -> Rows:
        base = self._state().base
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
        if not len(base) or not len(wanted):
            return np.empty(0, np.int64)
        # The id ordering's cached keys are the ids of `base`: no pass over the world per call.
        base, base_ids = query.sorted_rows(base, (("id", False),), self.values, self._sort_cache)
        pos = np.searchsorted(base_ids, wanted)
        pos = np.minimum(pos, len(base) - 1)
        return base[pos[base_ids[pos] == wanted]]

    def touch(self, fraction: float | None = None, ids: Sequence[int] | None = None,
              recent_share: float = 0.0) -> list[int]:
        """Change records now: one more link open each, and `updated` becomes the clock.

        Args:
            fraction: share of the live records to touch, chosen at random (seeded).
            ids: ids to touch (unknown or deleted ids are skipped).
            recent_share: with `fraction`, the share of the touched records drawn from those
                created in the last `RECENT_TOUCH_DAYS` (as many as there are), the rest from
                the older ones; 0 draws from all records alike.

        Returns:
            The ids touched, sorted.

        Raises:
            ValueError: `recent_share` is not between 0 and 1, or comes with `ids`.
        """
        if not 0.0 <= recent_share <= 1.0:
            raise ValueError(f"recent_share must be between 0 and 1, not {recent_share}")
        if recent_share and ids is not None:
            raise ValueError("recent_share goes with fraction, not with ids")
        with self.lock:
            if ids is not None:
                rows = self._rows_of_ids(ids)
            else:
                base = self._state().base
                share = float(fraction or 0.0)
                count = min(len(base), round(share * len(base)))
                if share > 0 and count == 0 and len(base):
                    count = 1
                rows = np.sort(self._draw_touched(base, count, recent_share))
            return self._touch_rows(rows)

    def _draw_touched(self, base: Rows, count: int, recent_share: float) -> Rows:
        """`count` distinct rows of `base`, `recent_share` of them from the recent records.

        Real nights change mostly recent texts (delivery reports within minutes, link opens
        within days); drawing from all records alike is the worst case for the warehouse, whose
        changed rows then lie in every block of every table.
        """
        if recent_share <= 0.0:
            return self._ops_rng.choice(base, size=count, replace=False)
        is_recent = self._store["created"][base] >= self._now - RECENT_TOUCH_DAYS * US_PER_DAY
        recent, older = base[is_recent], base[~is_recent]
        n_recent = min(len(recent), round(count * recent_share))
        n_older = min(len(older), count - n_recent)
        n_recent = min(len(recent), count - n_older)  # too few older records: more recent ones
        return np.concatenate([
            self._ops_rng.choice(recent, size=n_recent, replace=False),
            self._ops_rng.choice(older, size=n_older, replace=False),
        ])

    def _touch_rows(self, rows: Rows) -> list[int]:
        store = self._store
        if len(rows):
            store["extra_opens"][rows] += 1
            now = np.full(len(rows), self._now, np.int64)
            store["touch"][rows] = np.where(store["whole"][rows], now - now % US_PER_S, now)
            self._changed(rows)
        return sorted(store["id"][rows].tolist())

    def delete(self, ids: Sequence[int]) -> None:
        """Hard-delete records: they vanish from the API (ids are never reused)."""
        with self.lock:
            rows = self._rows_of_ids(ids)
            if len(rows):
                self._store["alive"][rows] = False
                self._changed(rows)

    def supporter_ids(self) -> list[int]:
        """Ids of every supporter (valid `supporter_id` values for send_individual_sms)."""
        return list(range(SUPPORTER_BASE, SUPPORTER_BASE + self.catalog.n_supporters))

    def supporter(self, supporter_id: int) -> int | None:
        """Return the index of a supporter id, or None when there is no such supporter."""
        index = supporter_id - SUPPORTER_BASE
        return index if 0 <= index < self.catalog.n_supporters else None

    def _create_now(self, kind: int, sups: Sequence[int], texts: Sequence[str],
                    number: int = 0) -> list[int]:
        """Create records at the clock (queued now); returns their ids."""
        size = len(sups)
        if not size:
            return []
        rng = np.random.default_rng([self.seed, 2, self._created_at_runtime])
        self._created_at_runtime += 1
        batch: dict[str, np.ndarray] = {
            "created": np.full(size, self._now, np.int64),
            "kind": np.full(size, kind, np.int8),
            "camp": np.full(size, -1, np.int32),
            "sup": np.asarray(sups, np.int32),
            "msg": np.asarray([self.catalog.add_message(t) for t in texts], np.int32),
            "num": np.full(size, number, np.int8),
        }
        plan = generate.plan(rng, self.catalog, batch)
        plan["created"] = np.where(
            plan["whole"], self._now - self._now % US_PER_S, self._now
        ).astype(np.int64)
        ids = np.arange(self._next_id, self._next_id + size, dtype=np.int64)
        self._next_id += size
        plan["id"] = ids
        first_row = self._store.n
        self._store.append(plan)
        self._changed(np.arange(first_row, self._store.n, dtype=np.int64))
        return ids.tolist()

    def send_individual_sms(self, supporter_id: int, message: str) -> dict[str, Any]:
        """Queue a text to one supporter now; returns the API's 201 body.

        Raises:
            KeyError: when the supporter does not exist.
        """
        with self.lock:
            index = self.supporter(supporter_id)
            if index is None:
                raise KeyError(supporter_id)
            (new_id,) = self._create_now(INDIVIDUAL, [index], [message])
            return {
                "from": pools.ORG_NUMBERS[0],
                "id": new_id,
                "num_segments": segment_count(message),
                "success": True,
                "to": self.catalog.sup_phone[index],
            }

    def mutate(self, touch_ids: Sequence[int], n_create: int, seed: int) -> None:
        """What happens between two page requests: a second passes, records change, new arrive.

        Args:
            touch_ids: records to change (as `touch`), after the clock moved by one second.
            n_create: new records to create (individual texts and inbound replies).
            seed: seeds the choice of supporters and texts of the new records.
        """
        with self.lock:
            self.advance(timedelta(seconds=1))
            self.touch(ids=list(touch_ids))
            n_sup = self.catalog.n_supporters
            if n_create > 0 and n_sup:
                rng = np.random.default_rng([self.seed, 4, seed])
                sups = rng.integers(0, n_sup, n_create).tolist()
                inbound = rng.random(n_create) < 0.5
                for sup, is_in in zip(sups, inbound.tolist(), strict=True):
                    if is_in:
                        pick = int(rng.integers(len(pools.INBOUND_MESSAGES)))
                        text = pools.INBOUND_MESSAGES[pick]
                        self._create_now(INBOUND, [sup], [text])
                    else:
                        first = self.catalog.sup_first[sup]
                        text = f"Hi {first}, quick update: the meeting moved to 7pm."
                        self._create_now(INDIVIDUAL, [sup], [text])

    # ------------------------------------------------------------------ derived state

    def _state(self) -> Derived:
        derived, pending = self._derived, self._pending
        if derived is not None and self._derived_version == self._version:
            return derived
        changed = np.unique(np.concatenate(pending)) if pending else None
        if (derived is None or pending is None
                or (changed is not None
                    and len(changed) > self.incremental_share * len(derived.base))):
            derived = derive(self._store, self._now, self.catalog.camp_time)
            self._sort_cache.clear()
        elif changed is not None and len(changed):
            changes.apply_change(self._store, derived, self._sort_cache, changed, self._now,
                                 self.catalog.camp_time)
        self._derived, self._pending, self._derived_version = derived, [], self._version
        return derived

    def record_count(self) -> int:
        """Number of live records (what `meta.total_count` shows without filters)."""
        with self.lock:
            return len(self._state().base)

    def values(self, field: str, rows: Rows) -> tuple[np.ndarray, npt.NDArray[np.bool_] | None]:
        """Values of a filterable/orderable field for `rows`, with a null mask (or None)."""
        return field_values(self._store, self._state(), field, rows)

    # ------------------------------------------------------------------ queries

    def query(
        self,
        conditions: Sequence[Condition],
        order: Sequence[tuple[str, bool]],
        offset: int,
        limit: int,
    ) -> tuple[int, Rows]:
        """Select records: returns (total matching, the rows of the page)."""
        with self.lock:
            base = self._state().base
            rows, primary = query.sorted_rows(base, tuple(order), self.values, self._sort_cache)
            key = order[0] if order else ("id", False)
            lo, hi = query.span(primary, key, conditions)
            # Like a database's planner: when a range on another indexed ordering leaves
            # fewer rows (a bucket of one `updated` instant listed by id), read those rows
            # from that ordering and sort them, instead of masking every row of this one.
            for index in INDEXED_ORDERS:
                if index[0][0] == key[0]:
                    continue
                by_index, index_primary = query.sorted_rows(
                    base, index, self.values, self._sort_cache
                )
                index_lo, index_hi = query.span(index_primary, index[0], conditions)
                if index_hi - index_lo < (hi - lo) // 4:
                    found = query.select(by_index, index_primary, index, conditions, self.values)
                    selected = query.in_order(found, tuple(order), self.values)
                    return len(selected), selected[offset : offset + limit]
            selected = query.select(rows, primary, order, conditions, self.values)
            return len(selected), selected[offset : offset + limit]

    # ------------------------------------------------------------------ rendering

    def ids(self, rows: Rows) -> list[int]:
        """The ids of `rows`."""
        return list(self._store["id"][rows].tolist())

    def get_row(self, record_id: int) -> int | None:
        """The row of a live record, or None."""
        with self.lock:
            rows = self._rows_of_ids([record_id])
            return int(rows[0]) if len(rows) else None

    def render(self, rows: Rows) -> list[dict[str, Any]]:
        """Turn rows into SendSMS objects exactly as the API serves them (decoded)."""
        with self.lock:
            parts = self.render_json(rows)
        return list(orjson.loads("[" + ",".join(parts) + "]")) if parts else []

    def render_json(self, rows: Rows, bad_updated: Callable[[int], bool] | None = None
                    ) -> list[str]:
        """The JSON text of each row's SendSMS object (the serving hot path).

        Args:
            rows: the rows to render.
            bad_updated: ids for which it is true get `"updated": "not-a-date"` (a fault).
        """
        with self.lock:
            return self._renderer.render(self._store, self._state(), rows, bad_updated)

    def iter_ground_truth_json(self, chunk: int = 20_000) -> Iterator[list[str]]:
        """Yield every live record's JSON text, sorted by id, in chunks (hold `lock`)."""
        base = self._state().base
        for start in range(0, len(base), chunk):
            yield self._renderer.render(self._store, self._state(), base[start : start + chunk])

    def ground_truth(self) -> list[dict[str, Any]]:
        """Every live record exactly as the API serves it (JSON-decoded), sorted by id."""
        with self.lock:
            out: list[dict[str, Any]] = []
            for part in self.iter_ground_truth_json():
                out.extend(orjson.loads("[" + ",".join(part) + "]"))
            return out

    def memory_bytes(self) -> int:
        """Bytes held by the record columns (the bulk of the world's memory)."""
        return self._store.nbytes()

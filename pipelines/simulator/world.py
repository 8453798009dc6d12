"""The simulated Quorum organisation: supporters, campaigns and every SendSMS record, on a clock.

The world is columnar. Each record is a row of numpy arrays holding its *plan*: when it is
created (queued), sent, reaches its final status, each link open, its conversion and its
archiving, in int64 microseconds since the epoch. The state at the clock (status, opens,
`updated`, ...) is derived from the plan with vectorised comparisons against `now`, so moving
the clock is cheap, and only the records of a served page are ever turned into dicts.

Everything comes from numpy Generators seeded by `seed` (never the wall clock): the past is
generated up front with exactly `n_records` records created at or before the initial clock; the
future is pre-generated lazily in week-long chunks (each with its own seed), so a campaign
scheduled for next Tuesday appears when the clock passes next Tuesday, whatever steps the clock
took to get there. A record gets its `id` when the clock reaches its creation time, so ids grow
with creation order and are never reused.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from pipelines.simulator import pools
from pipelines.simulator.gsm import segment_count
from pipelines.simulator.timefmt import (
    FORMS_PER_GROUP,
    NEVER,
    NO_TIME,
    US_PER_DAY,
    US_PER_H,
    US_PER_S,
    from_us,
    render_json,
    to_us,
)

I64 = npt.NDArray[np.int64]
Rows = npt.NDArray[np.int64]

DEFAULT_START = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
HISTORY_DAYS = 30
CHUNK_DAYS = 7
ID_BASE = 100_000
SUPPORTER_BASE = 880_000
CAMPAIGN_BASE = 4_000

CAMPAIGN, INDIVIDUAL, INBOUND = 0, 1, 2
QUEUED, SENT, DELIVERED, UNDELIVERED, FAILED, REJECTED, RECEIVED = 1, 2, 3, 4, 5, 6, 7
OUTBOUND_DIRECTION, INBOUND_DIRECTION = 2, 1

# Share of each final outcome of an outbound text; the rest stays at "sent" for good.
OUTCOMES = ((DELIVERED, 0.885), (UNDELIVERED, 0.045), (FAILED, 0.03), (REJECTED, 0.012))
SEND_RATE_PER_S = 25.0
"""How fast a bulk campaign is queued, texts per second."""
# Campaign slots in UTC (US business hours and evenings).
SLOTS_US = tuple(int(h * US_PER_H) for h in (14.0, 15.0, 16.5, 18.0, 21.0, 22.25, 23.0))

# Columns of a record's plan, with their dtypes.
COLUMNS: dict[str, Any] = {
    "id": np.int64,  # -1 until the clock reaches `created`
    "created": np.int64,
    "kind": np.int8,  # CAMPAIGN, INDIVIDUAL, INBOUND
    "camp": np.int32,  # campaign index or -1
    "sup": np.int32,  # supporter index
    "msg": np.int32,  # index into World.messages
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


class _Store:
    """Growable columns (amortised append) holding the plan of every record, row by row."""

    def __init__(self) -> None:
        self.n = 0
        self.cap = 0
        self.cols: dict[str, np.ndarray] = {k: np.empty(0, dtype=t) for k, t in COLUMNS.items()}

    def append(self, batch: dict[str, np.ndarray]) -> None:
        size = len(batch["created"])
        if self.n + size > self.cap:
            cap = max(1024, self.cap * 2, self.n + size)
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


@dataclass
class Condition:
    """One parsed filter: `field`, a qualifier (`exact`, `in`, `gt`, ...) and a typed value."""

    field: str
    op: str
    value: Any


@dataclass
class _Derived:
    """The state of every row at the clock, for one world version."""

    updated: I64
    status: npt.NDArray[np.int8]
    opens: I64
    converted: npt.NDArray[np.bool_]
    archived: npt.NDArray[np.bool_]
    send_time: I64
    sent_at: I64  # sent time if it happened, else NEVER
    final_at: I64
    base: Rows  # visible rows sorted by id


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _lognormal_us(rng: np.random.Generator, median_s: float, sigma: float, size: int) -> I64:
    return (rng.lognormal(np.log(median_s), sigma, size) * US_PER_S).astype(np.int64)


class World:
    """A deterministic simulated Quorum organisation on a simulated clock.

    Thread-safe: every public method takes `lock` (an RLock), which the HTTP server also holds
    while it queries and renders a page.
    """

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
        self._store = _Store()
        self._version = 0
        self._derived: _Derived | None = None
        self._derived_version = -1
        self._sort_cache: dict[tuple[tuple[str, bool], ...], tuple[Rows, I64]] = {}
        self._next_id = ID_BASE + 1
        self._created_at_runtime = 0
        self._ops_rng = np.random.default_rng([self.seed, 3])
        # messages: text, segments, has a tracked link
        self.messages: list[str] = []
        self._msg_segments: list[int] = []
        self._msg_has_link: list[bool] = []
        self._msg_index: dict[str, int] = {}
        # campaigns
        self.camp_desc: list[str] = []
        self.camp_msg: list[int] = []
        self.camp_num: list[int] = []
        self._camp_time = np.empty(0, dtype=np.int64)
        self._chunks = 0
        self._table_key: tuple[int, int] = (-1, -1)
        self._table_cache: dict[str, np.ndarray] = {}

        rng = np.random.default_rng([self.seed, 0])
        self._build_supporters(rng, min(120_000, max(200, n_records // 10)))
        self._make_past(rng, n_records)
        self._ensure_horizon(self._now)

    # ------------------------------------------------------------------ generation

    def _add_message(self, text: str) -> int:
        index = self._msg_index.get(text)
        if index is None:
            index = len(self.messages)
            self.messages.append(text)
            self._msg_segments.append(segment_count(text))
            self._msg_has_link.append("https://" in text)
            self._msg_index[text] = index
        return index

    def _build_supporters(self, rng: np.random.Generator, n_sup: int) -> None:
        first_i = rng.integers(0, len(pools.FIRST_NAMES), n_sup).tolist()
        last_i = rng.integers(0, len(pools.LAST_NAMES), n_sup).tolist()
        dom_i = rng.integers(0, len(pools.EMAIL_DOMAINS), n_sup).tolist()
        title_i = rng.integers(0, len(pools.TITLES), n_sup).tolist()
        org_i = rng.integers(0, len(pools.ORGANIZATIONS), n_sup).tolist()
        zip_i = rng.integers(0, len(pools.ZIP_CODES), n_sup).tolist()
        area_i = rng.integers(0, len(pools.AREA_CODES), n_sup).tolist()
        exchange = rng.integers(201, 999, n_sup).tolist()
        line = rng.integers(0, 10_000, n_sup).tolist()
        email_num = rng.integers(1, 999, n_sup).tolist()
        shape = rng.random((n_sup, 3)).tolist()
        self.sup_carrier = rng.integers(0, len(pools.CARRIERS), n_sup)
        self.sup_first: list[str] = []
        self.sup_last: list[str] = []
        self.sup_name: list[str | None] = []
        self.sup_email: list[str | None] = []
        self.sup_title: list[str | None] = []
        self.sup_org: list[str | None] = []
        self.sup_phone: list[str] = []
        self.sup_zip: list[str] = []
        for i in range(n_sup):
            first = pools.FIRST_NAMES[first_i[i]]
            last = pools.LAST_NAMES[last_i[i]]
            name_roll, email_roll, _ = shape[i]
            self.sup_first.append(first)
            self.sup_last.append(last)
            self.sup_name.append(
                None if name_roll < 0.02 else "" if name_roll < 0.04 else f"{first} {last}"
            )
            if email_roll < 0.05:
                email: str | None = None
            elif email_roll < 0.08:
                email = ""
            elif email_roll < 0.5:
                email = f"{_ascii(first)}.{_ascii(last)}@{pools.EMAIL_DOMAINS[dom_i[i]]}"
            else:
                email = (
                    f"{_ascii(first)[:1]}{_ascii(last)}{email_num[i]}"
                    f"@{pools.EMAIL_DOMAINS[dom_i[i]]}"
                )
            self.sup_email.append(email)
            self.sup_title.append(pools.TITLES[title_i[i]])
            self.sup_org.append(pools.ORGANIZATIONS[org_i[i]])
            exch = exchange[i] if exchange[i] != 555 else 556
            self.sup_phone.append(f"+1{pools.AREA_CODES[area_i[i]]}{exch:03d}{line[i]:04d}")
            self.sup_zip.append(pools.ZIP_CODES[zip_i[i]])
        self.n_supporters = n_sup
        self._supporter_fragments()

    def _new_campaign(self, rng: np.random.Generator, when: int) -> int:
        template = int(rng.integers(0, len(pools.CAMPAIGNS)))
        desc, text = pools.CAMPAIGNS[template]
        index = len(self.camp_desc)
        code = "".join(
            rng.choice(list("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"), 5)
        )
        message = text.format(link=f"https://qrm.us/{code}")
        stamp = from_us(when)
        self.camp_desc.append(f"{desc} \u2013 {stamp:%b} {stamp.day}")
        self.camp_msg.append(self._add_message(message))
        self.camp_num.append(int(rng.integers(0, len(pools.ORG_NUMBERS))))
        self._camp_time = np.append(self._camp_time, np.int64(when))
        return index

    def _campaign_size(self, rng: np.random.Generator) -> int:
        low = max(1, int(self.n_supporters * 0.3))
        high = max(low + 1, int(self.n_supporters * 0.9))
        return int(rng.integers(low, high))

    def _campaign_batch(
        self, rng: np.random.Generator, camp: int, size: int
    ) -> dict[str, np.ndarray]:
        start = int(self._camp_time[camp])
        step = US_PER_S / SEND_RATE_PER_S
        created = start + (np.arange(size) * step).astype(np.int64)
        created += rng.integers(0, int(step), size)
        sup = rng.choice(self.n_supporters, size=size, replace=False).astype(np.int32)
        return {
            "created": created,
            "kind": np.full(size, CAMPAIGN, np.int8),
            "camp": np.full(size, camp, np.int32),
            "sup": sup,
            "msg": np.full(size, self.camp_msg[camp], np.int32),
            "num": np.full(size, self.camp_num[camp], np.int8),
        }

    def _individual_batch(
        self, rng: np.random.Generator, created: I64
    ) -> dict[str, np.ndarray]:
        size = len(created)
        sup = rng.integers(0, max(1, self.n_supporters), size).astype(np.int32)
        template = rng.integers(0, len(pools.INDIVIDUAL_MESSAGES), size).tolist()
        msg = np.empty(size, np.int32)
        for i, (t, s) in enumerate(zip(template, sup.tolist(), strict=True)):
            text = pools.INDIVIDUAL_MESSAGES[t].format(
                first=self.sup_first[s], link=f"https://qrm.us/i{t}x{s % 97}"
            )
            msg[i] = self._add_message(text)
        return {
            "created": created,
            "kind": np.full(size, INDIVIDUAL, np.int8),
            "camp": np.full(size, -1, np.int32),
            "sup": sup,
            "msg": msg,
            "num": rng.integers(0, len(pools.ORG_NUMBERS), size).astype(np.int8),
        }

    def _inbound_batch(
        self,
        rng: np.random.Generator,
        size: int,
        lo: int,
        hi: int,
        replies_to: dict[str, np.ndarray] | None,
    ) -> dict[str, np.ndarray]:
        """Inbound texts in [lo, hi]; most reply (within hours) to a text of `replies_to`."""
        inbox = [self._add_message(text) for text in pools.INBOUND_MESSAGES]
        created = rng.integers(lo, hi + 1, size)
        sup = rng.integers(0, max(1, self.n_supporters), size).astype(np.int32)
        num = rng.integers(0, len(pools.ORG_NUMBERS), size).astype(np.int8)
        if replies_to is not None and len(replies_to["created"]) and size:
            is_reply = rng.random(size) < 0.75
            target = rng.integers(0, len(replies_to["created"]), size)
            after = replies_to["created"][target] + _lognormal_us(rng, 5400.0, 1.1, size)
            # A reply the clock has not reached yet lands somewhere before `hi` instead.
            late = after > hi
            base = replies_to["created"][target]
            squeezed = base + ((hi - base) * rng.random(size)).astype(np.int64)
            after = np.where(late, squeezed, after)
            created = np.where(is_reply, after, created)
            sup = np.where(is_reply, replies_to["sup"][target], sup).astype(np.int32)
            num = np.where(is_reply, replies_to["num"][target], num).astype(np.int8)
        msg = np.asarray(inbox, np.int32)[rng.integers(0, len(inbox), size)]
        return {
            "created": created.astype(np.int64),
            "kind": np.full(size, INBOUND, np.int8),
            "camp": np.full(size, -1, np.int32),
            "sup": sup,
            "msg": msg,
            "num": num,
        }

    def _plan(
        self, rng: np.random.Generator, batch: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Plan the life of every text of `batch` (adds every other column)."""
        size = len(batch["created"])
        created = batch["created"].astype(np.int64)
        kind = batch["kind"]
        outbound = kind != INBOUND
        roll = rng.random(size)
        fstatus = np.zeros(size, np.int8)
        edge = 0.0
        for status, share in OUTCOMES:
            fstatus[(roll >= edge) & (roll < edge + share)] = status
            edge += share
        fstatus[~outbound] = 0
        rejected = fstatus == REJECTED
        sent = created + _lognormal_us(rng, 2.5, 1.0, size) + 200_000
        sent = np.where(outbound & ~rejected, sent, NEVER)
        final = sent + _lognormal_us(rng, 6.0, 1.4, size) + 300_000
        final = np.where(rejected, created + rng.integers(100_000, 2_500_000, size), final)
        final = np.where(fstatus > 0, final, NEVER)
        err = np.full(size, -1, np.int16)
        pick = rng.random(size)
        for status, (lo, hi) in pools.ERROR_RANGES.items():
            mask = fstatus == status
            err[mask] = (lo + (pick[mask] * (hi - lo)).astype(np.int64)).astype(np.int16)
        has_link = np.asarray(self._msg_has_link, np.bool_)[batch["msg"]]
        opener = (fstatus == DELIVERED) & has_link & (rng.random(size) < 0.32)
        n_opens = np.where(opener, np.minimum(rng.geometric(0.55, size), 12), 0).astype(np.int16)
        first_open = final + _lognormal_us(rng, 3 * 3600.0, 1.6, size)
        first_open = np.where(opener, first_open, NEVER)
        open_gap = np.maximum(_lognormal_us(rng, 12 * 3600.0, 1.0, size), 60 * US_PER_S)
        converter = opener & (rng.random(size) < 0.3)
        conv = np.where(converter, first_open + _lognormal_us(rng, 12 * 3600.0, 1.2, size), NEVER)
        archiver = rng.random(size) < 0.06
        arch = created + (rng.uniform(1.0, 75.0, size) * US_PER_DAY).astype(np.int64)
        arch = np.where(archiver, arch, NEVER)
        whole = rng.random(size) < 0.4
        plan = dict(batch)
        plan.update(
            {
                "created": created,
                "sent": sent,
                "final": final,
                "fstatus": fstatus,
                "err": err,
                "first_open": first_open,
                "open_gap": open_gap,
                "n_opens": n_opens,
                "conv": conv,
                "arch": arch,
            }
        )
        for key in TIME_COLUMNS:
            col = plan[key]
            rounded = col - col % US_PER_S
            plan[key] = np.where(whole & (col != NEVER), rounded, col)
        plan["open_gap"] = np.maximum(plan["open_gap"], US_PER_S)
        plan.update(
            {
                "id": np.full(size, -1, np.int64),
                "touch": np.full(size, NO_TIME, np.int64),
                "extra_opens": np.zeros(size, np.int32),
                "alive": np.ones(size, np.bool_),
                "fmt": rng.integers(0, FORMS_PER_GROUP, size).astype(np.uint8),
                "whole": whole,
                "flags": rng.integers(0, 8, size).astype(np.uint8),
                "uuid_hi": rng.integers(0, np.iinfo(np.uint64).max, size, dtype=np.uint64),
                "uuid_lo": rng.integers(0, np.iinfo(np.uint64).max, size, dtype=np.uint64),
                "extra": np.where(rng.random(size) < 0.8, 0, rng.integers(1, 3, size)).astype(
                    np.int8
                ),
                "rcpt": rng.integers(0, 4, size).astype(np.int8),
            }
        )
        return plan

    def _make_past(self, rng: np.random.Generator, n: int) -> None:
        n_inbound = round(n * 0.08)
        n_individual = round(n * 0.10)
        n_campaign = n - n_inbound - n_individual
        begin = (self._now // US_PER_DAY - HISTORY_DAYS) * US_PER_DAY
        sizes: list[int] = []
        while sum(sizes) < n_campaign:
            sizes.append(self._campaign_size(rng))
        if sizes:
            sizes[-1] -= sum(sizes) - n_campaign
        days = np.sort(rng.choice(np.arange(1, HISTORY_DAYS - 1), size=len(sizes)))
        batches: list[dict[str, np.ndarray]] = []
        for size, day in zip(sizes, days.tolist(), strict=True):
            when = begin + day * US_PER_DAY + SLOTS_US[int(rng.integers(0, len(SLOTS_US)))]
            camp = self._new_campaign(rng, when)
            batches.append(self._campaign_batch(rng, camp, size))
        self._past_campaigns_per_day = len(sizes) / HISTORY_DAYS
        self._individual_per_day = n_individual / HISTORY_DAYS
        self._inbound_per_day = n_inbound / HISTORY_DAYS
        individual_times = rng.integers(begin, self._now + 1, n_individual)
        batches.append(self._individual_batch(rng, individual_times))
        camp_rows = _concat(batches[:-1]) if len(batches) > 1 else None
        batches.append(self._inbound_batch(rng, n_inbound, begin, self._now, camp_rows))
        past = self._plan(rng, _concat(batches))
        order = np.lexsort((np.arange(n), past["created"]))
        past = {k: v[order] for k, v in past.items()}
        past["id"] = np.arange(ID_BASE + 1, ID_BASE + 1 + n, dtype=np.int64)
        self._next_id = ID_BASE + 1 + n
        self._store.append(past)

    def _make_chunk(self, index: int) -> None:
        """Pre-generate the records that originate in future chunk `index` (a week)."""
        rng = np.random.default_rng([self.seed, 1, index])
        lo = self._start + index * CHUNK_DAYS * US_PER_DAY + US_PER_S
        hi = lo + CHUNK_DAYS * US_PER_DAY - 2 * US_PER_S
        batches: list[dict[str, np.ndarray]] = []
        day0 = (lo // US_PER_DAY) * US_PER_DAY
        if self.n_supporters:
            for _ in range(int(rng.poisson(self._past_campaigns_per_day * CHUNK_DAYS))):
                when = day0 + int(rng.integers(0, CHUNK_DAYS + 1)) * US_PER_DAY
                when += SLOTS_US[int(rng.integers(0, len(SLOTS_US)))]
                if not lo <= when <= hi:
                    continue
                camp = self._new_campaign(rng, when)
                batches.append(self._campaign_batch(rng, camp, self._campaign_size(rng)))
            n_ind = int(rng.poisson(self._individual_per_day * CHUNK_DAYS))
            batches.append(self._individual_batch(rng, rng.integers(lo, hi + 1, n_ind)))
            camp_rows = _concat(batches[:-1]) if len(batches) > 1 else None
            n_in = int(rng.poisson(self._inbound_per_day * CHUNK_DAYS))
            batches.append(self._inbound_batch(rng, n_in, lo, hi + CHUNK_DAYS * US_PER_DAY,
                                               camp_rows))
            self._store.append(self._plan(rng, _concat(batches)))
        self._chunks = index + 1

    def _ensure_horizon(self, until: int) -> None:
        while self._start + self._chunks * CHUNK_DAYS * US_PER_DAY <= until:
            self._make_chunk(self._chunks)

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

    def _changed(self) -> None:
        self._version += 1
        self._sort_cache.clear()

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta`: texts progress, opens arrive, campaigns go out."""
        step = int(delta / timedelta(microseconds=1))
        if step < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            target = self._now + step
            self._ensure_horizon(target)
            store = self._store
            ids = store["id"]
            fresh = np.flatnonzero((ids < 0) & (store["created"] <= target))
            if len(fresh):
                fresh = fresh[np.lexsort((fresh, store["created"][fresh]))]
                ids[fresh] = np.arange(self._next_id, self._next_id + len(fresh))
                self._next_id += len(fresh)
            self._now = target
            self._changed()

    def _rows_of_ids(self, ids: Sequence[int]) -> Rows:
        base = self._state().base
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
        if not len(base) or not len(wanted):
            return np.empty(0, np.int64)
        base_ids = self._store["id"][base]
        pos = np.searchsorted(base_ids, wanted)
        pos = np.minimum(pos, len(base) - 1)
        return base[pos[base_ids[pos] == wanted]]

    def touch(self, fraction: float | None = None, ids: Sequence[int] | None = None) -> list[int]:
        """Change records now: one more link open each, and `updated` becomes the clock.

        Args:
            fraction: share of the live records to touch, chosen at random (seeded).
            ids: ids to touch (unknown or deleted ids are skipped).

        Returns:
            The ids touched, sorted.
        """
        with self.lock:
            if ids is not None:
                rows = self._rows_of_ids(ids)
            else:
                base = self._state().base
                share = float(fraction or 0.0)
                count = min(len(base), round(share * len(base)))
                if share > 0 and count == 0 and len(base):
                    count = 1
                rows = np.sort(self._ops_rng.choice(base, size=count, replace=False))
            return self._touch_rows(rows)

    def _touch_rows(self, rows: Rows) -> list[int]:
        store = self._store
        if len(rows):
            store["extra_opens"][rows] += 1
            now = np.full(len(rows), self._now, np.int64)
            store["touch"][rows] = np.where(store["whole"][rows], now - now % US_PER_S, now)
            self._changed()
        return sorted(store["id"][rows].tolist())

    def delete(self, ids: Sequence[int]) -> None:
        """Hard-delete records: they vanish from the API (ids are never reused)."""
        with self.lock:
            rows = self._rows_of_ids(ids)
            if len(rows):
                self._store["alive"][rows] = False
                self._changed()

    def supporter_ids(self) -> list[int]:
        """Ids of every supporter (valid `supporter_id` values for send_individual_sms)."""
        return list(range(SUPPORTER_BASE, SUPPORTER_BASE + self.n_supporters))

    def supporter(self, supporter_id: int) -> int | None:
        """Return the index of a supporter id, or None when there is no such supporter."""
        index = supporter_id - SUPPORTER_BASE
        return index if 0 <= index < self.n_supporters else None

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
            "msg": np.asarray([self._add_message(t) for t in texts], np.int32),
            "num": np.full(size, number, np.int8),
        }
        plan = self._plan(rng, batch)
        plan["created"] = np.where(
            plan["whole"], self._now - self._now % US_PER_S, self._now
        ).astype(np.int64)
        ids = np.arange(self._next_id, self._next_id + size, dtype=np.int64)
        self._next_id += size
        plan["id"] = ids
        self._store.append(plan)
        self._changed()
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
                "to": self.sup_phone[index],
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
            if n_create > 0 and self.n_supporters:
                rng = np.random.default_rng([self.seed, 4, seed])
                sups = rng.integers(0, self.n_supporters, n_create).tolist()
                inbound = rng.random(n_create) < 0.5
                for sup, is_in in zip(sups, inbound.tolist(), strict=True):
                    if is_in:
                        pick = int(rng.integers(len(pools.INBOUND_MESSAGES)))
                        text = pools.INBOUND_MESSAGES[pick]
                        self._create_now(INBOUND, [sup], [text])
                    else:
                        text = f"Hi {self.sup_first[sup]}, quick update: the meeting moved to 7pm."
                        self._create_now(INDIVIDUAL, [sup], [text])

    # ------------------------------------------------------------------ derived state

    def _state(self) -> _Derived:
        if self._derived is not None and self._derived_version == self._version:
            return self._derived
        s = self._store
        now = self._now
        created = s["created"]
        sent = s["sent"]
        final = s["final"]
        sent_at = np.where(sent <= now, sent, NEVER)
        final_at = np.where(final <= now, final, NEVER)
        first = s["first_open"]
        gap = s["open_gap"]
        started = first <= now
        opened = np.where(
            started, np.minimum((now - np.minimum(first, now)) // gap + 1, s["n_opens"]), 0
        )
        last_open = np.where(opened > 0, first + (opened - 1) * gap, NO_TIME)
        conv_ok = s["conv"] <= now
        arch_ok = s["arch"] <= now
        updated = created.copy()
        np.maximum(updated, np.where(sent_at != NEVER, sent_at, NO_TIME), out=updated)
        np.maximum(updated, np.where(final_at != NEVER, final_at, NO_TIME), out=updated)
        np.maximum(updated, last_open, out=updated)
        np.maximum(updated, np.where(conv_ok, s["conv"], NO_TIME), out=updated)
        np.maximum(updated, np.where(arch_ok, s["arch"], NO_TIME), out=updated)
        np.maximum(updated, s["touch"], out=updated)
        status = np.where(
            s["kind"] == INBOUND,
            RECEIVED,
            np.where(final_at != NEVER, s["fstatus"], np.where(sent_at != NEVER, SENT, QUEUED)),
        ).astype(np.int8)
        camp = s["camp"]
        camp_time = self._camp_time[np.maximum(camp, 0)] if len(self._camp_time) else created
        send_time = np.where(camp >= 0, camp_time, created)
        visible = np.flatnonzero((s["id"] >= 0) & s["alive"])
        base = visible[np.argsort(s["id"][visible], kind="stable")]
        self._derived = _Derived(
            updated=updated,
            status=status,
            opens=(opened + s["extra_opens"]).astype(np.int64),
            converted=conv_ok,
            archived=arch_ok,
            send_time=send_time,
            sent_at=sent_at,
            final_at=final_at,
            base=base,
        )
        self._derived_version = self._version
        return self._derived

    def record_count(self) -> int:
        """Number of live records (what `meta.total_count` shows without filters)."""
        with self.lock:
            return len(self._state().base)

    def values(self, field: str, rows: Rows) -> tuple[np.ndarray, npt.NDArray[np.bool_] | None]:
        """Values of a filterable/orderable field for `rows`, with a null mask (or None)."""
        s = self._store
        d = self._state()
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
            return np.asarray(pools.ORG_NUMBERS, dtype=object)[s["num"][rows]], None
        if field in ("bulk_sms", "bulk_sms_id"):
            camp = s["camp"][rows].astype(np.int64)
            return np.where(camp >= 0, CAMPAIGN_BASE + camp, -1), camp < 0
        raise KeyError(field)

    # ------------------------------------------------------------------ queries

    def _sorted(self, order: tuple[tuple[str, bool], ...]) -> tuple[Rows, I64]:
        """Visible rows in `order` (id breaks ties) and the primary key's values, ascending."""
        cached = self._sort_cache.get(order)
        if cached is not None:
            return cached
        base = self._state().base
        keys = list(order)
        if not any(field == "id" for field, _ in keys):
            keys.append(("id", False))
        if keys[0] == ("id", False):
            rows = base
        else:
            columns = []
            for field, desc in reversed(keys):
                vals = self.values(field, base)[0].astype(np.int64)
                columns.append(-vals if desc else vals)
            rows = base[np.lexsort(columns)]
        field, desc = keys[0]
        primary = self.values(field, rows)[0].astype(np.int64)
        primary = -primary if desc else primary
        self._sort_cache[order] = (rows, primary)
        return rows, primary

    def query(
        self,
        conditions: Sequence[Condition],
        order: Sequence[tuple[str, bool]],
        offset: int,
        limit: int,
    ) -> tuple[int, Rows]:
        """Select records: returns (total matching, the rows of the page)."""
        with self.lock:
            rows, primary = self._sorted(tuple(order))
            key_field, desc = (order[0] if order else ("id", False))
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
                selected = selected[self._mask(cond, selected)]
            return len(selected), selected[offset : offset + limit]

    def _mask(self, cond: Condition, rows: Rows) -> npt.NDArray[np.bool_]:
        vals, null = self.values(cond.field, rows)
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

    def _tables(self) -> dict[str, np.ndarray]:
        """JSON fragments of the lookup tables, so a page gathers them in one numpy call."""
        key = (len(self.messages), len(self.camp_desc))
        if self._table_key != key:
            n_camp = len(self.camp_desc)
            self._table_cache = {
                "msg": _objects([_js(m) for m in self.messages]),
                "seg": np.asarray(self._msg_segments, dtype=np.int64),
                # index camp + 1: position 0 is "no campaign"
                "camp": _objects(
                    ['"bulk_sms":null,"bulk_sms_description":null']
                    + [
                        f'"bulk_sms":"/api/bulksms/{CAMPAIGN_BASE + i}/",'
                        f'"bulk_sms_description":{_js(self.camp_desc[i])}'
                        for i in range(n_camp)
                    ]
                ),
            }
            self._table_key = key
        return self._table_cache

    def _supporter_fragments(self) -> None:
        """Pre-serialise each supporter's fields and recipient dicts (4 variants) as JSON."""
        n_sup = self.n_supporters
        self._sup_json = _objects(
            [
                f'"supporter_id":"/api/newsupporter/{SUPPORTER_BASE + i}/",'
                f'"supporter_name":{_js(self.sup_name[i])},'
                f'"supporter_email":{_js(self.sup_email[i])},'
                f'"supporter_title":{_js(self.sup_title[i])},'
                f'"supporter_public_organization":{_js(self.sup_org[i])}'
                for i in range(n_sup)
            ]
        )
        rcpt: list[str] = []
        for variant in range(4):
            for i in range(n_sup):
                phone = self.sup_phone[i]
                first, last = _js(self.sup_first[i]), _js(self.sup_last[i])
                if variant == 0:
                    text = f'{{"phone_number":"{phone}","first_name":{first},"last_name":{last}}}'
                elif variant == 1:
                    text = (f'{{"phone_number":"{phone}","first_name":{first},'
                            f'"last_name":{last},"zip":"{self.sup_zip[i]}"}}')
                elif variant == 2:
                    text = (f'{{"phone":"{phone}","name":{_js(self.sup_name[i])},'
                            f'"email":{_js(self.sup_email[i])}}}')
                else:
                    text = (f'{{"phone_number":"{phone}",'
                            f'"custom_fields":{{"district":"D-{i % 40 + 1}"}}}}')
                rcpt.append(text)
        self._rcpt_json = _objects(rcpt)

    def render_json(self, rows: Rows, bad_updated: Callable[[int], bool] | None = None
                    ) -> list[str]:
        """The JSON text of each row's SendSMS object (the serving hot path).

        Args:
            rows: the rows to render.
            bad_updated: ids for which it is true get `"updated": "not-a-date"` (a fault).
        """
        with self.lock:
            return self._render_json(rows, bad_updated)

    def _render_json(self, rows: Rows, bad_updated: Callable[[int], bool] | None) -> list[str]:
        if not len(rows):
            return []
        s = self._store
        d = self._state()
        tables = self._tables()
        fmt = s["fmt"][rows].astype(np.int64)
        group = np.where(s["whole"][rows], FORMS_PER_GROUP, 0)

        def forms(field_index: int) -> np.ndarray:
            return group + (fmt + field_index) % FORMS_PER_GROUP

        created = s["created"][rows]
        camp = s["camp"][rows].astype(np.int64)
        camp_time = (
            np.where(camp >= 0, self._camp_time[np.maximum(camp, 0)], NEVER)
            if len(self._camp_time) else np.full(len(rows), NEVER, np.int64)
        )
        inbound = s["kind"][rows] == INBOUND
        c_created = render_json(created, forms(0))
        c_updated = render_json(d.updated[rows], forms(1))
        c_timestamp = render_json(created, forms(2))
        c_send_time = render_json(d.send_time[rows], forms(3))
        c_camp_time = render_json(camp_time, forms(1))
        c_queued = render_json(np.where(inbound, NEVER, created), forms(3))
        c_sent = render_json(d.sent_at[rows], forms(2))
        c_final = render_json(d.final_at[rows], forms(0))
        ids = s["id"][rows].tolist()
        if bad_updated is not None:
            c_updated = [
                '"not-a-date"' if bad_updated(i) else u for i, u in zip(ids, c_updated, strict=True)
            ]
        sup = s["sup"][rows].astype(np.int64)
        msg = s["msg"][rows]
        segs = tables["seg"][msg].tolist()
        final_status = np.where(d.final_at[rows] != NEVER, s["fstatus"][rows], 0).tolist()
        flags = s["flags"][rows].tolist()
        carriers = _CARRIERS_JSON[self.sup_carrier[sup]].tolist()
        errs = s["err"][rows].astype(np.int64)
        err_codes = _ERROR_CODES[errs].tolist()
        err_msgs = _ERROR_MESSAGES_JSON[errs].tolist()
        raw = np.empty((len(rows), 2), dtype=">u8")
        raw[:, 0] = s["uuid_hi"][rows]
        raw[:, 1] = s["uuid_lo"][rows]
        hexall = raw.tobytes().hex()
        hexes = [hexall[i : i + 32] for i in range(0, len(hexall), 32)]
        queued = [
            "{}" if t == "null" else (
                f'{{"timestamp":{t},"provider_sid":"SM{h}"}}' if f & 1 else f'{{"timestamp":{t}}}'
            )
            for t, f, h in zip(c_queued, flags, hexes, strict=True)
        ]
        sent = [
            "{}" if t == "null" else (
                f'{{"timestamp":{t},"carrier":{c},"price":"{_PRICES.get(n) or _price(n)}",'
                f'"price_unit":"USD"}}' if f & 2 else f'{{"timestamp":{t},"carrier":{c}}}'
            )
            for t, f, c, n in zip(c_sent, flags, carriers, segs, strict=True)
        ]
        final = [
            "{}" if t == "null" else (
                f'{{"timestamp":{t},"carrier":{c}}}' if st == DELIVERED
                else f'{{"timestamp":{t},"error_code":{code},"error_message":{text}}}'
                if st == REJECTED and not f & 4
                else f'{{"timestamp":{t},"carrier":{c},"error_code":{code},"error_message":{text}}}'
            )
            for t, st, f, c, code, text in zip(
                c_final, final_status, flags, carriers, err_codes, err_msgs, strict=True
            )
        ]
        extra = s["extra"][rows].astype(np.int64)
        extra_index = np.where(extra == 2, 2 + sup % 5, extra)
        columns = zip(
            ids,
            c_created,
            c_updated,
            c_timestamp,
            c_send_time,
            tables["camp"][camp + 1].tolist(),
            c_camp_time,
            self._sup_json[sup].tolist(),
            _NUMBERS[s["num"][rows]].tolist(),
            tables["msg"][msg].tolist(),
            hexes,
            np.where(inbound, INBOUND_DIRECTION, OUTBOUND_DIRECTION).tolist(),
            d.status[rows].tolist(),
            queued,
            sent,
            final,
            final_status,
            segs,
            d.opens[rows].tolist(),
            _BOOLS[d.converted[rows].astype(np.int64)].tolist(),
            _BOOLS[d.archived[rows].astype(np.int64)].tolist(),
            self._rcpt_json[s["rcpt"][rows].astype(np.int64) * self.n_supporters + sup].tolist(),
            _EXTRAS[extra_index].tolist(),
            strict=True,
        )
        return [
            f'{{"id":{rid},"resource_uri":"/api/sendsms/{rid}/","created":{cr},'
            f'"updated":{up},"timestamp":{ts},"send_time":{st},{bu},'
            f'"bulk_sms_send_time":{bt},{su},"associated_number":"{nu}",'
            f'"message_content":{mc},'
            f'"message_uuid":"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}",'
            f'"message_direction":{di},"current_status":{cs},"queued_event":{qe},'
            f'"sent_event":{se},"delivered_event":{fe if f == DELIVERED else "{}"},'
            f'"failed_event":{fe if f == FAILED else "{}"},'
            f'"undelivered_event":{fe if f == UNDELIVERED else "{}"},'
            f'"rejected_event":{fe if f == REJECTED else "{}"},'
            f'"effective_message_count":{sg},"opens":{op},"converted":{cv},'
            f'"archived":{ar},"rcpt_dict":{rc},"_extra":{ex}}}'
            for (rid, cr, up, ts, st, bu, bt, su, nu, mc, h, di, cs, qe, se, fe, f, sg, op, cv,
                 ar, rc, ex) in columns
        ]

    def iter_ground_truth_json(self, chunk: int = 20_000) -> Iterator[list[str]]:
        """Yield every live record's JSON text, sorted by id, in chunks (hold `lock`)."""
        base = self._state().base
        for start in range(0, len(base), chunk):
            yield self._render_json(base[start : start + chunk], None)

    def ground_truth(self) -> list[dict[str, Any]]:
        """Every live record exactly as the API serves it (JSON-decoded), sorted by id."""
        with self.lock:
            out: list[dict[str, Any]] = []
            for part in self.iter_ground_truth_json():
                out.extend(orjson.loads("[" + ",".join(part) + "]"))
            return out


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of `values` (never a 2-d array, whatever the values)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _js(value: Any) -> str:
    """`value` as JSON text."""
    return orjson.dumps(value).decode()


def _price(segments: int) -> str:
    return f"-{0.0079 * segments:.5f}"


_CARRIERS_JSON = _objects([_js(c) for c in pools.CARRIERS])
_NUMBERS = _objects(pools.ORG_NUMBERS)
_BOOLS = _objects(["false", "true"])
_EXTRAS = _objects(
    ["{}", '{"source":"quorum_outreach"}']
    + [f'{{"tags":["gotv","2026"],"list_id":{17 + i}}}' for i in range(5)]
)
# err is -1 for "no error", where numpy's -1 picks the last entry: harmless, because only
# failed, undelivered and rejected events (which always have an error) show it.
_ERROR_CODES = _objects([code for code, _ in pools.ERRORS])
_ERROR_MESSAGES_JSON = _objects([_js(text) for _, text in pools.ERRORS])
_PRICES = {n: _price(n) for n in range(1, 11)}


def _concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = batches[0].keys()
    return {k: np.concatenate([b[k] for b in batches]) for k in keys}


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

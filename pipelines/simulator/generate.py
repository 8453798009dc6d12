"""Generation of the seeded world: the past up front, the future week by week, runtime texts.

Everything comes from numpy Generators seeded by the world's seed (never the wall clock). The
order of the random draws is part of the world's identity: changing it changes every world
(`tests/simulator/test_determinism.py` pins it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.simulator import pools
from pipelines.simulator.catalog import Catalog
from pipelines.simulator.schema import (
    CAMPAIGN,
    CHUNK_DAYS,
    DELIVERED,
    FAILED,
    HISTORY_DAYS,
    I64,
    INBOUND,
    INDIVIDUAL,
    REJECTED,
    TIME_COLUMNS,
    UNDELIVERED,
    Batch,
    concat,
)
from pipelines.simulator.timefmt import (
    FORMS_PER_GROUP,
    NEVER,
    NO_TIME,
    US_PER_DAY,
    US_PER_H,
    US_PER_S,
)

# Share of each final outcome of an outbound text; the rest stays at "sent" for good.
OUTCOMES = ((DELIVERED, 0.885), (UNDELIVERED, 0.045), (FAILED, 0.03), (REJECTED, 0.012))
SEND_RATE_PER_S = 25.0
"""How fast a bulk campaign is queued, texts per second."""
# Campaign slots in UTC (US business hours and evenings).
SLOTS_US = tuple(int(h * US_PER_H) for h in (14.0, 15.0, 16.5, 18.0, 21.0, 22.25, 23.0))


@dataclass(frozen=True)
class Rates:
    """How much happens per day, learnt from the generated past and kept for the future."""

    campaigns: float
    individual: float
    inbound: float


def lognormal_us(rng: np.random.Generator, median_s: float, sigma: float, size: int) -> I64:
    """Log-normal durations in µs around `median_s` seconds."""
    return (rng.lognormal(np.log(median_s), sigma, size) * US_PER_S).astype(np.int64)


def campaign_batch(rng: np.random.Generator, catalog: Catalog, camp: int, size: int) -> Batch:
    """The texts of campaign `camp` to `size` distinct supporters, queued at the send rate."""
    start = int(catalog.camp_time[camp])
    step = US_PER_S / SEND_RATE_PER_S
    created = start + (np.arange(size) * step).astype(np.int64)
    created += rng.integers(0, int(step), size)
    sup = rng.choice(catalog.n_supporters, size=size, replace=False).astype(np.int32)
    return {
        "created": created,
        "kind": np.full(size, CAMPAIGN, np.int8),
        "camp": np.full(size, camp, np.int32),
        "sup": sup,
        "msg": np.full(size, catalog.camp_msg[camp], np.int32),
        "num": np.full(size, catalog.camp_num[camp], np.int8),
    }


def individual_batch(rng: np.random.Generator, catalog: Catalog, created: I64) -> Batch:
    """Individual texts created at `created`, to random supporters."""
    size = len(created)
    sup = rng.integers(0, max(1, catalog.n_supporters), size).astype(np.int32)
    template = rng.integers(0, len(pools.INDIVIDUAL_MESSAGES), size).tolist()
    msg = np.empty(size, np.int32)
    for i, (t, s) in enumerate(zip(template, sup.tolist(), strict=True)):
        text = pools.INDIVIDUAL_MESSAGES[t].format(
            first=catalog.sup_first[s], link=f"https://qrm.us/i{t}x{s % 97}"
        )
        msg[i] = catalog.add_message(text)
    return {
        "created": created,
        "kind": np.full(size, INDIVIDUAL, np.int8),
        "camp": np.full(size, -1, np.int32),
        "sup": sup,
        "msg": msg,
        "num": rng.integers(0, len(pools.ORG_NUMBERS), size).astype(np.int8),
    }


def inbound_batch(
    rng: np.random.Generator,
    catalog: Catalog,
    size: int,
    lo: int,
    hi: int,
    replies_to: Batch | None,
) -> Batch:
    """Inbound texts in [lo, hi]; most reply (within hours) to a text of `replies_to`."""
    inbox = [catalog.add_message(text) for text in pools.INBOUND_MESSAGES]
    created = rng.integers(lo, hi + 1, size)
    sup = rng.integers(0, max(1, catalog.n_supporters), size).astype(np.int32)
    num = rng.integers(0, len(pools.ORG_NUMBERS), size).astype(np.int8)
    if replies_to is not None and len(replies_to["created"]) and size:
        is_reply = rng.random(size) < 0.75
        target = rng.integers(0, len(replies_to["created"]), size)
        after = replies_to["created"][target] + lognormal_us(rng, 5400.0, 1.1, size)
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


def plan(rng: np.random.Generator, catalog: Catalog, batch: Batch) -> Batch:
    """Plan the life of every text of `batch` (adds every other column of the store)."""
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
    sent = created + lognormal_us(rng, 2.5, 1.0, size) + 200_000
    sent = np.where(outbound & ~rejected, sent, NEVER)
    final = sent + lognormal_us(rng, 6.0, 1.4, size) + 300_000
    final = np.where(rejected, created + rng.integers(100_000, 2_500_000, size), final)
    final = np.where(fstatus > 0, final, NEVER)
    err = np.full(size, -1, np.int16)
    pick = rng.random(size)
    for status, (lo, hi) in pools.ERROR_RANGES.items():
        mask = fstatus == status
        err[mask] = (lo + (pick[mask] * (hi - lo)).astype(np.int64)).astype(np.int16)
    has_link = np.asarray(catalog.msg_has_link, np.bool_)[batch["msg"]]
    opener = (fstatus == DELIVERED) & has_link & (rng.random(size) < 0.32)
    n_opens = np.where(opener, np.minimum(rng.geometric(0.55, size), 12), 0).astype(np.int16)
    first_open = final + lognormal_us(rng, 3 * 3600.0, 1.6, size)
    first_open = np.where(opener, first_open, NEVER)
    open_gap = np.maximum(lognormal_us(rng, 12 * 3600.0, 1.0, size), 60 * US_PER_S)
    converter = opener & (rng.random(size) < 0.3)
    conv = np.where(converter, first_open + lognormal_us(rng, 12 * 3600.0, 1.2, size), NEVER)
    archiver = rng.random(size) < 0.06
    arch = created + (rng.uniform(1.0, 75.0, size) * US_PER_DAY).astype(np.int64)
    arch = np.where(archiver, arch, NEVER)
    whole = rng.random(size) < 0.4
    out = dict(batch)
    out.update(
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
        col = out[key]
        rounded = col - col % US_PER_S
        out[key] = np.where(whole & (col != NEVER), rounded, col)
    out["open_gap"] = np.maximum(out["open_gap"], US_PER_S)
    out.update(
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
    return out


def make_past(
    rng: np.random.Generator, catalog: Catalog, now: int, n: int
) -> tuple[Batch, Rates]:
    """The `n` records created in the 30 days up to `now`, sorted by creation, without ids."""
    n_inbound = round(n * 0.08)
    n_individual = round(n * 0.10)
    n_campaign = n - n_inbound - n_individual
    begin = (now // US_PER_DAY - HISTORY_DAYS) * US_PER_DAY
    sizes: list[int] = []
    while sum(sizes) < n_campaign:
        sizes.append(catalog.campaign_size(rng))
    if sizes:
        sizes[-1] -= sum(sizes) - n_campaign
    days = np.sort(rng.choice(np.arange(1, HISTORY_DAYS - 1), size=len(sizes)))
    batches: list[Batch] = []
    for size, day in zip(sizes, days.tolist(), strict=True):
        when = begin + day * US_PER_DAY + SLOTS_US[int(rng.integers(0, len(SLOTS_US)))]
        camp = catalog.new_campaign(rng, when)
        batches.append(campaign_batch(rng, catalog, camp, size))
    rates = Rates(
        campaigns=len(sizes) / HISTORY_DAYS,
        individual=n_individual / HISTORY_DAYS,
        inbound=n_inbound / HISTORY_DAYS,
    )
    individual_times = rng.integers(begin, now + 1, n_individual)
    batches.append(individual_batch(rng, catalog, individual_times))
    camp_rows = concat(batches[:-1]) if len(batches) > 1 else None
    batches.append(inbound_batch(rng, catalog, n_inbound, begin, now, camp_rows))
    past = plan(rng, catalog, concat(batches))
    order = np.lexsort((np.arange(n), past["created"]))
    for key in list(past):  # one column at a time, so only one extra copy is alive
        past[key] = past[key][order]
    return past, rates


def make_chunk(seed: int, index: int, start: int, catalog: Catalog, rates: Rates
               ) -> Batch | None:
    """The records that originate in future week `index` after `start` (None: no supporters)."""
    rng = np.random.default_rng([seed, 1, index])
    lo = start + index * CHUNK_DAYS * US_PER_DAY + US_PER_S
    hi = lo + CHUNK_DAYS * US_PER_DAY - 2 * US_PER_S
    if not catalog.n_supporters:
        return None
    batches: list[Batch] = []
    day0 = (lo // US_PER_DAY) * US_PER_DAY
    for _ in range(int(rng.poisson(rates.campaigns * CHUNK_DAYS))):
        when = day0 + int(rng.integers(0, CHUNK_DAYS + 1)) * US_PER_DAY
        when += SLOTS_US[int(rng.integers(0, len(SLOTS_US)))]
        if not lo <= when <= hi:
            continue
        camp = catalog.new_campaign(rng, when)
        batches.append(campaign_batch(rng, catalog, camp, catalog.campaign_size(rng)))
    n_ind = int(rng.poisson(rates.individual * CHUNK_DAYS))
    batches.append(individual_batch(rng, catalog, rng.integers(lo, hi + 1, n_ind)))
    camp_rows = concat(batches[:-1]) if len(batches) > 1 else None
    n_in = int(rng.poisson(rates.inbound * CHUNK_DAYS))
    batches.append(inbound_batch(rng, catalog, n_in, lo, hi + CHUNK_DAYS * US_PER_DAY, camp_rows))
    return plan(rng, catalog, concat(batches))

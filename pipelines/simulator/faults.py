"""Faults the simulator can inject into `/api/` responses, and the request statistics.

Every random decision comes from the fault RNG seeded by `Faults.seed` (a fresh one each time
the faults are switched), so a test that sends the same requests sees the same faults. Only the
rate limiter and the latency use real time, because they are about real time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from pipelines.simulator.spoil import MALFORMED_KINDS


@dataclass(frozen=True)
class Faults:
    """Which faults to inject, switchable at runtime (`SimulatorServer.faults = Faults(...)`).

    Attributes:
        latency_ms: added to every `/api/` request.
        jitter_ms: plus a uniform random 0..jitter_ms.
        rate_limit_per_s: requests per second allowed (token bucket, burst of one second);
            beyond it 429 with an empty body and `Retry-After` in seconds. None: no limit.
        error_rate: probability that a request fails with one of `error_statuses`
            (500: tastypie's `{"error_message": ...}`; 502/503/504: an HTML page).
        error_statuses: the statuses an injected error picks from (uniformly).
        drop_rate: probability that a response is cut: full `Content-Length` is announced,
            part of the body is sent, then the connection is closed.
        truncate_rate: probability that a response is complete at the HTTP level but its
            JSON body is cut short (`Content-Length` matches the cut body).
        malformed_ids: record ids always served with `updated` = "not-a-date".
        malformed_rate: share of records (chosen by id, stable across requests) served so.
        malformed_kinds: record id -> how it is malformed, one of `MALFORMED_KINDS`
            (`updated`, `event_timestamp`, `wrong_type`, `missing_id`, `bad_uri`,
            `lone_surrogate`); on list and detail responses alike. Wins over malformed_ids.
        duplicate_ids: on a list page these records are served twice: first an older version
            (`updated` one hour earlier, delivered, with a `delivered_event`), then the
            current one. The current one is the ground truth and the detail response.
        mutate_while_paging: before every list request after the first, the clock moves one
            second, this many records already served are changed (opens + 1, `updated` = now)
            and this many new records are created. 0: off.
        refuse_range_filters: filters on `id`, `created`, `updated` answer 400
            `{"error": "The 'updated' field does not allow filtering."}`.
        refuse_order_by: any `order_by` answers 400 (the field does not allow ordering).
        ignore_order_by: `order_by` is silently ignored (default id order).
        seed: seeds the fault RNG.
    """

    latency_ms: float = 0
    jitter_ms: float = 0
    rate_limit_per_s: float | None = None
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    malformed_ids: tuple[int, ...] = ()
    malformed_rate: float = 0.0
    malformed_kinds: Mapping[int, str] = field(default_factory=dict)
    duplicate_ids: tuple[int, ...] = ()
    mutate_while_paging: int = 0
    refuse_range_filters: bool = False
    refuse_order_by: bool = False
    ignore_order_by: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_statuses", tuple(int(s) for s in self.error_statuses))
        object.__setattr__(self, "malformed_ids", tuple(int(i) for i in self.malformed_ids))
        object.__setattr__(self, "duplicate_ids", tuple(int(i) for i in self.duplicate_ids))
        # JSON (the admin API) only has string keys, so ids may arrive as "123".
        kinds = {int(k): str(v) for k, v in dict(self.malformed_kinds).items()}
        unknown = sorted(set(kinds.values()) - set(MALFORMED_KINDS))
        if unknown:
            raise ValueError(
                f"unknown malformed kind(s) {', '.join(unknown)}; "
                f"use one of {', '.join(MALFORMED_KINDS)}"
            )
        object.__setattr__(self, "malformed_kinds", kinds)
        for name in ("error_rate", "drop_rate", "truncate_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.rate_limit_per_s is not None and self.rate_limit_per_s <= 0:
            raise ValueError("rate_limit_per_s must be positive (or None for no limit)")
        if self.error_rate and not self.error_statuses:
            raise ValueError("error_rate needs at least one status in error_statuses")

    def to_dict(self) -> dict[str, Any]:
        """The faults as a JSON-ready dict."""
        data = asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        data["malformed_ids"] = list(self.malformed_ids)
        data["duplicate_ids"] = list(self.duplicate_ids)
        data["malformed_kinds"] = {str(k): v for k, v in sorted(self.malformed_kinds.items())}
        return data

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with `changes` applied (unknown keys raise ValueError)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        values = dict(changes)
        for key in ("error_statuses", "malformed_ids", "duplicate_ids"):
            if key in values:
                values[key] = tuple(values[key])
        return replace(self, **values)


def _mix(seed: int, value: int) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, value): splitmix64."""
    z = (seed * 0x9E3779B97F4A7C15 + value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


class FaultState:
    """The running state of one `Faults` setting: its RNG, the token bucket, served ids."""

    def __init__(self, faults: Faults, clock: Callable[[], float] = time.monotonic) -> None:
        """Start the faults' RNG and token bucket.

        Args:
            faults: the settings.
            clock: monotonic seconds for the rate limiter (tests inject one they move).
        """
        self.faults = faults
        self.clock = clock
        self.rng = random.Random(faults.seed)
        self.lock = threading.Lock()
        self.tokens = float(faults.rate_limit_per_s or 0.0)
        self.refilled = clock()
        self.list_requests = 0
        self.served: list[np.ndarray] = []

    def delay_s(self) -> float:
        """Seconds to wait before answering."""
        f = self.faults
        if not f.latency_ms and not f.jitter_ms:
            return 0.0
        with self.lock:
            jitter = self.rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0
        return (f.latency_ms + jitter) / 1000.0

    def retry_after(self) -> int | None:
        """None if the request may go on, else the seconds to put in `Retry-After`."""
        rate = self.faults.rate_limit_per_s
        if rate is None:
            return None
        with self.lock:
            now = self.clock()
            self.tokens = min(rate, self.tokens + (now - self.refilled) * rate)
            self.refilled = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - self.tokens) / rate))

    def error_status(self) -> int | None:
        """An injected error status, or None."""
        f = self.faults
        if not f.error_rate:
            return None
        with self.lock:
            if self.rng.random() < f.error_rate:
                return self.rng.choice(f.error_statuses)
        return None

    def body_fault(self, length: int) -> tuple[str, int] | None:
        """("drop" | "truncate", bytes to send) for a body of `length` bytes, or None."""
        f = self.faults
        if length < 2 or not (f.drop_rate or f.truncate_rate):
            return None
        with self.lock:
            if f.drop_rate and self.rng.random() < f.drop_rate:
                return "drop", self.rng.randint(1, length - 1)
            if f.truncate_rate and self.rng.random() < f.truncate_rate:
                return "truncate", self.rng.randint(1, length - 1)
        return None

    def is_malformed(self, record_id: int) -> bool:
        """Whether this record is served malformed (in any way)."""
        return self.malformed_kind(record_id) is not None

    def malformed_kind(self, record_id: int) -> str | None:
        """How this record is served malformed (one of `MALFORMED_KINDS`), or None."""
        f = self.faults
        kind = f.malformed_kinds.get(record_id)
        if kind is not None:
            return kind
        if record_id in f.malformed_ids:
            return "updated"
        if f.malformed_rate and _mix(f.seed, record_id) < f.malformed_rate:
            return "updated"
        return None

    @property
    def spoils_records(self) -> bool:
        """Whether any record-level fault (malformed, duplicated) is on."""
        f = self.faults
        return bool(f.malformed_ids or f.malformed_rate or f.malformed_kinds or f.duplicate_ids)

    def mutation(self) -> tuple[list[int], int, int] | None:
        """Before a list request: (ids to touch, records to create, seed), or None."""
        count = self.faults.mutate_while_paging
        with self.lock:
            self.list_requests += 1
            if count <= 0 or self.list_requests == 1 or not self.served:
                return None
            served = np.unique(np.concatenate(self.served))
            picked = self.rng.sample(served.tolist(), min(count, len(served)))
            return sorted(picked), count, self.rng.getrandbits(32)

    def remember_served(self, ids: list[int]) -> None:
        """Keep the ids of a served list page (for mutate_while_paging)."""
        if self.faults.mutate_while_paging <= 0 or not ids:
            return
        with self.lock:
            self.served.append(np.asarray(ids, dtype=np.int64))
            if len(self.served) > 200:
                del self.served[:100]


@dataclass
class Stats:
    """Counters of the `/api/` requests served (admin requests are not counted)."""

    requests: int = 0
    requests_by_status: dict[int, int] = field(default_factory=dict)
    records_served: int = 0
    pages_served: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False,
                                       compare=False)

    def count(self, status: int, records: int = 0, fault: str | None = None,
              page: bool = False) -> None:
        """Count one answered request (just before its response is written).

        Args:
            status: the HTTP status answered.
            records: SendSMS objects in the body.
            fault: the fault that shaped the response, if any.
            page: the request was a list request answered 200 (a page of `/api/sendsms/`).
        """
        with self._lock:
            self.requests += 1
            self.requests_by_status[status] = self.requests_by_status.get(status, 0) + 1
            self.records_served += records
            if page:
                self.pages_served += 1
            if fault:
                self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1
            self._lock.notify_all()

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Block until `n` `/api/` requests have been answered since the last reset.

        A handshake for tests: start the next action once the simulator has got this far,
        instead of sleeping. Returns False if `timeout` seconds passed first.
        """
        with self._lock:
            return self._lock.wait_for(lambda: self.requests >= n, timeout)

    def wait_for_pages(self, n: int, timeout: float) -> bool:
        """Block until `n` list pages (200s of `GET /api/sendsms/`) have been served.

        Returns False if `timeout` seconds passed first.
        """
        with self._lock:
            return self._lock.wait_for(lambda: self.pages_served >= n, timeout)

    def count_fault(self, fault: str) -> None:
        """Count an injected fault that did not end the request (say a malformed record)."""
        with self._lock:
            self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1

    def reset(self) -> None:
        """Clear every counter."""
        with self._lock:
            self.requests = 0
            self.requests_by_status = {}
            self.records_served = 0
            self.pages_served = 0
            self.faults_injected = {}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        with self._lock:
            return {
                "requests": self.requests,
                "requests_by_status": {str(k): v for k, v in self.requests_by_status.items()},
                "records_served": self.records_served,
                "pages_served": self.pages_served,
                "faults_injected": dict(self.faults_injected),
            }

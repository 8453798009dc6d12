"""The hand-made raw data set every mart test reads, with its answers worked out by hand.

T0 = 2026-03-02 09:00 UTC. Number A = +15550000001, B = +15550000002.

Campaign 10 "Spring rally" (number A, all sent at T0):
  1  s1  delivered  queued T0, sent +2 s, delivered +10 s; 1 segment, 2 opens, converted
  2  s2  delivered  queued T0, sent +3 s, delivered +30 s; 2 segments
  3  s3  failed     queued, sent +1 s, failed +5 s, code 30008
  4  s4  undelivered queued, sent, undelivered +6 s, code 30007
  5  s5  rejected   queued, rejected +1 s, code 30007
  6  s1  delivered  ARCHIVED, 5 opens (left out of every metric)
  7  s6  delivered  no events at all (status counts, no times)
  8  s7  sent       queued, sent (in flight)
  9  s12 delivered  DELETED at the source (gone everywhere)
Campaign 11 "No deliveries" (number B):
  30 s8  failed  at T0+24 h, code 30003
  31 s8  failed  at T0+25 h, no failed event (no code)
  32 s9  queued  at T0+24 h
Campaign 12: 40 s10 delivered at T0+24 h, ARCHIVED (the campaign has 0 messages)
Individual text: 33 s8 delivered at T0 (number B)
Inbound (number A): 20 s1 at T0+1 h (replies to 1); 21 s2 at T0+73 h (too late);
  22 s3 at T0+72 h (exactly 72 h: replies to 3); 23 s4 at T0+2 h ARCHIVED;
  50 s11 at T0+120 h (an inbound-only day, a supporter without messages)
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.warehouse.runner import BuildResult, build_models
from tests.warehouse.rawdata import at, event, sms, write_raw

A, B = "+15550000001", "+15550000002"


def hand_made_messages() -> list[dict[str, object]]:
    c10 = {"campaign": 10, "number": A, "description": "Spring rally"}
    c11 = {"campaign": 11, "number": B, "description": "No deliveries"}
    return [
        sms(1, status="delivered", supporter=1, segments=1, opens=2, converted=True, **c10),
        sms(2, status="delivered", supporter=2, segments=2, **c10),
        sms(3, status="failed", supporter=3, **c10),
        sms(4, status="undelivered", supporter=4, **c10),
        sms(5, status="rejected", supporter=5, **c10),
        sms(6, status="delivered", supporter=1, opens=5, converted=True, archived=True, **c10),
        sms(7, status="delivered", supporter=6, **c10),
        sms(8, status="sent", supporter=7, **c10),
        sms(9, status="delivered", supporter=12, opens=1, deleted=True, **c10),
        sms(30, status="failed", supporter=8, send_time=at(hours=24), **c11),
        sms(31, status="failed", supporter=8, send_time=at(hours=25), **c11),
        sms(32, status="queued", supporter=9, send_time=at(hours=24), **c11),
        sms(40, status="delivered", supporter=10, campaign=12, number=B, archived=True,
            send_time=at(hours=24), description="All archived"),
        sms(33, status="delivered", supporter=8, number=B),
        sms(20, status="received", direction="inbound", supporter=1, number=A,
            send_time=at(hours=1)),
        sms(21, status="received", direction="inbound", supporter=2, number=A,
            send_time=at(hours=73)),
        sms(22, status="received", direction="inbound", supporter=3, number=A,
            send_time=at(hours=72)),
        sms(23, status="received", direction="inbound", supporter=4, number=A,
            send_time=at(hours=2), archived=True),
        sms(50, status="received", direction="inbound", supporter=11, number=A,
            send_time=at(hours=120)),
    ]


def hand_made_events() -> list[dict[str, object]]:
    return [
        event(1, "queued", at()), event(1, "sent", at(seconds=2), carrier="Verizon"),
        event(1, "delivered", at(seconds=10), carrier="Verizon"),
        event(2, "queued", at()), event(2, "sent", at(seconds=3)),
        event(2, "delivered", at(seconds=30)),
        event(3, "queued", at()), event(3, "sent", at(seconds=1)),
        event(3, "failed", at(seconds=5), "30008", "Unknown error", "T-Mobile"),
        event(4, "queued", at()), event(4, "sent", at(seconds=1)),
        event(4, "undelivered", at(seconds=6), "30007", "Carrier violation"),
        event(5, "queued", at()), event(5, "rejected", at(seconds=1), "30007", "Filtered"),
        event(6, "queued", at()), event(6, "delivered", at(seconds=4)),
        event(8, "queued", at()), event(8, "sent", at(seconds=2)),
        event(9, "queued", at()), event(9, "delivered", at(seconds=1)),
        event(30, "queued", at(hours=24)), event(30, "sent", at(hours=24, seconds=1)),
        event(30, "failed", at(hours=24, seconds=9), "30003", "Unreachable"),
        event(31, "queued", at(hours=25)), event(31, "sent", at(hours=25, seconds=1)),
        event(32, "queued", at(hours=24)),
        event(33, "queued", at()), event(33, "sent", at(seconds=1)),
        event(33, "delivered", at(seconds=7)),
        event(40, "queued", at(hours=24)), event(40, "delivered", at(hours=24, seconds=3)),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:
    """The hand-made raw data, built once per test module."""
    path = tmp_path_factory.mktemp("warehouse") / "quorum.duckdb"
    write_raw(path, hand_made_messages(), hand_made_events())
    return path, build_models(path)


@pytest.fixture()
def fresh_db(tmp_path: Path) -> Path:
    """A new database holding the hand-made raw data, not yet built."""
    return write_raw(tmp_path / "quorum.duckdb", hand_made_messages(), hand_made_events())


def query(path: Path, sql: str) -> list[dict[str, object]]:
    """Rows of a query as dicts."""
    with duckdb.connect(str(path), read_only=True) as connection:
        cursor = connection.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(params=["duckdb", "postgres"])
def engine_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Each engine in turn with an empty warehouse: (engine, DuckDB path or PostgreSQL
    credentials of a fresh database in the throwaway cluster)."""
    if request.param == "duckdb":
        return "duckdb", str(tmp_path / "warehouse.duckdb")
    return "postgres", str(request.getfixturevalue("postgres_database"))

"""The supporter totals are maintained additively, and engagement equals a full rebuild.

A night archives a supporter's only delivered message (her failure streak then counts every
failure), deletes the higher-id one of two delivered messages sent at one instant (the streak
then starts at the other, and a failure between the two ids joins it), gives a send time to a
message that had none, archives a supporter's only text (her row goes) and adds a supporter
whose one message has no send time. Real DuckDB files and a real PostgreSQL database, each
compared with a rebuild from scratch.
"""

from __future__ import annotations

from typing import Any

from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.runner import build_models
from tests.warehouse.rawdata import at, event, sms, write_first_load, write_second_load
from tests.warehouse.test_engines import assert_same, snapshot

NIGHT_TWO_IDS = (101, 105, 112, 121, 131, 141)
EVENTS = [event(102, "failed", at(1.1), "30003", "unreachable")]


def unsent(row: dict[str, Any]) -> dict[str, Any]:
    """The row without a send time (and without the creation time fct falls back on)."""
    return {**row, "send_time": None, "created": None}


def first_night() -> list[dict[str, Any]]:
    return [
        # supporter 21: a delivery, then two failures, then an inbound reply
        sms(101, status="delivered", supporter=21, send_time=at(0)),
        sms(102, status="failed", supporter=21, send_time=at(1)),
        sms(103, status="undelivered", supporter=21, send_time=at(2)),
        sms(104, status="received", direction="inbound", supporter=21, send_time=at(3)),
        # supporter 22: four messages at one instant; the streak starts after id 112
        sms(110, status="failed", supporter=22, send_time=at(5)),
        sms(111, status="delivered", supporter=22, send_time=at(5)),
        sms(112, status="delivered", supporter=22, send_time=at(5)),
        sms(113, status="failed", supporter=22, send_time=at(5)),
        # supporter 23: a message without a send time comes after every sent one
        unsent(sms(121, status="sent", supporter=23)),
        sms(122, status="delivered", supporter=23, send_time=at(1)),
        # supporter 24: one text
        sms(131, status="delivered", supporter=24, send_time=at(0)),
    ]


def second_night() -> list[dict[str, Any]]:
    kept = [m for m in first_night() if m["id"] not in NIGHT_TWO_IDS]
    return [
        *kept,
        sms(101, status="delivered", supporter=21, send_time=at(0), archived=True),
        sms(105, status="rejected", supporter=21, send_time=at(4)),
        sms(112, status="delivered", supporter=22, send_time=at(5), deleted=True),
        sms(121, status="failed", supporter=23, send_time=at(6)),
        sms(131, status="delivered", supporter=24, send_time=at(0), archived=True),
        unsent(sms(141, status="queued", supporter=25)),
    ]


def engagement(target: str) -> dict[object, tuple[object, ...]]:
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            "select supporter_id, messages_received, failures, inbound_texts, last_status, "
            "consecutive_failed_deliveries from analytics.sms_supporter_engagement"
        ).rows
    return {row[0]: tuple(row[1:]) for row in rows}


def test_engagement_follows_archived_deleted_and_unsent_messages(
    engine_target: tuple[str, str],
) -> None:
    engine, target = engine_target
    write_first_load(engine, target, first_night(), EVENTS)
    assert build_models(target).mode == "full"
    assert engagement(target) == {
        21: (3, 2, 1, "undelivered", 2),
        22: (4, 2, 0, "failed", 1),
        23: (2, 0, 0, "sent", 0),
        24: (1, 0, 0, "delivered", 0),
    }
    write_second_load(target, second_night(), EVENTS, reloaded_records=NIGHT_TWO_IDS,
                      reloaded_events=())

    result = build_models(target)

    assert result.mode == "incremental", result.reason
    assert "intermediate.int_sms_supporter_totals" in result.incremental_tables
    assert "analytics.sms_supporter_engagement" in result.incremental_tables
    assert engagement(target) == {
        # no delivered message left: every failure is in the streak
        21: (3, 3, 1, "rejected", 3),
        # the streak starts after id 111 now: 113 counts, 110 (a lower id) does not
        22: (3, 2, 0, "failed", 1),
        # 121 is sent now, after 122: the latest status is its, and it failed
        23: (2, 1, 0, "failed", 1),
        25: (1, 0, 0, "queued", 0),
    }
    incremental = snapshot(target)
    assert build_models(target, full_refresh=True).mode == "full"
    assert_same(incremental, snapshot(target))

"""fct_sms_message's replies stay exact when only the changed records are read from raw.

An incremental build computes the night's changed records from their raw rows and feeds the
other records of their supporters from fct's own narrow columns; only those whose reply
columns move are rewritten. A night brings a reply to an old message, archives a replied
message (its reply moves to an older one), deletes an inbound text at the source, moves a
message's send time with a late event (an earlier text now answers it) and touches a
supporter whose replies stay as they were. A supporter's exchange weeks before the night is
not read at all (`-- together_within: send_time 72 hours`), while a message 100 hours before a
change is (its reply, 40 hours before the change, is recomputed and must still find it). Real
DuckDB files and a real PostgreSQL database, each compared with a rebuild from scratch.
"""

from __future__ import annotations

from typing import Any

from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.runner import build_models
from tests.warehouse.rawdata import (
    at,
    event,
    sms,
    write_first_load,
    write_second_load,
)
from tests.warehouse.test_engines import assert_same, snapshot

#: records the second night loads again (new or updated) and records with a late event
NIGHT_TWO_RECORDS = {2, 7, 20, 42}
NIGHT_TWO_EVENTS = {5}
#: records whose reply columns the night moves although they did not change themselves
MOVED = {1, 3, 4, 21, 23}
#: the unchanged records of the night's supporters within 2 x 72 hours of a change: fed to
#: the query from fct's own columns (30 and 31, 400 hours earlier, are not; 40, 100 hours
#: before the change to 42, is: its reply 41 lies within 72 hours of that change)
NEAR_OTHERS = {1, 3, 21, 4, 23, 6, 24, 40, 41}


def unsent(row: dict[str, Any]) -> dict[str, Any]:
    """The record without a send time of its own (its events give it one)."""
    return {**row, "send_time": None}


def first_night() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = [
        sms(1, status="delivered", campaign=10, supporter=1, send_time=at(0)),
        sms(2, status="delivered", campaign=10, supporter=2, send_time=at(0)),
        sms(3, status="delivered", campaign=10, supporter=2, send_time=at(-10)),
        sms(21, status="received", direction="inbound", supporter=2, send_time=at(1)),
        sms(4, status="delivered", campaign=11, supporter=3, send_time=at(0)),
        sms(22, status="received", direction="inbound", supporter=3, send_time=at(2)),
        unsent(sms(5, status="sent", campaign=11, supporter=4, send_time=at(0))),
        sms(23, status="received", direction="inbound", supporter=4, send_time=at(0.5)),
        sms(6, status="delivered", campaign=12, supporter=5, send_time=at(0)),
        sms(7, status="delivered", campaign=12, supporter=5, send_time=at(-20)),
        sms(24, status="received", direction="inbound", supporter=5, send_time=at(1)),
        # supporter 1's exchange weeks earlier: far from every change of the second night
        sms(30, status="delivered", campaign=13, supporter=1, send_time=at(-400)),
        sms(31, status="received", direction="inbound", supporter=1, send_time=at(-399)),
        # supporter 6: a reply 60 hours after its message, both days before the night's change
        sms(40, status="delivered", campaign=14, supporter=6, send_time=at(-100)),
        sms(41, status="received", direction="inbound", supporter=6, send_time=at(-40)),
        sms(42, status="delivered", campaign=14, supporter=6, send_time=at(0)),
    ]
    return messages, [event(5, "queued", at(1))]


def second_night() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages, events = first_night()
    changed = {
        # archived: its reply (21) now answers the supporter's older message 3
        2: sms(2, status="delivered", campaign=10, supporter=2, send_time=at(0), archived=True),
        # gone at the source: message 4 loses its reply
        22: sms(22, status="received", direction="inbound", supporter=3, send_time=at(2),
                deleted=True),
        # opened: supporter 5's replies stay as they were
        7: sms(7, status="delivered", campaign=12, supporter=5, send_time=at(-20), opens=1),
        # opened: supporter 6's reply 41 is near this change, its message 40 only near 41
        42: sms(42, status="delivered", campaign=14, supporter=6, send_time=at(0), opens=1),
    }
    messages = [changed.get(row["id"], row) for row in messages]
    # a reply, ten hours later, to an old message nothing else touched
    messages.append(sms(20, status="received", direction="inbound", supporter=1,
                        send_time=at(10)))
    # a late sent event moves message 5 before the supporter's text 23, which now answers it
    return messages, [*events, event(5, "sent", at(0.2))]


def load(engine: str, target: str) -> None:
    """The first night's raw tables, every row with load id 1."""
    write_first_load(engine, target, *first_night())


def load_second_night(target: str) -> None:
    """Replace the raw rows by the second night's; what it loads again gets load id 2."""
    write_second_load(target, *second_night(), reloaded_records=NIGHT_TWO_RECORDS,
                      reloaded_events=NIGHT_TWO_EVENTS)


def replies(target: str) -> dict[int, tuple[Any, int]]:
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            "select sendsms_id, reply_to_sendsms_id, replies from analytics.fct_sms_message"
        ).rows
    return {int(row[0]): (row[1], int(row[2])) for row in rows}


def rewritten(target: str) -> set[int]:
    """The fct records the last build recomputed (its bookkeeping, read by the publisher)."""
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            "select sendsms_id from quorum_ops.model_build_keys__fct_sms_message__sendsms_id"
        ).rows
    return {int(row[0]) for row in rows}


def test_replies_follow_the_nights_changes_without_rereading_the_supporters_history(
    engine_target: tuple[str, str],
) -> None:
    engine, target = engine_target
    load(engine, target)
    assert build_models(target).mode == "full"
    before = replies(target)
    assert before[21] == (2, 0) and before[4] == (None, 1) and before[23] == (None, 0)
    load_second_night(target)

    result = build_models(target)

    assert result.mode == "incremental", result.reason
    after = replies(target)
    assert after[1] == (None, 1) and after[20] == (1, 0)  # a reply to an old message
    assert after[21] == (3, 0) and after[3] == (None, 1)  # 2 archived: 21 answers 3
    assert 22 not in after and after[4] == (None, 0)  # the reply deleted at the source
    assert after[23] == (5, 0) and after[5] == (None, 1)  # the late event moved 5 earlier
    assert after[24] == (6, 0) and after[6] == (None, 1)  # supporter 5: as before
    assert after[31] == (30, 0) and after[30] == (None, 1)  # weeks earlier: as before
    assert after[41] == (40, 0) and after[40] == (None, 1)  # found beyond 72 hours: as before
    # only the supporters' records near a change were read from fct (not 30 and 31)
    assert result.group_rows == {"analytics.fct_sms_message": len(NEAR_OTHERS)}
    # the changed records (22 deleted, 5 by its event) and the moved ones; 6 and 24 kept
    assert rewritten(target) == NIGHT_TWO_RECORDS | NIGHT_TWO_EVENTS | {22} | MOVED
    incremental = snapshot(target)
    assert build_models(target, full_refresh=True).mode == "full"
    assert_same(incremental, snapshot(target))

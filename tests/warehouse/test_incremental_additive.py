"""Additive maintenance of int_sms_outcome_totals equals a full rebuild in its hard cases.

A night removes the record holding a campaign's first send time, moves the one holding its
last send time earlier, deletes the only record of a sender number and a campaign, archives
the only record of a day, fails a message with a late event and adds a new campaign: the sums
are maintained by adding the new versions and subtracting the old ones, the lost minimum and
maximum are recomputed from the records, and the emptied keys lose their rows. Real DuckDB
files and a real PostgreSQL database, each compared with a rebuild from scratch.
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

LONELY_NUMBER = "+15550000009"
NIGHT_TWO_IDS = (1, 2, 3, 4, 5, 8)


def first_night() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = [
        sms(1, status="delivered", campaign=10, supporter=1, send_time=at(0)),
        sms(2, status="sent", campaign=10, supporter=2, send_time=at(1)),
        sms(3, status="delivered", campaign=10, supporter=3, send_time=at(2), opens=2),
        sms(4, status="failed", campaign=11, supporter=4, send_time=at(3), number=LONELY_NUMBER),
        sms(5, status="delivered", campaign=11, supporter=5, send_time=at(48)),
        sms(7, status="received", direction="inbound", supporter=3, send_time=at(2.5)),
    ]
    return messages, [event(4, "failed", at(3.1), "30007", "filtered")]


def second_night() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = [
        sms(1, status="delivered", campaign=10, supporter=1, send_time=at(0), deleted=True),
        sms(2, status="failed", campaign=10, supporter=2, send_time=at(1)),
        sms(3, status="delivered", campaign=10, supporter=3, send_time=at(1.5), opens=2),
        sms(4, status="failed", campaign=11, supporter=4, send_time=at(3), number=LONELY_NUMBER,
            deleted=True),
        sms(5, status="delivered", campaign=11, supporter=5, send_time=at(48), archived=True),
        sms(7, status="received", direction="inbound", supporter=3, send_time=at(2.5)),
        sms(8, status="sent", campaign=12, supporter=2, send_time=at(96)),
    ]
    events = [
        event(4, "failed", at(3.1), "30007", "filtered"),
        event(2, "failed", at(1.2), "30003", "unreachable"),
    ]
    return messages, events


def load_first_night(engine: str, target: str) -> None:
    """The raw tables with the first night's rows, every one with the first load id."""
    write_first_load(engine, target, *first_night())


def load_second_night(target: str) -> None:
    """Replace the raw rows by the second night's; its changed records get load id 2."""
    write_second_load(target, *second_night(), reloaded_records=NIGHT_TWO_IDS,
                      reloaded_events=NIGHT_TWO_IDS)


def campaign_totals(target: str) -> dict[object, tuple[object, ...]]:
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            "select bulk_sms_id, texts, messages, failures, first_send_time, last_send_time "
            "from intermediate.int_sms_outcome_totals where grain = 'campaign'"
        ).rows
    return {row[0]: tuple(row[1:]) for row in rows}


def senders(target: str) -> set[object]:
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            "select associated_number from intermediate.int_sms_outcome_totals "
            "where grain = 'sender'"
        ).rows
    return {row[0] for row in rows}


def test_additive_totals_follow_removed_extremes_and_emptied_keys(
    engine_target: tuple[str, str],
) -> None:
    engine, target = engine_target
    load_first_night(engine, target)
    assert build_models(target).mode == "full"
    load_second_night(target)

    result = build_models(target)

    assert result.mode == "incremental", result.reason
    assert "intermediate.int_sms_outcome_totals" in result.incremental_tables
    campaigns = campaign_totals(target)
    # id 1 held campaign 10's first send time and is gone; id 3 held its last one and moved
    assert campaigns[10] == (2, 2, 1, at(1), at(1.5))
    assert campaigns[11] == (1, 0, 0, None, None)  # id 4 deleted, id 5 archived
    assert campaigns[12] == (1, 1, 0, at(96), at(96))
    assert LONELY_NUMBER not in senders(target)
    incremental = snapshot(target)
    assert build_models(target, full_refresh=True).mode == "full"
    assert_same(incremental, snapshot(target))

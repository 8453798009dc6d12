"""Every mart metric against answers worked out by hand (see conftest.py for the data set)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipelines.warehouse.runner import BuildResult
from tests.warehouse.conftest import A, B, query
from tests.warehouse.rawdata import at, sms, write_raw

Built = tuple[Path, BuildResult]


def by_key(rows: list[dict[str, object]], key: str) -> dict[object, dict[str, object]]:
    return {row[key]: row for row in rows}


def test_fct_has_every_record_but_the_deleted_one(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.fct_sms_message"), "sendsms_id")
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 22, 23, 30, 31, 32, 33, 40, 50]
    assert rows[6]["archived"] is True and rows[6]["is_message"] is False
    assert rows[20]["direction"] == "inbound" and rows[20]["is_message"] is False
    assert rows[1]["status"] == "delivered" and rows[1]["status_category"] == "delivered"
    assert rows[8]["status_category"] == "in_flight"
    assert rows[5]["status_category"] == "failed"
    assert rows[20]["status_category"] == "inbound"


def test_fct_and_the_campaign_inputs_are_stored_in_sendsms_id_order(built: Built) -> None:
    """`-- stored_order: sendsms_id`: at 10M records fct then compresses to two thirds and the
    nightly build's scans of it read less (docs/performance.md)."""
    path, result = built
    assert result.notes == ()
    for table in ("analytics.fct_sms_message", "intermediate.int_sms_campaign_detail_inputs"):
        # rowid is a row's place in its DuckDB table
        rows = query(path, f"select sendsms_id from {table} order by rowid")
        stored = [row["sendsms_id"] for row in rows]
        assert len(stored) > 5 and stored == sorted(stored), table


def test_fct_times_durations_and_errors(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.fct_sms_message"), "sendsms_id")
    one = rows[1]
    assert one["queued_at"] == at() and one["sent_at"] == at(seconds=2)
    assert one["delivered_at"] == at(seconds=10)
    assert one["seconds_to_send"] == 2.0 and one["seconds_to_deliver"] == 10.0
    assert one["send_date"] == date(2026, 3, 2)
    assert one["segments"] == 1 and one["opens"] == 2 and one["is_opened"] is True
    assert one["converted"] is True
    # events missing for a status: the status still counts, the times are NULL
    assert rows[7]["status"] == "delivered"
    assert rows[7]["queued_at"] is None and rows[7]["seconds_to_deliver"] is None
    assert rows[31]["status"] == "failed" and rows[31]["failed_at"] is None
    assert rows[31]["error_code"] is None
    # the error of the event matching the status
    assert (rows[3]["error_code"], rows[3]["error_message"]) == ("30008", "Unknown error")
    assert rows[3]["failed_at"] == at(seconds=5) and rows[3]["carrier"] == "T-Mobile"
    assert rows[4]["undelivered_at"] == at(seconds=6) and rows[4]["error_code"] == "30007"
    assert rows[5]["rejected_at"] == at(seconds=1) and rows[5]["seconds_to_send"] is None
    assert rows[2]["is_opened"] is False and rows[30]["send_date"] == date(2026, 3, 3)


def test_fct_replies_within_72_hours(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.fct_sms_message"), "sendsms_id")
    assert rows[20]["reply_to_sendsms_id"] == 1  # 1 h after; the archived 6 is no candidate
    assert rows[22]["reply_to_sendsms_id"] == 3  # exactly 72 h: counts
    assert rows[21]["reply_to_sendsms_id"] is None  # 73 h: too late
    assert rows[23]["reply_to_sendsms_id"] is None  # archived inbound
    assert rows[50]["reply_to_sendsms_id"] is None  # supporter never texted
    assert {k: r["replies"] for k, r in rows.items() if r["replies"]} == {1: 1, 3: 1}


def test_campaign_performance(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.sms_campaign_performance"), "bulk_sms_id")
    assert sorted(rows) == [10, 11, 12]
    c10 = rows[10]
    assert c10["campaign_description"] == "Spring rally"
    assert c10["first_send_time"] == at() and c10["last_send_time"] == at()
    counts = {k: c10[k] for k in ("messages", "queued", "sent", "delivered", "undelivered",
                                  "failed", "rejected", "failures")}
    assert counts == {"messages": 7, "queued": 0, "sent": 1, "delivered": 3,
                      "undelivered": 1, "failed": 1, "rejected": 1, "failures": 3}
    assert c10["delivery_rate"] == pytest.approx(3 / 7)
    assert c10["failure_rate"] == pytest.approx(3 / 7)
    assert c10["segments"] == 8
    assert (c10["unique_opens"], c10["total_opens"], c10["conversions"]) == (1, 2, 1)
    assert c10["open_rate"] == pytest.approx(1 / 3)
    assert c10["conversion_rate"] == pytest.approx(1 / 3)
    # delivered with both times: 10 s and 30 s (7 has no events)
    assert c10["median_seconds_to_deliver"] == pytest.approx(20.0)
    assert c10["p90_seconds_to_deliver"] == pytest.approx(28.0)
    assert c10["replies"] == 2


def test_campaign_with_no_deliveries_and_all_archived_campaign(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.sms_campaign_performance"), "bulk_sms_id")
    c11 = rows[11]
    assert (c11["messages"], c11["delivered"], c11["failed"], c11["queued"]) == (3, 0, 2, 1)
    assert c11["delivery_rate"] == 0.0 and c11["failure_rate"] == pytest.approx(2 / 3)
    assert c11["open_rate"] is None and c11["conversion_rate"] is None
    assert c11["median_seconds_to_deliver"] is None and c11["replies"] == 0
    assert c11["first_send_time"] == at(hours=24) and c11["last_send_time"] == at(hours=25)
    c12 = rows[12]
    assert c12["messages"] == 0 and c12["delivery_rate"] is None
    assert c12["failure_rate"] is None and c12["first_send_time"] is None


def test_campaign_funnel(built: Built) -> None:
    path, _ = built
    rows = query(path, 'select bulk_sms_id, stage_order, stage, "count", pct_of_messages, '
                       "pct_of_previous_stage from analytics.sms_campaign_funnel")
    funnel = {(r["bulk_sms_id"], r["stage"]): r for r in rows}
    assert len(rows) == 15
    stages = ["messages", "sent", "delivered", "opened", "converted"]
    assert [funnel[(10, s)]["count"] for s in stages] == [7, 6, 3, 1, 1]
    assert [funnel[(10, s)]["stage_order"] for s in stages] == [1, 2, 3, 4, 5]
    assert [funnel[(10, s)]["pct_of_messages"] for s in stages] == pytest.approx(
        [1, 6 / 7, 3 / 7, 1 / 7, 1 / 7]
    )
    assert funnel[(10, "messages")]["pct_of_previous_stage"] is None
    assert [funnel[(10, s)]["pct_of_previous_stage"] for s in stages[1:]] == pytest.approx(
        [6 / 7, 1 / 2, 1 / 3, 1.0]
    )
    assert [funnel[(11, s)]["count"] for s in stages] == [3, 2, 0, 0, 0]
    assert funnel[(11, "delivered")]["pct_of_previous_stage"] == 0.0
    assert funnel[(11, "opened")]["pct_of_previous_stage"] is None  # 0 / 0
    assert all(funnel[(12, s)]["count"] == 0 for s in stages)
    assert all(funnel[(12, s)]["pct_of_messages"] is None for s in stages)


def test_daily_overview(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.sms_daily_overview"), "send_date")
    assert sorted(rows) == [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 5), date(2026, 3, 7)]
    d2 = rows[date(2026, 3, 2)]
    assert {k: d2[k] for k in ("messages", "inbound", "queued", "sent", "delivered",
                               "undelivered", "failed", "rejected", "failures", "segments",
                               "unique_opens", "opens", "conversions")} == {
        "messages": 8, "inbound": 1, "queued": 0, "sent": 1, "delivered": 4, "undelivered": 1,
        "failed": 1, "rejected": 1, "failures": 3, "segments": 9, "unique_opens": 1,
        "opens": 2, "conversions": 1,
    }
    assert (d2["delivery_rate"], d2["failure_rate"]) == (0.5, 0.375)
    assert (d2["open_rate"], d2["conversion_rate"]) == (0.25, 0.25)
    d3 = rows[date(2026, 3, 3)]
    assert (d3["messages"], d3["delivered"], d3["failed"], d3["queued"]) == (3, 0, 2, 1)
    assert d3["failure_rate"] == pytest.approx(2 / 3) and d3["conversion_rate"] is None
    # inbound-only days: a row, no rate
    for day, inbound in ((date(2026, 3, 5), 2), (date(2026, 3, 7), 1)):
        assert rows[day]["messages"] == 0 and rows[day]["inbound"] == inbound
        assert rows[day]["delivery_rate"] is None and rows[day]["failure_rate"] is None


def test_sender_number_health(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.sms_sender_number_health"),
                  "associated_number")
    a, b = rows[A], rows[B]
    assert (a["messages"], a["inbound"], a["delivered"], a["failures"], a["rejected"]) == (
        7, 4, 3, 3, 1)
    assert a["delivery_rate"] == pytest.approx(3 / 7)
    assert a["failure_rate"] == pytest.approx(3 / 7)
    assert a["rejection_rate"] == pytest.approx(1 / 7)
    assert (a["top_error_code"], a["top_error_code_count"]) == ("30007", 2)
    assert a["recent_messages"] == 7 and a["last_send_time"] == at()
    assert (b["messages"], b["delivered"], b["failures"], b["rejected"]) == (4, 1, 2, 0)
    assert (b["top_error_code"], b["top_error_code_count"]) == ("30003", 1)
    assert b["recent_failure_rate"] == 0.5 and b["last_send_time"] == at(hours=25)


def test_delivery_errors(built: Built) -> None:
    path, _ = built
    rows = query(path, "select * from analytics.sms_delivery_errors")
    got = {(r["error_code"], r["status"]): (r["failures"], r["share_of_failures"],
                                            r["campaigns_affected"]) for r in rows}
    assert got == {
        ("30008", "failed"): (1, 0.2, 1),
        ("30007", "undelivered"): (1, 0.2, 1),
        ("30007", "rejected"): (1, 0.2, 1),
        ("30003", "failed"): (1, 0.2, 1),
        (None, "failed"): (1, 0.2, 1),
    }


def test_supporter_engagement(built: Built) -> None:
    path, _ = built
    rows = by_key(query(path, "select * from analytics.sms_supporter_engagement"),
                  "supporter_id")
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]  # 10 has only an archived text
    s1 = rows[1]
    assert (s1["messages_received"], s1["delivered"], s1["opens"], s1["conversions"]) == (
        1, 1, 2, 1)
    assert s1["inbound_texts"] == 1 and s1["consecutive_failed_deliveries"] == 0
    s8 = rows[8]  # delivered, then two failures
    assert (s8["messages_received"], s8["delivered"], s8["failures"]) == (3, 1, 2)
    assert s8["last_status"] == "failed" and s8["consecutive_failed_deliveries"] == 2
    assert s8["first_message_at"] == at() and s8["last_message_at"] == at(hours=25)
    assert rows[3]["consecutive_failed_deliveries"] == 1
    assert rows[9]["last_status"] == "queued" and rows[9]["consecutive_failed_deliveries"] == 0
    assert rows[4]["inbound_texts"] == 0  # its only inbound text is archived
    s11 = rows[11]
    assert s11["messages_received"] == 0 and s11["last_status"] is None
    assert s11["inbound_texts"] == 1 and s11["last_inbound_at"] == at(hours=120)


def test_in_flight_messages_do_not_break_a_failure_streak(tmp_path: Path) -> None:
    from pipelines.warehouse.runner import build_models

    path = write_raw(tmp_path / "q.duckdb", [
        sms(1, status="delivered", send_time=at(hours=0)),
        sms(2, status="failed", send_time=at(hours=1)),
        sms(3, status="queued", send_time=at(hours=2)),
        sms(4, status="rejected", send_time=at(hours=3)),
        sms(5, status="sent", send_time=at(hours=4)),
    ], [])
    build_models(path)
    row = query(path, "select * from analytics.sms_supporter_engagement")[0]
    assert row["consecutive_failed_deliveries"] == 2 and row["last_status"] == "sent"


def undated(row: dict[str, object]) -> dict[str, object]:
    """A raw row with no time that fct's send_time could come from."""
    return row | {"send_time": None, "created": None, "timestamp": None}


def test_engagement_orders_ties_by_id_and_undated_messages_last(tmp_path: Path) -> None:
    """A supporter's messages go by send_time, then id; those without a send time come last."""
    from pipelines.warehouse.runner import build_models

    path = write_raw(tmp_path / "q.duckdb", [
        sms(1, status="failed", supporter=1, send_time=at()),
        sms(2, status="delivered", supporter=1, send_time=at()),
        sms(3, status="failed", supporter=1, send_time=at(hours=1)),
        undated(sms(4, status="undelivered", supporter=1)),
        sms(6, status="failed", supporter=2, send_time=at()),
        sms(5, status="delivered", supporter=2, send_time=at()),
        sms(7, status="failed", supporter=3, send_time=at()),
        sms(8, status="delivered", supporter=3, send_time=at()),
        undated(sms(9, status="delivered", supporter=4)),
        sms(10, status="failed", supporter=4, send_time=at(hours=2)),
        undated(sms(11, status="delivered", supporter=5)),
        undated(sms(12, status="rejected", supporter=5)),
    ], [])
    build_models(path)
    rows = by_key(query(path, "select * from analytics.sms_supporter_engagement"),
                  "supporter_id")
    got = {s: (r["last_status"], r["consecutive_failed_deliveries"]) for s, r in rows.items()}
    assert got == {
        1: ("undelivered", 2),  # 2 is delivered after 1 at the same time; 3 and 4 fail after it
        2: ("failed", 1),  # 6 comes after 5 at the same time
        3: ("delivered", 0),
        4: ("delivered", 0),  # the undated delivery is the latest message
        5: ("rejected", 1),
    }
    assert rows[1]["first_message_at"] == at() and rows[1]["last_message_at"] == at(hours=1)
    assert rows[5]["first_message_at"] is None and rows[5]["messages_received"] == 2


def test_send_date_is_the_utc_date(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from pipelines.warehouse.runner import build_models

    evening_in_new_york = datetime(2026, 3, 2, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    path = write_raw(tmp_path / "q.duckdb",
                     [sms(1, status="delivered", send_time=evening_in_new_york)], [])
    build_models(path)
    rows = query(path, "select send_date from analytics.fct_sms_message")
    assert rows == [{"send_date": date(2026, 3, 3)}]

"""The marts built from a synced simulated world agree with the same figures computed in
Python, independently, from the simulator's ground truth (definitions: docs/models.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import duckdb
import numpy as np
import pytest

from pipelines.cli import main
from tests.e2e.truth import uri_id, utc

STATUS = {1: "queued", 2: "sent", 3: "delivered", 4: "undelivered", 5: "failed", 6: "rejected"}
FAILED = {4, 5, 6}


def is_message(record: dict[str, Any]) -> bool:
    return record["message_direction"] == 2 and not record["archived"]


def send_time(record: dict[str, Any]) -> Any:
    for value in (
        record.get("send_time"),
        (record.get("sent_event") or {}).get("timestamp"),
        (record.get("queued_event") or {}).get("timestamp"),
        record.get("created"),
    ):
        if value:
            return utc(value)
    return None


def rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def query(database: Any, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        cursor = connection.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def synced(tmp_path_factory, request):
    """A world synced twice (a day apart) with the models built; yields (database, truth)."""
    from pipelines.simulator import SimulatorServer, World
    from tests.conftest import API_KEY, API_USER

    monkeypatch = pytest.MonkeyPatch()
    database = tmp_path_factory.mktemp("marts") / "quorum.duckdb"
    monkeypatch.setenv("QUORUM_USERNAME", API_USER)
    monkeypatch.setenv("QUORUM_API_KEY", API_KEY)
    monkeypatch.setenv("QUORUM_DATABASE", str(database))
    monkeypatch.setenv("SOURCES__QUORUM__INITIAL_VALUE", "2000-01-01T00:00:00Z")
    world = World(seed=31, n_records=6000)
    with SimulatorServer(world, username=API_USER, api_key=API_KEY, port=0) as sim:
        assert main(["sync", "--base-url", sim.base_url]) == 0
        world.advance(timedelta(days=1))
        assert main(["sync", "--base-url", sim.base_url]) == 0
        truth = world.ground_truth()
    yield database, truth
    monkeypatch.undo()


def test_campaign_performance_matches_ground_truth(synced):
    database, truth = synced
    by_campaign: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in truth:
        if record["bulk_sms"] and is_message(record):
            by_campaign[uri_id(record["bulk_sms"])].append(record)
    rows = {
        r["bulk_sms_id"]: r
        for r in query(database, "select * from analytics.sms_campaign_performance")
    }
    assert {k for k, r in rows.items() if r["messages"]} == set(by_campaign)
    assert len(by_campaign) >= 3, "the world should hold several campaigns"
    for campaign, records in by_campaign.items():
        row = rows[campaign]
        statuses = Counter(r["current_status"] for r in records)
        delivered = statuses[3]
        failures = sum(statuses[s] for s in FAILED)
        unique_opens = sum(1 for r in records if r["opens"] > 0)
        conversions = sum(1 for r in records if r["converted"])
        assert row["messages"] == len(records)
        assert row["delivered"] == delivered
        assert row["failures"] == failures
        assert row["segments"] == sum(r["effective_message_count"] for r in records)
        assert row["total_opens"] == sum(r["opens"] for r in records)
        assert row["unique_opens"] == unique_opens
        assert row["conversions"] == conversions
        assert row["delivery_rate"] == pytest.approx(rate(delivered, len(records)))
        assert row["failure_rate"] == pytest.approx(rate(failures, len(records)))
        assert row["open_rate"] == pytest.approx(rate(unique_opens, delivered))
        assert row["conversion_rate"] == pytest.approx(rate(conversions, delivered))
        latencies = [
            (utc(r["delivered_event"]["timestamp"]) - utc(r["queued_event"]["timestamp"]))
            .total_seconds()
            for r in records
            if r["current_status"] == 3 and r["delivered_event"] and r["queued_event"]
        ]
        if latencies:
            assert row["median_seconds_to_deliver"] == pytest.approx(np.percentile(latencies, 50))
            assert row["p90_seconds_to_deliver"] == pytest.approx(np.percentile(latencies, 90))


def test_daily_overview_matches_ground_truth(synced):
    database, truth = synced
    messages: Counter[Any] = Counter()
    delivered: Counter[Any] = Counter()
    inbound: Counter[Any] = Counter()
    for record in truth:
        if record["archived"]:
            continue
        day = send_time(record).date()
        if record["message_direction"] == 1:
            inbound[day] += 1
        else:
            messages[day] += 1
            delivered[day] += record["current_status"] == 3
    rows = query(database, "select * from analytics.sms_daily_overview")
    assert {r["send_date"]: r["messages"] for r in rows if r["messages"]} == +messages
    assert {r["send_date"]: r["inbound"] for r in rows if r["inbound"]} == +inbound
    assert {r["send_date"]: r["delivered"] for r in rows if r["delivered"]} == +delivered


def test_sender_numbers_and_errors_match_ground_truth(synced):
    database, truth = synced
    per_number: dict[str, Counter[str]] = defaultdict(Counter)
    errors: Counter[tuple[Any, str]] = Counter()
    for record in truth:
        if not is_message(record):
            continue
        counts = per_number[record["associated_number"]]
        counts["messages"] += 1
        counts["delivered"] += record["current_status"] == 3
        if record["current_status"] in FAILED:
            counts["failures"] += 1
            status = STATUS[record["current_status"]]
            code = (record.get(f"{status}_event") or {}).get("error_code")
            errors[(None if code is None else str(code), status)] += 1
    health = {
        r["associated_number"]: r
        for r in query(database, "select * from analytics.sms_sender_number_health")
    }
    for number, counts in per_number.items():
        assert health[number]["messages"] == counts["messages"]
        assert health[number]["delivered"] == counts["delivered"]
        assert health[number]["failures"] == counts["failures"]
    marts = {
        (r["error_code"], r["status"]): r["failures"]
        for r in query(database, "select * from analytics.sms_delivery_errors")
    }
    assert marts == dict(errors)
    assert sum(errors.values()) > 0, "the world should hold failures"


def test_supporter_engagement_matches_ground_truth(synced):
    database, truth = synced
    received: Counter[int] = Counter()
    conversions: Counter[int] = Counter()
    for record in truth:
        if is_message(record):
            supporter = uri_id(record["supporter_id"])
            received[supporter] += 1
            conversions[supporter] += bool(record["converted"])
    rows = query(database, "select * from analytics.sms_supporter_engagement")
    assert {r["supporter_id"]: r["messages_received"] for r in rows if r["messages_received"]} == (
        +received
    )
    assert {r["supporter_id"]: r["conversions"] for r in rows if r["conversions"]} == +conversions

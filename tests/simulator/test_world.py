"""The generated world: determinism, realism, the clock, and the changes tests can make."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pipelines.simulator import World

Record = dict[str, Any]
EVENTS = ("queued", "sent", "delivered", "failed", "undelivered", "rejected")


def ts(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dump(world: World) -> bytes:
    return orjson.dumps(world.ground_truth())


def test_same_seed_same_world_byte_for_byte_and_after_moving_the_clock() -> None:
    a, b = World(seed=5, n_records=2000), World(seed=5, n_records=2000)
    assert dump(a) == dump(b)
    a.advance(timedelta(days=3))
    b.advance(timedelta(days=1))
    b.advance(timedelta(hours=36))
    b.advance(timedelta(hours=12))
    assert a.now == b.now
    assert dump(a) == dump(b)


def test_different_seed_different_world() -> None:
    assert dump(World(seed=5, n_records=2000)) != dump(World(seed=6, n_records=2000))


@pytest.mark.parametrize("n", [0, 1, 17, 2500])
def test_n_records_exist_at_the_initial_clock(n: int) -> None:
    world = World(seed=3, n_records=n)
    assert world.record_count() == n
    assert len(world.ground_truth()) == n
    assert world.now == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def test_records_are_consistent_with_their_life(truth: list[Record], world: World) -> None:
    now = world.now
    for r in truth:
        updated = ts(r["updated"])
        assert ts(r["created"]) <= updated <= now
        happened = [e for e in EVENTS if r[f"{e}_event"]]
        for event in happened:
            assert ts(r[f"{event}_event"]["timestamp"]) <= updated
        if r["message_direction"] == 1:
            assert r["current_status"] == 7 and r["bulk_sms"] is None and not happened
        else:
            assert "queued" in happened
            final = {3: "delivered", 4: "undelivered", 5: "failed", 6: "rejected"}
            if r["current_status"] in final:
                assert final[r["current_status"]] in happened
            if r["current_status"] in (4, 5):
                event = r[f"{final[r['current_status']]}_event"]
                assert isinstance(event["error_code"], int) and event["error_message"]
                assert event["carrier"]
        if r["opens"] or r["converted"]:
            assert r["delivered_event"]
        assert r["effective_message_count"] >= 1
        assert r["supporter_id"].startswith("/api/newsupporter/")


def test_the_world_has_a_realistic_mix(truth: list[Record]) -> None:
    n = len(truth)
    statuses = Counter(r["current_status"] for r in truth)
    assert statuses[3] > 0.7 * n
    assert statuses[4] and statuses[5] and statuses[6] and statuses[2] and statuses[7]
    codes = {r[f"{e}_event"].get("error_code") for r in truth for e in ("failed", "undelivered")}
    assert {30003, 30005, 30006, 30007, 30008} <= codes
    assert len({r["bulk_sms"] for r in truth if r["bulk_sms"]}) >= 5
    assert any(r["opens"] > 1 for r in truth) and any(r["converted"] for r in truth)
    assert 0 < sum(r["archived"] for r in truth) < 0.2 * n
    assert any(r["effective_message_count"] > 1 for r in truth)
    assert any(not r["message_content"].isascii() for r in truth)
    assert any("provider_sid" in r["queued_event"] for r in truth)
    assert any("price" in r["sent_event"] for r in truth)
    assert all(r["rcpt_dict"] for r in truth)
    phones = [r["rcpt_dict"].get("phone_number") or r["rcpt_dict"]["phone"] for r in truth]
    assert all(p.startswith("+1") and len(p) == 12 for p in phones)
    assert any(r["supporter_email"] and "@" in r["supporter_email"] for r in truth)
    assert any(r["supporter_name"] is None for r in truth)
    assert any(r["supporter_title"] for r in truth)
    assert any(r["supporter_public_organization"] for r in truth)
    # every timestamp form the contract allows
    stamps = [r[f] for r in truth for f in ("created", "updated", "timestamp", "send_time")]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s.endswith("-05:00") or s.endswith("-04:00") for s in stamps)
    assert any(s[-6] not in "+-" and not s.endswith("Z") for s in stamps)  # naive
    assert any("." in s for s in stamps) and any("." not in s for s in stamps)


def test_inbound_replies_often_follow_a_campaign_text_within_hours(truth: list[Record]) -> None:
    sent_to: dict[str, list[datetime]] = {}
    for r in truth:
        if r["bulk_sms"]:
            sent_to.setdefault(r["supporter_id"], []).append(ts(r["created"]))
    inbound = [r for r in truth if r["message_direction"] == 1]
    quick = 0
    for r in inbound:
        at = ts(r["created"])
        if any(timedelta(0) < at - t < timedelta(hours=24) for t in sent_to.get(r["supporter_id"],
                                                                                 [])):
            quick += 1
    assert quick > 0.5 * len(inbound)


def test_a_day_brings_a_realistic_nightly_change_set() -> None:
    world = World(seed=7, n_records=3000)
    before = {r["id"]: r for r in world.ground_truth()}
    night = world.now
    world.advance(timedelta(days=1))
    after = world.ground_truth()
    changed = [r for r in after if ts(r["updated"]) > night]
    assert all(before.get(r["id"]) != r for r in changed)
    assert all(before[r["id"]] == r for r in after if ts(r["updated"]) <= night)
    old = [r for r in changed if r["id"] in before]
    assert old, "opens, conversions, archiving of existing records"
    assert 0 < len(changed) < 0.5 * len(after)
    kinds = Counter()
    for r in old:
        b = before[r["id"]]
        kinds["opens"] += r["opens"] > b["opens"]
        kinds["archived"] += r["archived"] != b["archived"]
    assert kinds["opens"] and kinds["archived"]
    assert all(ts(r["updated"]) <= world.now for r in after)


def test_future_campaigns_go_out_as_the_clock_passes_them() -> None:
    world = World(seed=7, n_records=3000)
    campaigns = {r["bulk_sms"] for r in world.ground_truth() if r["bulk_sms"]}
    max_id = max(r["id"] for r in world.ground_truth())
    world.advance(timedelta(days=21))
    after = world.ground_truth()
    new = [r for r in after if r["id"] > max_id]
    assert {r["bulk_sms"] for r in new if r["bulk_sms"]} - campaigns
    assert any(r["message_direction"] == 1 for r in new)
    assert all(ts(r["created"]) > datetime(2026, 11, 1, 6, tzinfo=UTC) for r in new)
    ids = [r["id"] for r in new]
    assert ids == sorted(ids)  # ids follow creation order


def test_a_campaign_in_flight_shows_queued_texts() -> None:
    world = World(seed=7, n_records=3000)
    for _ in range(24 * 14):
        world.advance(timedelta(hours=1))
        statuses = Counter(r["current_status"] for r in world.ground_truth())
        if statuses[1]:
            return
    pytest.fail("no queued text seen in two weeks of hourly syncs")


def test_touch_updates_records_now() -> None:
    world = World(seed=7, n_records=1000)
    world.advance(timedelta(hours=5, microseconds=250))
    before = {r["id"]: r for r in world.ground_truth()}
    ids = sorted(before)[10:15]
    assert world.touch(ids=[*ids, 1]) == ids  # unknown id skipped
    after = {r["id"]: r for r in world.ground_truth()}
    for i in ids:
        assert after[i]["opens"] == before[i]["opens"] + 1
        assert world.now - ts(after[i]["updated"]) < timedelta(seconds=1)
    assert sum(before[i] != after[i] for i in before) == len(ids)
    touched = world.touch(fraction=0.1)
    assert len(touched) == 100 and len(set(touched)) == 100


def test_touch_can_favour_recent_records() -> None:
    world = World(seed=7, n_records=5000)
    created = {r["id"]: ts(r["created"]) for r in world.ground_truth()}
    recent = {i for i, at in created.items() if world.now - at <= timedelta(days=3)}
    assert 45 < len(recent) < 100  # the draws below need both kinds
    mostly_recent = world.touch(fraction=0.01, recent_share=0.9)
    assert len(set(mostly_recent)) == 50
    assert sum(i in recent for i in mostly_recent) == 45
    # more asked for than there are recent records: all of them, the rest from older ones
    all_recent = world.touch(fraction=0.02, recent_share=1.0)
    assert len(set(all_recent)) == 100 and recent <= set(all_recent)
    alike = world.touch(fraction=0.01)
    assert sum(i in recent for i in alike) < 10
    with pytest.raises(ValueError, match="recent_share"):
        world.touch(fraction=0.01, recent_share=1.5)
    with pytest.raises(ValueError, match="not with ids"):
        world.touch(ids=alike, recent_share=0.5)


def test_delete_removes_records_and_ids_are_never_reused() -> None:
    world = World(seed=7, n_records=1000)
    ids = [r["id"] for r in world.ground_truth()]
    world.delete([ids[0], ids[-1]])
    assert world.record_count() == 998
    remaining = {r["id"] for r in world.ground_truth()}
    assert ids[0] not in remaining and ids[-1] not in remaining
    new = world.send_individual_sms(world.supporter_ids()[0], "hello")["id"]
    assert new > ids[-1]


def test_supporter_ids_are_valid_for_sending() -> None:
    world = World(seed=7, n_records=500)
    supporters = world.supporter_ids()
    assert len(supporters) == len(set(supporters)) > 0
    referenced = {r["supporter_id"] for r in world.ground_truth()}
    assert referenced <= {f"/api/newsupporter/{s}/" for s in supporters}
    with pytest.raises(KeyError):
        world.send_individual_sms(max(supporters) + 1, "hi")


def test_the_clock_only_moves_forward() -> None:
    with pytest.raises(ValueError):
        World(seed=1, n_records=10).advance(timedelta(seconds=-1))

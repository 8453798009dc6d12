"""`POST /api/sendsms/send_individual_sms/` and SMS segment counting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipelines.simulator import SimulatorServer, segment_count
from tests.simulator.conftest import Api

SEND = "/api/sendsms/send_individual_sms/"


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a", 1),
        ("a" * 160, 1),  # GSM-7: 160 septets fit one segment
        ("a" * 161, 2),  # then 153 per segment
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!¡¿ÄÖÑÜ§äöñüà" * 3, 1),  # all basic table
        ("€" * 80, 1),  # extension characters count twice: 160 septets
        ("€" * 81, 2),  # 162 septets
        ("a" * 159 + "^", 2),  # 161 septets
        ("a" * 158 + "{", 1),  # 160 septets
        ("[]{}|~\\^" * 10, 1),  # 8 chars, 16 septets each time: 160
        ("ó" * 70, 1),  # not GSM-7: UCS-2, 70 per segment
        ("ó" * 71, 2),  # then 67 per segment
        ("ó" * 134, 2),
        ("ó" * 135, 3),
        ("a" * 69 + "ł", 1),  # one non-GSM character makes the whole text UCS-2
        ("a" * 70 + "ł", 2),
        ("😀" * 35, 1),  # an emoji is two UTF-16 code units
        ("😀" * 36, 2),
    ],
)
def test_segment_count(text: str, segments: int) -> None:
    assert segment_count(text) == segments


def test_send_answers_201_and_queues_a_record_that_then_lives_its_life(
    fresh: SimulatorServer, fresh_api: Api
) -> None:
    world = fresh.world
    supporter = world.supporter_ids()[3]
    message = "Hi! Your ballot is on its way " + "a" * 140  # 170 GSM-7 chars: 2 segments
    before = world.record_count()
    response = fresh_api.post(SEND, {"supporter_id": supporter, "message": message})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"from", "id", "num_segments", "success", "to"}
    assert body["success"] is True and body["num_segments"] == 2
    assert body["from"].startswith("+1") and body["to"].startswith("+1")
    assert world.record_count() == before + 1
    record = fresh_api.get(f"/api/sendsms/{body['id']}/").json()
    assert record["id"] > max(r["id"] for r in world.ground_truth() if r["id"] != body["id"])
    assert record["current_status"] == 1
    assert record["queued_event"]["timestamp"]
    assert record["sent_event"] == {} and record["delivered_event"] == {}
    assert record["message_content"] == message
    assert record["effective_message_count"] == 2
    assert record["supporter_id"] == f"/api/newsupporter/{supporter}/"
    assert record["bulk_sms"] is None and record["message_direction"] == 2
    assert record["rcpt_dict"].get("phone_number", record["rcpt_dict"].get("phone")) == body["to"]
    world.advance(timedelta(hours=2))
    later = fresh_api.get(f"/api/sendsms/{body['id']}/").json()
    assert later["current_status"] in (2, 3, 4, 5, 6)
    assert later["updated"] != record["updated"]
    ucs2 = fresh_api.post(SEND, {"supporter_id": supporter, "message": "Gracias 🙏 " * 8})
    assert ucs2.json()["num_segments"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"message": "hi"},
        {"supporter_id": None, "message": "hi"},
        {"supporter_id": "abc", "message": "hi"},
        {"supporter_id": True, "message": "hi"},
        {"supporter_id": 1.5, "message": "hi"},
        {"supporter_id": "SUPPORTER"},
        {"supporter_id": "SUPPORTER", "message": ""},
        {"supporter_id": "SUPPORTER", "message": "   "},
        {"supporter_id": "SUPPORTER", "message": 42},
        {"supporter_id": "SUPPORTER", "message": "x" * 1601},
        {"supporter_id": 1, "message": "hi"},  # no such supporter
        [1, 2],
    ],
)
def test_send_rejects_bad_requests_with_400(fresh: SimulatorServer, fresh_api: Api, body: object
                                            ) -> None:
    supporter = fresh.world.supporter_ids()[0]
    if isinstance(body, dict) and body.get("supporter_id") == "SUPPORTER":
        body = {**body, "supporter_id": supporter}
    before = fresh.world.record_count()
    response = fresh_api.post(SEND, body)
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and response.json()["error"]
    assert fresh.world.record_count() == before


def test_send_rejects_a_body_that_is_not_json(fresh_api: Api) -> None:
    response = fresh_api.post(SEND, None, raw=b"supporter_id=1&message=hi")
    assert response.status_code == 400 and "error" in response.json()


def test_send_accepts_a_numeric_string_supporter_id(fresh: SimulatorServer, fresh_api: Api
                                                    ) -> None:
    supporter = fresh.world.supporter_ids()[-1]
    response = fresh_api.post(SEND, {"supporter_id": str(supporter), "message": "hello"})
    assert response.status_code == 201


def test_wrong_method_is_405(fresh_api: Api) -> None:
    assert fresh_api.get(SEND).status_code == 405
    assert fresh_api.post("/api/sendsms/", {}).status_code == 405

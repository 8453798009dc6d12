"""Record-level faults over real HTTP: malformed records of each kind, a lone surrogate, the
same id twice on one page, detail vs ground truth, and the served-page handshake."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pipelines.simulator import Faults, SimulatorServer
from tests.simulator.conftest import KEY, USER, Api

Record = dict[str, Any]


def ts(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _pick(truth: list[Record], **wanted: Any) -> Record:
    return next(r for r in truth if all(r[k] == v for k, v in wanted.items()))


def _page_with(api: Api, record_id: int) -> list[Record]:
    response = api.get("/api/sendsms/", {"id__gte": record_id, "limit": 3})
    assert response.status_code == 200
    objects: list[Record] = response.json()["objects"]
    return objects


# kind -> (the keys it changes, a check of the served record)
KINDS = {
    "updated": ({"updated"}, lambda r: r["updated"] == "not-a-date"),
    "event_timestamp": ({"sent_event"}, lambda r: r["sent_event"]["timestamp"] == "yesterday"),
    "wrong_type": ({"opens"}, lambda r: r["opens"] == "many"),
    "missing_id": ({"id"}, lambda r: "id" not in r),
    "bad_uri": ({"supporter_id", "bulk_sms"},
                lambda r: r["supporter_id"] == "/api/newsupporter/unknown/"
                and r["bulk_sms"] in (None, "/api/bulksms/unknown/")),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_malformed_kind_on_list_and_detail_then_well_formed_when_off(
    fresh: SimulatorServer, fresh_api: Api, kind: str
) -> None:
    truth = fresh.world.ground_truth()
    clean = _pick(truth, current_status=5)  # an outbound text with a bulk_sms and events
    other = truth[truth.index(clean) + 1]
    fresh.faults = Faults(malformed_kinds={clean["id"]: kind})
    changed, check = KINDS[kind]
    listed = _page_with(fresh_api, clean["id"])
    detail = fresh_api.get(f"/api/sendsms/{clean['id']}/").json()
    for served in (listed[0], detail):
        assert check(served)
        assert served["resource_uri"] == f"/api/sendsms/{clean['id']}/"  # still identifiable
        assert {k: v for k, v in served.items() if k not in changed} == {
            k: v for k, v in clean.items() if k not in changed
        }
    assert listed[1] == other  # its neighbours are untouched
    assert fresh.stats.faults_injected["malformed"] == 2
    fresh.faults = Faults()
    assert _page_with(fresh_api, clean["id"])[0] == clean
    assert fresh_api.get(f"/api/sendsms/{clean['id']}/").json() == clean
    assert fresh.world.ground_truth() == truth  # the fault never touches the world


def test_event_timestamp_kind_adds_the_event_to_a_record_without_one(
    fresh: SimulatorServer, fresh_api: Api
) -> None:
    inbound = _pick(fresh.world.ground_truth(), message_direction=1)
    fresh.faults = Faults(malformed_kinds={inbound["id"]: "event_timestamp"})
    served = fresh_api.get(f"/api/sendsms/{inbound['id']}/").json()
    assert served["sent_event"] == {"timestamp": "yesterday"}


def test_a_lone_surrogate_reaches_the_wire_as_an_escape(fresh: SimulatorServer, fresh_api: Api
                                                        ) -> None:
    clean = fresh.world.ground_truth()[10]
    fresh.faults = Faults(malformed_kinds={clean["id"]: "lone_surrogate"})
    for response in (_raw_list(fresh_api, clean["id"]),
                     fresh_api.get(f"/api/sendsms/{clean['id']}/")):
        assert b'"message_content":"\\ud800' in response.content
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(response.content)  # strict parsers refuse it ...
        body = json.loads(response.content)  # ... yet it is valid JSON (RFC 8259)
        served = body["objects"][0] if "objects" in body else body
        assert served["message_content"] == "\ud800" + clean["message_content"]
        assert {k: v for k, v in served.items() if k != "message_content"} == {
            k: v for k, v in clean.items() if k != "message_content"
        }


def _raw_list(api: Api, record_id: int) -> Any:
    return api.get("/api/sendsms/", {"id__gte": record_id, "limit": 2})


def test_malformed_kinds_switch_through_the_admin_endpoint(fresh: SimulatorServer,
                                                           fresh_api: Api) -> None:
    record_id = fresh.world.ground_truth()[0]["id"]
    answer = fresh_api.client.post(
        "/_simulator/faults", params={"username": USER, "api_key": KEY},
        json={"malformed_kinds": {str(record_id): "wrong_type"}, "duplicate_ids": [record_id]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["malformed_kinds"] == {str(record_id): "wrong_type"}
    assert fresh.faults.malformed_kinds == {record_id: "wrong_type"}
    assert fresh_api.get(f"/api/sendsms/{record_id}/").json()["opens"] == "many"
    refused = fresh_api.client.post(
        "/_simulator/faults", params={"username": USER, "api_key": KEY},
        json={"malformed_kinds": {str(record_id): "sideways"}},
    )
    assert refused.status_code == 400 and "use one of" in refused.json()["error"]


def test_the_same_id_twice_on_one_page_older_version_first(fresh: SimulatorServer,
                                                           fresh_api: Api) -> None:
    truth = fresh.world.ground_truth()
    failed = _pick(truth, current_status=5)
    fresh.faults = Faults(duplicate_ids=(failed["id"],))
    response = fresh_api.get("/api/sendsms/", {"id__gte": failed["id"], "limit": 3}).json()
    objects = response["objects"]
    assert [o["id"] for o in objects[:3]] == [failed["id"], failed["id"], objects[2]["id"]]
    older, current = objects[0], objects[1]
    assert current == failed  # the newer version is the ground truth
    assert ts(current["updated"]) - ts(older["updated"]) == timedelta(hours=1)
    assert older["current_status"] == 3 and older["failed_event"] == {}
    assert ts(older["delivered_event"]["timestamp"]) == ts(older["updated"])
    assert current["failed_event"] and current["delivered_event"] == {}
    assert len(objects) == 4 and response["meta"]["total_count"] == len(
        [r for r in truth if r["id"] >= failed["id"]]
    )
    assert fresh_api.get(f"/api/sendsms/{failed['id']}/").json() == failed  # detail: current
    assert fresh.stats.faults_injected["duplicate"] == 1


def test_detail_agrees_with_ground_truth_and_a_deleted_record_is_404(
    fresh: SimulatorServer, fresh_api: Api
) -> None:
    fresh.world.advance(timedelta(days=2))
    truth = fresh.world.ground_truth()
    for record in truth[::97]:
        assert fresh_api.get(f"/api/sendsms/{record['id']}/").json() == record
    gone = truth[5]["id"]
    fresh.world.delete([gone])
    response = fresh_api.get(f"/api/sendsms/{gone}/")
    assert response.status_code == 404 and response.content == b""
    assert gone not in {r["id"] for r in fresh.world.ground_truth()}
    assert gone not in {o["id"] for o in _page_with(fresh_api, gone - 1)}


def test_a_test_can_wait_for_the_nth_served_page(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.stats.reset()
    client = Api(fresh.base_url)
    pages: list[int] = []
    reader = threading.Thread(
        target=lambda: pages.append(len(client.list_all({"limit": 100})[1]))
    )
    reader.start()
    try:
        assert fresh.stats.wait_for_pages(3, timeout=30)
        assert fresh.stats.pages_served >= 3
    finally:
        reader.join(timeout=60)
        client.close()
    assert pages == [15] and fresh.stats.pages_served == 15
    fresh_api.get("/api/sendsms/", {"limit": "bad"})  # a 400 is a request, not a page
    assert fresh.stats.wait_for_requests(16, timeout=5) and fresh.stats.pages_served == 15
    assert fresh.stats.as_dict()["pages_served"] == 15
    assert not fresh.stats.wait_for_pages(10_000, timeout=0.01)


def test_a_paused_api_holds_requests_until_resumed(fresh: SimulatorServer, fresh_api: Api
                                                   ) -> None:
    fresh.stats.reset()
    fresh.pause_api()
    answers: list[int] = []
    client = Api(fresh.base_url)
    reader = threading.Thread(
        target=lambda: answers.append(client.get("/api/sendsms/", {"limit": 5}).status_code)
    )
    reader.start()
    try:
        assert fresh_api.get("/_simulator/stats").status_code == 200  # admin is never held
        assert fresh.wait_for_held(1, timeout=30)
        assert answers == [] and fresh.stats.requests == 0  # held, not answered
        fresh.resume_api()
        assert fresh.stats.wait_for_pages(1, timeout=30)
    finally:
        fresh.resume_api()
        reader.join(timeout=30)
        client.close()
    assert answers == [200]

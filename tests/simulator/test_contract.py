"""Every row of docs/quorum-api.md over real HTTP: list, paging, filters, order, auth, detail."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.simulator.conftest import KEY, N_RECORDS, USER, Api

Record = dict[str, Any]

FIELDS = {
    "id", "resource_uri", "created", "updated", "timestamp", "send_time", "bulk_sms",
    "bulk_sms_description", "bulk_sms_send_time", "supporter_id", "supporter_name",
    "supporter_email", "supporter_title", "supporter_public_organization", "associated_number",
    "message_content", "message_uuid", "message_direction", "current_status", "queued_event",
    "sent_event", "delivered_event", "failed_event", "undelivered_event", "rejected_event",
    "effective_message_count", "opens", "converted", "archived", "rcpt_dict", "_extra",
}


def ts(text: str) -> datetime:
    """Parse any timestamp form the contract allows into an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def bulk_id(record: Record) -> int | None:
    uri = record["bulk_sms"]
    return int(uri.rstrip("/").rsplit("/", 1)[1]) if uri else None


# ---------------------------------------------------------------- the list and its meta block


def test_default_page_is_20_records_in_id_order_with_meta(api: Api, truth: list[Record]) -> None:
    response = api.get("/api/sendsms/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    meta = body["meta"]
    assert meta["limit"] == 20 and meta["offset"] == 0
    assert meta["total_count"] == N_RECORDS
    assert meta["previous"] is None
    assert meta["next"].startswith("/api/sendsms/?")
    assert body["objects"] == truth[:20]
    for obj in body["objects"]:
        assert set(obj) == FIELDS
        assert obj["resource_uri"] == f"/api/sendsms/{obj['id']}/"


def test_following_next_to_the_end_returns_every_record_once(api: Api, truth: list[Record]
                                                             ) -> None:
    objects, metas = api.list_all({"limit": 700})
    assert objects == truth
    assert [m["offset"] for m in metas] == list(range(0, N_RECORDS, 700))
    assert metas[-1]["next"] is None
    assert metas[1]["previous"] is not None
    assert dict(parse_qsl(urlsplit(metas[1]["previous"]).query))["offset"] == "0"
    assert all(m["total_count"] == N_RECORDS for m in metas)


def test_next_repeats_every_request_parameter(api: Api) -> None:
    params = [("limit", "5"), ("order_by", "-opens"), ("order_by", "id"), ("opens__gte", "0"),
              ("dehydrate", "x"), ("advanced_search", "y"), ("whatever", "kept too")]
    meta = api.get("/api/sendsms/", params).json()["meta"]
    query = parse_qsl(urlsplit(meta["next"]).query)
    sent = [p for p in params if p[0] not in ("limit", "offset")]
    sent += [("username", USER), ("api_key", KEY)]
    assert Counter(p for p in query if p[0] not in ("limit", "offset")) == Counter(sent)
    assert dict(query)["limit"] == "5" and dict(query)["offset"] == "5"


def test_limit_above_maximum_is_capped_and_shown(api: Api) -> None:
    body = api.get("/api/sendsms/", {"limit": 5000}).json()
    assert body["meta"]["limit"] == 1000 and len(body["objects"]) == 1000
    assert "limit=1000" in body["meta"]["next"]


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
def test_bad_limit_or_offset_is_400(api: Api, name: str, value: str) -> None:
    response = api.get("/api/sendsms/", {name: value})
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert f"Invalid {name}" in response.json()["error"]


def test_offset_past_the_end_is_an_empty_page(api: Api) -> None:
    body = api.get("/api/sendsms/", {"offset": N_RECORDS + 10}).json()
    assert body["objects"] == [] and body["meta"]["next"] is None
    assert body["meta"]["total_count"] == N_RECORDS


def test_previous_is_null_when_offset_minus_limit_is_negative(api: Api) -> None:
    assert api.get("/api/sendsms/", {"offset": 10}).json()["meta"]["previous"] is None
    previous = api.get("/api/sendsms/", {"offset": 45}).json()["meta"]["previous"]
    assert dict(parse_qsl(urlsplit(previous).query))["offset"] == "25"


def test_unknown_parameters_are_ignored(api: Api) -> None:
    body = api.get("/api/sendsms/", {"no_such_field": "1", "format": "json",
                                     "dehydrate": "1", "advanced_search": "{}"}).json()
    assert body["meta"]["total_count"] == N_RECORDS


# ---------------------------------------------------------------- filters and qualifiers


def _filter_cases(truth: list[Record]) -> list[tuple[list[tuple[str, str]],
                                                    Callable[[Record], bool]]]:
    campaigns = sorted({bulk_id(r) for r in truth if r["bulk_sms"]})
    c1, c2 = campaigns[0], campaigns[-1]
    mid = truth[N_RECORDS // 2]
    cut = ts(mid["updated"])
    created_cut = ts(mid["created"])
    return [
        ([("archived", "true")], lambda r: r["archived"]),
        ([("archived", "false")], lambda r: not r["archived"]),
        ([("converted", "true")], lambda r: r["converted"]),
        ([("converted", "false"), ("archived", "false")],
         lambda r: not r["converted"] and not r["archived"]),
        ([("current_status", "3")], lambda r: r["current_status"] == 3),
        ([("current_status__in", "4,5")], lambda r: r["current_status"] in (4, 5)),
        ([("current_status__gt", "5")], lambda r: r["current_status"] > 5),
        ([("current_status__gte", "4")], lambda r: r["current_status"] >= 4),
        ([("current_status__lt", "3")], lambda r: r["current_status"] < 3),
        ([("current_status__lte", "3")], lambda r: r["current_status"] <= 3),
        ([("opens", "0")], lambda r: r["opens"] == 0),
        ([("opens__gt", "1")], lambda r: r["opens"] > 1),
        ([("opens__gte", "1")], lambda r: r["opens"] >= 1),
        ([("opens__lt", "2")], lambda r: r["opens"] < 2),
        ([("opens__lte", "1")], lambda r: r["opens"] <= 1),
        ([("opens__in", "2,3")], lambda r: r["opens"] in (2, 3)),
        ([("associated_number", "+12025550143")],
         lambda r: r["associated_number"] == "+12025550143"),
        ([("associated_number__iexact", "+13125550199")],
         lambda r: r["associated_number"] == "+13125550199"),
        ([("associated_number__contains", "55501")],
         lambda r: "55501" in r["associated_number"]),
        ([("associated_number__icontains", "5550178")],
         lambda r: "5550178" in r["associated_number"]),
        ([("associated_number__startswith", "+1202")],
         lambda r: r["associated_number"].startswith("+1202")),
        ([("associated_number__istartswith", "+1617")],
         lambda r: r["associated_number"].startswith("+1617")),
        ([("associated_number__endswith", "0199")],
         lambda r: r["associated_number"].endswith("0199")),
        ([("associated_number__iendswith", "0112")],
         lambda r: r["associated_number"].endswith("0112")),
        ([("associated_number__in", "+12025550143,+16175550112")],
         lambda r: r["associated_number"] in ("+12025550143", "+16175550112")),
        ([("associated_number__isnull", "false")], lambda r: True),
        ([("bulk_sms_id", str(c1))], lambda r: bulk_id(r) == c1),
        ([("bulk_sms", f"/api/bulksms/{c2}/")], lambda r: bulk_id(r) == c2),
        ([("bulk_sms__in", f"{c1},{c2}")], lambda r: bulk_id(r) in (c1, c2)),
        ([("bulk_sms__isnull", "true")], lambda r: r["bulk_sms"] is None),
        ([("bulk_sms__isnull", "false")], lambda r: r["bulk_sms"] is not None),
        ([("bulk_sms_id__gt", str(c1))], lambda r: (bulk_id(r) or -1) > c1),
        ([("id", str(mid["id"]))], lambda r: r["id"] == mid["id"]),
        ([("id__gt", str(mid["id"]))], lambda r: r["id"] > mid["id"]),
        ([("id__gte", str(mid["id"]))], lambda r: r["id"] >= mid["id"]),
        ([("id__lt", str(mid["id"]))], lambda r: r["id"] < mid["id"]),
        ([("id__lte", str(mid["id"]))], lambda r: r["id"] <= mid["id"]),
        ([("id__in", f"{truth[0]['id']},{mid['id']}")],
         lambda r: r["id"] in (truth[0]["id"], mid["id"])),
        ([("updated__gte", cut.isoformat())], lambda r: ts(r["updated"]) >= cut),
        ([("updated__gt", cut.isoformat().replace("+00:00", "Z"))],
         lambda r: ts(r["updated"]) > cut),
        ([("updated__lt", cut.astimezone().isoformat())], lambda r: ts(r["updated"]) < cut),
        ([("updated__lte", cut.replace(tzinfo=None).isoformat())],
         lambda r: ts(r["updated"]) <= cut),
        ([("updated", mid["updated"])], lambda r: ts(r["updated"]) == cut),
        ([("created__gte", created_cut.isoformat())], lambda r: ts(r["created"]) >= created_cut),
        ([("created__lt", created_cut.isoformat())], lambda r: ts(r["created"]) < created_cut),
        ([("created", mid["created"])], lambda r: ts(r["created"]) == created_cut),
        ([("created__gt", "2026-10-01"), ("current_status", "7")],
         lambda r: ts(r["created"]) > datetime(2026, 10, 1, tzinfo=UTC)
         and r["current_status"] == 7),
    ]


def test_every_filter_and_qualifier_selects_exactly_the_matching_records(
    api: Api, truth: list[Record]
) -> None:
    checked = 0
    for params, predicate in _filter_cases(truth):
        expected = [r for r in truth if predicate(r)]
        objects, metas = api.list_all([*params, ("limit", "1000")])
        assert [o["id"] for o in objects] == [r["id"] for r in expected], params
        assert metas[0]["total_count"] == len(expected), params
        checked += 0 < len(expected) < N_RECORDS
    assert checked >= 40  # the cases are not trivially all-or-nothing


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("message_content", "The 'message_content' field does not allow filtering."),
        ("supporter_name__icontains", "The 'supporter_name' field does not allow filtering."),
        ("opens__regex", "'regex' is not an allowed filter on the 'opens' field."),
        ("updated__in", "'in' is not an allowed filter on the 'updated' field."),
        ("opens__foo__gt", "Lookups are not allowed more than one level deep on the 'opens' "
                           "field."),
    ],
)
def test_filters_the_api_does_not_allow_are_400(api: Api, param: str, message: str) -> None:
    response = api.get("/api/sendsms/", {param: "1"})
    assert response.status_code == 400
    assert response.json() == {"error": message}


@pytest.mark.parametrize("param", ["opens__gt", "archived", "updated__gte", "id__lt",
                                   "bulk_sms_id", "current_status__in", "bulk_sms__isnull"])
def test_filter_values_that_do_not_parse_are_400(api: Api, param: str) -> None:
    response = api.get("/api/sendsms/", {param: "not-a-value"})
    assert response.status_code == 400
    assert "error" in response.json()


# ---------------------------------------------------------------- ordering


@pytest.mark.parametrize(
    "order",
    [
        ["updated", "id"],
        ["-updated"],
        ["-opens", "id"],
        ["current_status", "-id"],
        ["-created", "-id"],
        ["send_time", "timestamp", "id"],
        ["id"],
        ["-id"],
    ],
)
def test_order_by_sorts_by_every_key_in_turn(api: Api, truth: list[Record], order: list[str]
                                             ) -> None:
    objects, _ = api.list_all([("order_by", o) for o in order] + [("limit", "1000")])
    keys = {
        "updated": lambda r: ts(r["updated"]), "created": lambda r: ts(r["created"]),
        "send_time": lambda r: ts(r["send_time"]), "timestamp": lambda r: ts(r["timestamp"]),
        "opens": lambda r: r["opens"], "current_status": lambda r: r["current_status"],
        "id": lambda r: r["id"],
    }
    assert sorted(o["id"] for o in objects) == [r["id"] for r in truth]
    for a, b in itertools.pairwise(objects):
        for spec in order:
            field = spec.lstrip("-")
            ka, kb = keys[field](a), keys[field](b)
            if ka != kb:
                assert (ka > kb) if spec.startswith("-") else (ka < kb), (spec, a["id"], b["id"])
                break


def test_default_order_is_id_ascending(api: Api) -> None:
    ids = [o["id"] for o in api.get("/api/sendsms/", {"limit": 1000}).json()["objects"]]
    assert ids == sorted(ids) and len(ids) == 1000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("updated,id", "No matching 'updated,id' field for ordering on."),
        ("nosuchfield", "No matching 'nosuchfield' field for ordering on."),
        ("message_content", "The 'message_content' field does not allow ordering."),
        ("-supporter_name", "The 'supporter_name' field does not allow ordering."),
    ],
)
def test_order_by_that_is_not_allowed_is_400(api: Api, value: str, message: str) -> None:
    response = api.get("/api/sendsms/", {"order_by": value})
    assert response.status_code == 400
    assert response.json() == {"error": message}


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "params",
    [
        [],
        [("username", USER)],
        [("api_key", KEY)],
        [("username", USER), ("api_key", "wrong")],
        [("username", "someone"), ("api_key", KEY)],
    ],
)
def test_missing_or_wrong_credentials_are_401_with_an_empty_body(api: Api, truth: list[Record],
                                                                 params: list) -> None:
    for path in ("/api/sendsms/", f"/api/sendsms/{truth[0]['id']}/"):
        response = api.get(path, params, auth=False)
        assert response.status_code == 401 and response.content == b""
    response = api.client.post("/api/sendsms/send_individual_sms/", params=params,
                               json={"supporter_id": 1, "message": "hi"})
    assert response.status_code == 401 and response.content == b""


# ---------------------------------------------------------------- one record


def test_detail_returns_the_record(api: Api, truth: list[Record]) -> None:
    for record in (truth[0], truth[N_RECORDS // 3], truth[-1]):
        response = api.get(record["resource_uri"])
        assert response.status_code == 200
        assert response.json() == record


@pytest.mark.parametrize("path", ["/api/sendsms/1/", "/api/sendsms/99999999/",
                                  "/api/sendsms/abc/"])
def test_detail_of_an_unknown_id_is_404_with_an_empty_body(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404 and response.content == b""

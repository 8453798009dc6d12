"""Classifying bad records, building reject rows, and parsing bodies orjson refuses."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from pipelines.errors import BadRecordError
from pipelines.quorum.client import QuorumClient, register_secret
from pipelines.quorum.jsontext import loads_tolerant
from pipelines.quorum.rejects import (
    KnownReject,
    RejectLog,
    RejectStats,
    apply_policy,
    find_problem,
    reject_key,
    split_page,
    too_many_rejects_error,
)
from pipelines.simulator import World

API_KEY = "unit-KEY-93b1e0"


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return World(seed=5, n_records=40).ground_truth()


def spoiled(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    for key, value in changes.items():
        if value is _DELETE:
            del out[key]
        else:
            out[key] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"updated": "not-a-date"}, "`updated` is not an ISO 8601 date-time ('not-a-date')"),
        ({"updated": None}, "`updated` is missing"),
        ({"created": 1700000000}, "`created` is not an ISO 8601 date-time (1700000000)"),
        # a valid local time whose UTC instant falls before year 1 (was an OverflowError)
        (
            {"updated": "0001-01-01T00:30:00+01:00"},
            "`updated` is not an ISO 8601 date-time ('0001-01-01T00:30:00+01:00')",
        ),
        # the detail URI still names the record, so the retry can fetch it by that id
        ({"id": _DELETE}, "`id` is missing (retried by its resource_uri's id)"),
        (
            {"id": _DELETE, "resource_uri": _DELETE},
            "`id` is missing (it cannot be retried by id)",
        ),
        (
            {"id": "12", "resource_uri": "/api/sendsms/x/"},
            "`id` is not an integer ('12'; it cannot be retried by id)",
        ),
        ({"id": 2**70}, "`id` is not an integer"),
        (
            {"sent_event": {"timestamp": "yesterday", "carrier": "X"}},
            "`sent_event.timestamp` is not an ISO 8601 date-time ('yesterday')",
        ),
        ({"failed_event": {"carrier": 7}}, "`failed_event.carrier` is an integer, expected text"),
        (
            {"supporter_id": "/api/newsupporter/abc/"},
            "`supporter_id` is not a resource URI ending in an id ('/api/newsupporter/abc/')",
        ),
        ({"bulk_sms": {"id": 3}}, "`bulk_sms` is not a resource URI ending in an id ({'id': 3})"),
        ({"opens": "many"}, "`opens` is 'many', expected an integer"),
        ({"converted": 1}, "`converted` is 1, expected true or false"),
        # personal fields: the reason says the kind of value, never the value
        ({"message_content": {"text": "hi Ann"}}, "`message_content` is an object, expected text"),
        ({"supporter_email": 42}, "`supporter_email` is an integer, expected text"),
        ({"rcpt_dict": {"n": 2**70}}, "`rcpt_dict` cannot be written as JSON"),
    ],
)
def test_each_kind_of_bad_record_is_named(records, changes, reason):
    record = spoiled(records[0], **changes)
    assert find_problem(records[0]) is None
    problem = find_problem(record)
    assert problem is not None and problem.startswith(reason)
    assert "\n" not in problem
    page = split_page([records[1], record, records[2]])
    assert [r for r, _ in page.bad] == [record]
    assert page.sendsms is not None and page.sendsms["id"].to_pylist() == [
        records[1]["id"],
        records[2]["id"],
    ]


def test_a_record_that_is_not_an_object_is_rejected(records):
    page = split_page([records[0], ["not", "a", "record"]])
    assert page.bad == [(["not", "a", "record"], "the record is a list, not a JSON object "
                         "(it cannot be retried by id)")]


def test_a_clean_page_takes_the_fast_path_whole(records):
    page = split_page(records)
    assert page.bad == []
    assert page.sendsms is not None and page.sendsms.num_rows == len(records)
    assert page.events is not None and page.events.num_rows > 0


def test_a_page_of_only_bad_records_yields_no_tables(records):
    page = split_page([spoiled(r, updated="x") for r in records[:3]])
    assert page.sendsms is None and page.events is None and len(page.bad) == 3


def test_events_of_a_rejected_record_are_not_loaded(records):
    bad = spoiled(records[0], queued_event={"timestamp": "soon"})
    page = split_page([bad, records[1]])
    assert page.events is not None
    assert set(page.events["sendsms_id"].to_pylist()) <= {records[1]["id"]}


def drop_messages(column: str, values: list[Any]) -> list[Any]:
    return [None for _ in values] if column == "message_content" else values


def test_the_stored_record_has_the_policy_applied_and_no_key(records):
    register_secret(API_KEY)
    record = spoiled(records[0], updated="nope", resource_uri=f"/x/?api_key={API_KEY}")
    stats = RejectStats()
    log = RejectLog((), transform=drop_messages, run_id="run-1", stats=stats)
    key = log.reject(record, "`updated` is not an ISO 8601 date-time ('nope')")
    table = log.table([key])
    assert table is not None
    row = table.to_pylist()[0]
    stored = orjson.loads(row["record"])
    assert stored["message_content"] is None and records[0]["message_content"]
    assert stored["supporter_name"] == records[0]["supporter_name"]
    assert API_KEY not in repr(row)
    assert row["run_id"] == "run-1" and row["status"] == "open" and row["id"] == record["id"]
    assert stats.rejected == 1 and stats.new == 1
    assert stats.samples == [(record["id"], row["reason"])]


def test_a_policy_that_cannot_read_a_value_withholds_it(records):
    def fussy(column: str, values: list[Any]) -> list[Any]:
        if column == "supporter_name":
            raise ValueError("cannot hash that")
        return values

    stored = apply_policy(spoiled(records[0], supporter_name=["x"]), fussy)
    assert stored["supporter_name"].startswith("[withheld")


def test_a_record_without_id_gets_a_stable_key(records):
    record = spoiled(records[0], id=_DELETE, resource_uri=_DELETE)
    text = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
    assert reject_key(record, text) == reject_key(copy.deepcopy(record), text)
    assert reject_key(record, text).startswith("sha256:")
    assert reject_key(records[0], text) == f"id:{records[0]['id']}"
    # without `id` but with its detail URI, the record keeps its id (and its retry)
    named = spoiled(records[0], id=_DELETE)
    assert reject_key(named, text) == f"id:{records[0]['id']}"


def test_first_seen_survives_and_known_rejects_are_not_new(records):
    first_seen = datetime(2026, 1, 2, tzinfo=UTC)
    record = spoiled(records[0], updated="bad")
    known = KnownReject(f"id:{record['id']}", record["id"], first_seen)
    stats = RejectStats()
    log = RejectLog([known], transform=None, run_id="r", stats=stats)
    assert log.retry_ids() == [record["id"]] and log.is_retried(record)
    key = log.reject(record, "`updated` is not an ISO 8601 date-time ('bad')")
    log.reject(record, "seen twice in one run: one row")
    table = log.table([key])
    assert table is not None and table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["first_seen_at"] == first_seen and row["last_seen_at"] > first_seen
    assert (stats.rejected, stats.new) == (1, 0)


def test_gone_and_resolved_rows(records):
    first_seen = datetime(2026, 1, 2, tzinfo=UTC)
    known = [
        KnownReject("id:1", 1, first_seen, record='{"id":1}', reason="`updated` is missing"),
        KnownReject("id:2", 2, first_seen),
        KnownReject("id:3", 3, first_seen, status="gone"),
    ]
    stats = RejectStats()
    log = RejectLog(known, transform=None, run_id="r", stats=stats)
    assert log.retry_ids() == [1, 2]
    log.gone(1)
    log.resolve(2)
    table = log.table(["id:1", "id:2"])
    assert table is not None
    gone, resolved = table.to_pylist()
    assert gone["status"] == "gone" and gone["record"] == '{"id":1}'
    assert gone["reason"].endswith("before: `updated` is missing")
    assert gone["first_seen_at"] == first_seen and gone["resolved_at"] is None
    assert resolved["resolved_at"] is not None  # the merge deletes this reject
    assert (stats.gone, stats.resolved) == (1, 1)


def test_too_many_rejects_names_the_first_bad_fields():
    samples = [(5, "`updated` is not an ISO 8601 date-time ('x')"), (None, "`id` is missing")]
    error = too_many_rejects_error(30, 1000, 0.01, samples)
    assert isinstance(error, BadRecordError) and error.exit_code == 1
    text = str(error)
    assert "30 of the 1,000 records read (3.0%)" in text
    assert "record 5: `updated`" in text and "record (no id): `id` is missing" in text
    assert "cursor is unchanged" in text and "max_reject_fraction" in text


# -- a body orjson refuses -----------------------------------------------------------------------

LONE_SURROGATE_PAGE = (
    b'{"meta": {"next": null, "total_count": 1}, "objects": '
    b'[{"id": 7, "updated": "2026-05-01T10:00:00Z", '
    b'"message_content": "broken \\ud800 here, fine \\ud83d\\ude00"}]}'
)


def test_loads_tolerant_keeps_a_lone_surrogate_as_its_escape_text():
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(LONE_SURROGATE_PAGE)
    body = loads_tolerant(LONE_SURROGATE_PAGE)
    text = body["objects"][0]["message_content"]
    assert text == "broken \\ud800 here, fine \U0001f600"
    text.encode("utf-8")  # valid UTF-8 now: Arrow and Parquet take it
    for broken in (b'{"a": ', b'{"a": NaN}', b"\xff"):
        with pytest.raises(ValueError):
            loads_tolerant(broken)


@pytest.fixture
def odd_body_server() -> Iterator[tuple[str, list[int]]]:
    """A loopback server answering every GET with the lone-surrogate page (a fault the
    simulator cannot serve yet), counting the requests."""
    served: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(LONE_SURROGATE_PAGE)))
            self.end_headers()
            self.wfile.write(LONE_SURROGATE_PAGE)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def test_the_client_parses_such_a_page_instead_of_retrying_it(odd_body_server):
    base_url, served = odd_body_server
    with QuorumClient(base_url, "u", API_KEY, max_attempts=3, backoff_initial=0.01) as client:
        body = client.get_json("/api/sendsms/", [("limit", 10)])
    assert served == [1], "the page was retried as if the API had failed"
    assert client.stats.retries == 0
    page = split_page(body["objects"])
    assert page.bad == [] and page.sendsms is not None
    assert page.sendsms["message_content"].to_pylist() == ["broken \\ud800 here, fine \U0001f600"]

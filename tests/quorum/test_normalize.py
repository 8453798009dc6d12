"""`pipelines/quorum/normalize.py`: the columnar fast path and the exact row path agree.

The normalizer builds each column in Arrow when it can (vectorised timestamps, URI ids, one
`itemgetter` per record, events a type at a time) and falls back to a value-by-value path for
anything unusual. Both must give the same table, schema and values, so every test here builds
the tables twice: once as the module chooses, once with the fast pieces switched off
(`exact_tables`), and compares them; tests of an edge case also check which path the module
really took, so a fallback that silently swallowed the case cannot pass for the fast path.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from pipelines.config import PiiSettings
from pipelines.errors import BadRecordError
from pipelines.ops.privacy import make_policy
from pipelines.quorum import normalize, settings
from pipelines.quorum.normalize import PersonalDataPolicy, events_table, sendsms_table
from tests.conftest import API_KEY, API_USER

Record = dict[str, Any]


# ---------------------------------------------------------------------------- helpers


def base_record(record_id: int = 1001, **changes: Any) -> Record:
    """A complete SendSMS record in the contract's shape (every field present)."""
    record: Record = {
        "id": record_id,
        "resource_uri": f"/api/sendsms/{record_id}/",
        "created": "2026-10-30T18:00:04.123933+00:00",
        "updated": "2026-10-31T23:43:18.253135-04:00",
        "timestamp": "2026-10-30T18:00:04.123933",
        "send_time": "2026-10-30T18:00:00Z",
        "bulk_sms": "/api/bulksms/4001/",
        "bulk_sms_description": "Fundraising push",
        "bulk_sms_send_time": "2026-10-30T14:00:00-04:00",
        "supporter_id": "/api/newsupporter/880142/",
        "supporter_name": "Kenneth Pena",
        "supporter_email": "kpena527@example.org",
        "supporter_title": "Student",
        "supporter_public_organization": "League of Women Voters",
        "associated_number": "+13125550199",
        "message_content": "Chip in $10 today? https://qrm.us/qn7x2",
        "message_uuid": "9c10be80-0a9f-4a89-a753-45fdfd08e9b6",
        "message_direction": 2,
        "current_status": 3,
        "queued_event": {"timestamp": "2026-10-30T18:00:04.123933Z", "provider_sid": "SM9c"},
        "sent_event": {"timestamp": "2026-10-30T18:00:04.907191", "carrier": "Verizon"},
        "delivered_event": {"timestamp": "2026-10-30T18:00:30+00:00", "carrier": "Verizon"},
        "failed_event": {},
        "undelivered_event": {},
        "rejected_event": {},
        "effective_message_count": 1,
        "opens": 2,
        "converted": False,
        "archived": False,
        "rcpt_dict": {"phone_number": "+13125708876", "first_name": "Kenneth"},
        "_extra": {},
    }
    record.update(changes)
    return record


def _transpose_by_get(records: list[Record], fields: tuple[str, ...]) -> dict[str, list[Any]]:
    return {name: [r.get(name) for r in records] for name in fields}


def exact_tables(
    records: list[Record], transform: PersonalDataPolicy | None = None
) -> tuple[pa.Table, pa.Table]:
    """Both tables built with every fast piece switched off: the row-by-row reference.

    `_time_array` returning None is the module's own "go exact" signal: timestamps are then
    parsed value by value and `events_table` takes `_events_row_by_row`.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(normalize, "_time_array", lambda values, *, empty_is_null: None)
        patch.setattr(normalize, "_ids_from_uris", normalize.ids_one_by_one)
        patch.setattr(normalize, "_transpose", _transpose_by_get)
        patch.setattr(normalize, "_events_by_type", lambda records, policy: None)
        return sendsms_table(records, transform), events_table(records, transform)


def fast_tables(
    records: list[Record], transform: PersonalDataPolicy | None = None
) -> tuple[pa.Table, pa.Table]:
    """Both tables as the module builds them."""
    return sendsms_table(records, transform), events_table(records, transform)


def assert_same_table(fast: pa.Table, exact: pa.Table) -> None:
    # rows first: a mismatch then shows which value differs, not just "not equal"
    assert fast.column_names == exact.column_names
    assert fast.to_pylist() == exact.to_pylist()
    assert fast.schema == exact.schema
    assert fast.equals(exact, check_metadata=True)


def assert_paths_agree(
    records: list[Record], transform: PersonalDataPolicy | None = None
) -> tuple[pa.Table, pa.Table]:
    """Build both ways, compare, and return the fast path's tables."""
    fast = fast_tables(copy.deepcopy(records), transform)
    exact = exact_tables(copy.deepcopy(records), transform)
    assert_same_table(fast[0], exact[0])
    assert_same_table(fast[1], exact[1])
    return fast


def events_fast_path_taken(records: list[Record]) -> bool:
    return normalize._events_by_type(records, None) is not None


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def simulator_page(simulator_factory: Any) -> list[Record]:
    """200 records as the simulator serves them over HTTP: every form it renders."""
    sim = simulator_factory(n_records=400)
    response = httpx.get(
        f"{sim.base_url}/api/sendsms/",
        params={"username": API_USER, "api_key": API_KEY, "limit": 200, "order_by": "-updated"},
        timeout=30,
    )
    response.raise_for_status()
    objects: list[Record] = orjson.loads(response.content)["objects"]
    assert len(objects) == 200
    return objects


# ---------------------------------------------------------------------------- real pages


def test_a_simulator_page_takes_the_fast_path_and_matches_the_exact_path(simulator_page):
    assert events_fast_path_taken(simulator_page)
    for field_name in settings.TIMESTAMP_FIELDS:
        column = [r[field_name] for r in simulator_page]
        assert normalize._time_array(column, empty_is_null=True) is not None, field_name
    sendsms, events = assert_paths_agree(simulator_page)
    assert sendsms.num_rows == 200
    assert sendsms.column("id").to_pylist() == [r["id"] for r in simulator_page]
    happened = sum(
        1 for r in simulator_page for f in settings.EVENT_FIELDS if r.get(f)
    )
    assert events.num_rows == happened > 0
    # the simulator's extra event keys (provider_sid, price, ...) became columns
    assert "provider_sid" in events.column_names


def test_every_simulator_time_form_is_converted_to_the_same_utc_instant():
    # the forms of pipelines/simulator/timefmt.py, all for 2026-10-30T18:00:04[.123456]Z
    micro = [
        "2026-10-30T18:00:04.123456",
        "2026-10-30T18:00:04.123456Z",
        "2026-10-30T18:00:04.123456+00:00",
        "2026-10-30T14:00:04.123456-04:00",
    ]
    whole = [
        "2026-10-30T18:00:04",
        "2026-10-30T18:00:04Z",
        "2026-10-30T13:00:04-05:00",
        "2026-10-30T19:00:04+01:00",
    ]
    records = [base_record(i, updated=v) for i, v in enumerate(micro + whole, start=1)]
    assert normalize._time_array([r["updated"] for r in records], empty_is_null=True) is not None
    sendsms, events = assert_paths_agree(records)
    expected = [utc(2026, 10, 30, 18, 0, 4, 123456)] * 4 + [utc(2026, 10, 30, 18, 0, 4)] * 4
    assert sendsms.column("updated").to_pylist() == expected
    assert sendsms.schema.field("updated").type == pa.timestamp("us", tz="UTC")
    # every event row carries its record's `updated`
    by_id = dict(zip(sendsms.column("id").to_pylist(), expected, strict=True))
    for row in events.to_pylist():
        assert row["updated"] == by_id[row["sendsms_id"]]


@pytest.mark.parametrize(
    ("text", "expected", "fast"),
    [
        ("2026-10-30T18:00:04.5Z", utc(2026, 10, 30, 18, 0, 4, 500000), True),
        ("2026-10-30T18:00:04.123+05:30", utc(2026, 10, 30, 12, 30, 4, 123000), True),
        ("2026-10-30T23:59:59.999999-23:59", utc(2026, 10, 31, 23, 58, 59, 999999), True),
        # other ISO forms that Arrow's parser reads as Python does
        ("2026-10-30T18:00:04+0530", utc(2026, 10, 30, 12, 30, 4), True),
        ("2026-10-30 18:00:04", utc(2026, 10, 30, 18, 0, 4), True),
        ("2026-10-30T18:00Z", utc(2026, 10, 30, 18, 0), True),
        # forms Arrow refuses: the exact path parses them the way Python does
        ("20261030T180004Z", utc(2026, 10, 30, 18, 0, 4), False),
        ("2026-10-30T18:00:04,5Z", utc(2026, 10, 30, 18, 0, 4, 500000), False),
        ("2026-10-30T18:00:04.1234567Z", utc(2026, 10, 30, 18, 0, 4, 123456), False),
        # not a date-time in the contract, but accepted leniently as midnight UTC
        ("2026-10-30", utc(2026, 10, 30), False),
    ],
)
def test_other_iso_forms_read_as_python_reads_them_on_either_path(text, expected, fast):
    records = [base_record(1, updated="2026-10-31T00:00:00Z"), base_record(2, updated=text)]
    records[1]["delivered_event"] = {"timestamp": text, "carrier": "AT&T"}
    column = [r["updated"] for r in records]
    assert (normalize._time_array(column, empty_is_null=True) is not None) is fast
    assert events_fast_path_taken(records) is fast
    sendsms, events = assert_paths_agree(records)
    assert sendsms.column("updated").to_pylist()[1] == expected
    delivered = [
        row for row in events.to_pylist()
        if row["sendsms_id"] == 2 and row["event_type"] == "delivered"
    ]
    assert [row["occurred_at"] for row in delivered] == [expected]


def test_empty_and_missing_times_are_null_in_both_paths():
    records = [
        base_record(1, send_time="", bulk_sms_send_time=None),
        base_record(2, send_time=None, bulk_sms_send_time=""),
    ]
    sendsms, _ = assert_paths_agree(records)
    assert sendsms.column("send_time").to_pylist() == [None, None]
    assert sendsms.column("bulk_sms_send_time").to_pylist() == [None, None]


# ---------------------------------------------------------------------------- events


def test_empty_none_and_missing_event_objects_give_no_rows():
    records = [
        base_record(1, queued_event={}, sent_event=None, delivered_event={}),
        base_record(2, queued_event=None, sent_event={}, delivered_event=None),
    ]
    del records[1]["rejected_event"]  # a record without the key at all
    sendsms, events = assert_paths_agree(records)
    assert sendsms.num_rows == 2
    assert events.num_rows == 0
    # the documented columns exist even when no event happened
    assert events.column_names[: len(normalize.EVENT_COLUMNS)] == list(normalize.EVENT_COLUMNS)
    assert events.schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")


def test_event_rows_come_in_record_then_event_type_order_with_extra_keys_kept():
    records = [
        base_record(
            1,
            queued_event={"timestamp": "2026-10-30T18:00:00Z", "provider_sid": "SM1"},
            failed_event={
                "timestamp": "2026-10-30T18:00:09Z",
                "error_code": 30003,  # a number in the API, text in the table
                "error_message": "Unreachable destination handset",
                "price": {"amount": "-0.0079", "unit": "USD"},
            },
        ),
        base_record(
            2,
            sent_event={"timestamp": "2026-10-30T18:01:00Z", "segments": 2, "tags": ["a", "b"]},
        ),
    ]
    assert events_fast_path_taken(records)
    _, events = assert_paths_agree(records)
    rows = events.to_pylist()
    assert [(r["sendsms_id"], r["event_type"]) for r in rows] == [
        (1, "queued"), (1, "sent"), (1, "delivered"), (1, "failed"),
        (2, "queued"), (2, "sent"), (2, "delivered"),
    ]
    failed = rows[3]
    assert failed["error_code"] == "30003"
    assert failed["occurred_at"] == utc(2026, 10, 30, 18, 0, 9)
    assert orjson.loads(failed["price"]) == {"amount": "-0.0079", "unit": "USD"}
    assert rows[5]["segments"] == 2
    assert orjson.loads(rows[5]["tags"]) == ["a", "b"]
    assert events.column_names[len(normalize.EVENT_COLUMNS):] == [
        "provider_sid", "price", "segments", "tags"
    ]


def test_event_keys_that_clash_with_columns_force_the_row_path_and_are_renamed():
    records = [
        base_record(
            1,
            queued_event={
                "timestamp": "2026-10-30T18:00:00Z",
                "updated": "2026-10-30T18:00:01Z",
                "event_type": "provider-queued",
                "sendsms_id": 99,
            },
        )
    ]
    assert not events_fast_path_taken(records)
    _, events = assert_paths_agree(records)
    queued = events.to_pylist()[0]
    assert queued["event_updated"] == "2026-10-30T18:00:01Z"
    assert queued["event_event_type"] == "provider-queued"
    assert queued["event_sendsms_id"] == 99
    assert queued["sendsms_id"] == 1 and queued["event_type"] == "queued"


# ---------------------------------------------------------------------------- fields


def test_missing_optional_fields_are_null_columns_that_still_exist():
    full = base_record(1)
    sparse = base_record(2)
    for name in ("bulk_sms", "bulk_sms_send_time", "supporter_title", "rcpt_dict", "_extra",
                 "opens", "converted", "failed_event"):
        del sparse[name]
    sendsms, _ = assert_paths_agree([full, sparse])
    row = sendsms.to_pylist()[1]
    for column in ("bulk_sms", "bulk_sms_id", "bulk_sms_send_time", "supporter_title",
                   "rcpt_dict", "_extra", "opens", "converted", "source_deleted_at"):
        assert row[column] is None, column
    expected = [c for c, _ in normalize.SENDSMS_COLUMNS.values()] + list(normalize.DERIVED_COLUMNS)
    assert sendsms.column_names == expected
    assert not sendsms.schema.field("id").nullable


def test_ids_are_parsed_out_of_resource_uris():
    records = [
        base_record(1, bulk_sms="/api/bulksms/12/", supporter_id="/api/newsupporter/7/"),
        base_record(2, bulk_sms=None, supporter_id="https://www.quorum.us/api/newsupporter/88"),
        base_record(3, bulk_sms="", supporter_id="/api/newsupporter/880001/"),
    ]
    sendsms, _ = assert_paths_agree(records)
    assert sendsms.column("bulk_sms_id").to_pylist() == [12, None, None]
    assert sendsms.column("bulk_sms").to_pylist() == ["/api/bulksms/12/", None, ""]
    assert sendsms.column("supporter_id").to_pylist() == [7, 88, 880001]
    assert sendsms.column("supporter_uri").to_pylist()[1].endswith("/newsupporter/88")


def test_non_ascii_and_ucs2_text_is_kept_exactly():
    text = "Peña \u2013 ¡Vota! 😀 привет 你好 \u200b"
    records = [
        base_record(1, message_content=text, supporter_name="Zoë Ñúñez", bulk_sms_description="é"),
        base_record(2, rcpt_dict={"first_name": "Łukasz", "note": "日本"}),
    ]
    sendsms, _ = assert_paths_agree(records)
    assert sendsms.column("message_content").to_pylist()[0] == text
    assert sendsms.column("supporter_name").to_pylist()[0] == "Zoë Ñúñez"
    assert orjson.loads(sendsms.column("rcpt_dict").to_pylist()[1]) == {
        "first_name": "Łukasz", "note": "日本"
    }


def test_rcpt_dict_and_extra_become_json_text_with_sorted_keys():
    nested = {"z": 1, "a": {"y": [1, 2, None], "b": True}}
    records = [
        base_record(1, rcpt_dict=nested, _extra={"tags": ["gotv"], "list_id": 21}),
        base_record(2, rcpt_dict=None, _extra={}),
    ]
    sendsms, _ = assert_paths_agree(records)
    rcpt = sendsms.column("rcpt_dict").to_pylist()
    assert rcpt[0] == '{"a":{"b":true,"y":[1,2,null]},"z":1}'
    assert orjson.loads(rcpt[0]) == nested
    assert rcpt[1] is None
    assert sendsms.column("_extra").to_pylist() == ['{"list_id":21,"tags":["gotv"]}', "{}"]


def test_fields_the_contract_does_not_know_are_kept_in_first_seen_order():
    records = [
        base_record(1, campaign_tag="gotv", score=3),
        base_record(2, mixed=7, nested={"k": [1]}, score=None),
        base_record(3, mixed="seven"),
    ]
    sendsms, _ = assert_paths_agree(records)
    known = len(normalize.SENDSMS_COLUMNS) + len(normalize.DERIVED_COLUMNS)
    assert sendsms.column_names[known:] == ["campaign_tag", "score", "mixed", "nested"]
    assert sendsms.column("score").to_pylist() == [3, None, None]
    assert sendsms.schema.field("score").type == pa.int64()
    # an int and a string in one column: kept as text rather than failing the load
    assert sendsms.column("mixed").to_pylist() == [None, "7", "seven"]
    assert sendsms.column("nested").to_pylist() == [None, '{"k":[1]}', None]


# ---------------------------------------------------------------------------- transform


def test_the_transform_sees_the_same_columns_and_values_on_both_paths():
    records = [base_record(1), base_record(2, bulk_sms=None, new_field={"email": "a@b.c"})]
    calls: dict[str, list[tuple[str, list[Any]]]] = {"fast": [], "exact": []}

    def recording(into: str) -> PersonalDataPolicy:
        def transform(column: str, values: list[Any]) -> list[Any]:
            calls[into].append((column, list(values)))
            if column == "supporter_name":
                return [None if v is None else v.upper() for v in values]
            if column == "message_content":
                return [None] * len(values)
            if column == "supporter_id":
                return [None if v is None else v + 1 for v in values]
            if column == "event.carrier":
                return ["carrier"] * len(values)
            return values

        return transform

    fast = fast_tables(copy.deepcopy(records), recording("fast"))
    exact = exact_tables(copy.deepcopy(records), recording("exact"))
    assert_same_table(fast[0], exact[0])
    assert_same_table(fast[1], exact[1])
    assert calls["fast"] == calls["exact"]
    called = [column for column, _ in calls["fast"]]
    assert "updated" in called and "event.occurred_at" in called and "new_field" in called
    # timestamps reach the transform as aware UTC datetimes on both paths
    updated = dict(calls["fast"])["updated"]
    assert updated[0] == utc(2026, 11, 1, 3, 43, 18, 253135)
    sendsms, events = fast
    assert sendsms.column("supporter_name").to_pylist() == ["KENNETH PENA"] * 2
    assert sendsms.column("message_content").null_count == 2
    assert sendsms.column("supporter_id").to_pylist() == [880143, 880143]
    assert set(events.column("carrier").to_pylist()) == {"carrier"}


def test_the_privacy_policy_gives_the_same_tables_on_both_paths(simulator_page):
    transform = make_policy(
        PiiSettings(
            choices={"phones": "hash", "emails": "hash", "names": "drop", "messages": "drop",
                     "recipients": "keep"},
            hash_key="k" * 40,
        )
    )
    assert transform is not None
    sendsms, _ = assert_paths_agree(simulator_page, transform)
    # dropped: nothing of a name is left (an empty name stays empty)
    assert set(sendsms.column("supporter_name").to_pylist()) <= {None, ""}
    emails = sendsms.column("supporter_email").to_pylist()
    assert all(e is None or "@" not in e for e in emails)


# ---------------------------------------------------------------------------- bad records


@pytest.mark.parametrize("path", ["fast", "exact"])
@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"updated": "not-a-date"}, ["record 1002", "`updated`", "not-a-date"]),
        ({"created": "2026-02-30T00:00:00Z"}, ["record 1002", "`created`", "2026-02-30"]),
        # a valid local time whose UTC instant is before year 1: Python cannot hold it
        ({"created": "0001-01-01T00:30:00+01:00"}, ["record 1002", "`created`", "0001-01-01"]),
        ({"created": "0000-01-01T00:00:00Z"}, ["record 1002", "`created`", "0000-01-01"]),
        ({"send_time": 1730311204}, ["record 1002", "`send_time`"]),
        ({"bulk_sms": "bulk-twelve"}, ["record 1002", "`bulk_sms`", "bulk-twelve"]),
        ({"supporter_id": "/api/newsupporter/x/"}, ["record 1002", "`supporter_id`"]),
        ({"opens": "many"}, ["`opens`", "many", "int64"]),
        ({"converted": {"yes": 1}}, ["`converted`"]),
    ],
)
def test_a_malformed_record_raises_an_error_naming_the_field(path, changes, names):
    records = [base_record(1001), base_record(1002, **changes)]
    build = fast_tables if path == "fast" else exact_tables
    with pytest.raises(BadRecordError) as caught:
        build(records)
    message = str(caught.value)
    for name in names:
        assert name in message, message
    assert "saved cursor is unchanged" in message
    assert caught.value.exit_code != 0


@pytest.mark.parametrize("path", ["fast", "exact"])
def test_a_malformed_event_timestamp_names_the_record_and_the_event(path):
    records = [
        base_record(1001),
        base_record(1002, sent_event={"timestamp": "yesterday", "carrier": "T-Mobile"}),
    ]
    build = fast_tables if path == "fast" else exact_tables
    with pytest.raises(BadRecordError) as caught:
        build(records)
    message = str(caught.value)
    assert "record 1002" in message and "sent_event.timestamp" in message, message


def test_a_page_of_one_thousand_records_is_consistent_across_paths_and_time_shifts():
    # many records, every form, events on different records: exercises the ordering code
    start = utc(2026, 10, 1)
    forms = ["", "Z", "+00:00", "-04:00"]
    records = []
    for i in range(1000):
        moment = start + timedelta(seconds=37 * i, microseconds=i)
        offset = -4 if forms[i % 4] == "-04:00" else 0
        local = (moment + timedelta(hours=offset)).replace(tzinfo=None).isoformat()
        text = local + forms[i % 4]
        events = {f: {} for f in settings.EVENT_FIELDS}
        events[settings.EVENT_FIELDS[i % 6]] = {"timestamp": text, "carrier": f"c{i % 3}"}
        records.append(base_record(10_000 + i, updated=text, **events))
    assert events_fast_path_taken(records)
    sendsms, events = assert_paths_agree(records)
    assert sendsms.column("updated").to_pylist() == [
        start + timedelta(seconds=37 * i, microseconds=i) for i in range(1000)
    ]
    assert events.num_rows == 1000
    assert events.column("sendsms_id").to_pylist() == [10_000 + i for i in range(1000)]


def _page(first_id: int, rows: int, extra: bool = False) -> tuple[pa.Table, pa.Table]:
    """A page's two tables: `rows` records from `first_id`, two events each."""
    columns: dict[str, Any] = {"id": list(range(first_id, first_id + rows))}
    if extra:
        columns["new_field"] = ["x"] * rows
    events = pa.table({
        "sendsms_id": [i for i in columns["id"] for _ in range(2)],
        "event_type": ["queued", "sent"] * rows,
    })
    return pa.table(columns), events


def test_a_table_batch_hands_on_every_row_once_in_page_order():
    batch = normalize.TableBatch(rows=5)
    pages = [_page(1, 2), _page(3, 2), _page(5, 2), _page(7, 1)]
    items = [item for sendsms, events in pages for item in batch.add(sendsms, events)]
    assert len(items) == 1, "the first three pages (6 rows >= 5) make one item"
    items.append(batch.flush())
    assert batch.flush() == (None, None)
    tables = [(s, e) for s, e in items if s is not None and e is not None]
    assert len(tables) == 2
    ids = [i for sendsms, _ in tables for i in sendsms.column("id").to_pylist()]
    event_ids = [i for _, events in tables for i in events.column("sendsms_id").to_pylist()]
    assert ids == list(range(1, 8))
    assert event_ids == [i for i in range(1, 8) for _ in range(2)]
    assert tables[0][0].equals(pa.concat_tables([pages[0][0], pages[1][0], pages[2][0]]))


def test_a_page_with_another_schema_starts_a_new_item():
    batch = normalize.TableBatch(rows=100)
    assert batch.add(*_page(1, 2)) == []
    ended = batch.add(*_page(3, 2, extra=True))
    assert len(ended) == 1
    first = ended[0][0]
    assert first is not None and first.column("id").to_pylist() == [1, 2]
    sendsms, _ = batch.flush()
    assert sendsms is not None and sendsms.column_names == ["id", "new_field"]
    assert sendsms.column("id").to_pylist() == [3, 4]


def test_pages_without_rows_add_nothing():
    batch = normalize.TableBatch(rows=2)
    empty = pa.table({"id": pa.array([], pa.int64())})
    assert batch.add(None, None) == [] and batch.add(empty, None) == []
    assert batch.flush() == (None, None)

"""Compare the warehouse with the simulator's ground truth, written independently of the sync.

The expected rows are derived here from the API records with the rules of
`docs/architecture.md` (UTC timestamps, ids parsed from URIs, JSON kept whole), so a bug in
`pipelines.quorum.normalize` cannot hide by being repeated in the check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

TIMESTAMP_FIELDS = ("created", "updated", "timestamp", "send_time", "bulk_sms_send_time")
PLAIN_FIELDS = (
    "resource_uri",
    "bulk_sms",
    "bulk_sms_description",
    "supporter_name",
    "supporter_email",
    "supporter_title",
    "supporter_public_organization",
    "associated_number",
    "message_content",
    "message_uuid",
    "message_direction",
    "current_status",
    "effective_message_count",
    "opens",
    "converted",
    "archived",
)
EVENT_TYPES = ("queued", "sent", "delivered", "failed", "undelivered", "rejected")


def utc(value: Any) -> datetime | None:
    """Any ISO form, or a datetime, as an aware UTC datetime."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def uri_id(uri: str | None) -> int | None:
    """`/api/bulksms/12/` -> 12."""
    if not uri:
        return None
    return int(uri.rstrip("/").rsplit("/", 1)[-1])


def expected_sendsms(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The `quorum_raw.sendsms` rows the ground truth should produce, by id."""
    rows: dict[int, dict[str, Any]] = {}
    for record in records:
        row: dict[str, Any] = {field: record.get(field) for field in PLAIN_FIELDS}
        row.update({field: utc(record.get(field)) for field in TIMESTAMP_FIELDS})
        row["bulk_sms_id"] = uri_id(record.get("bulk_sms"))
        row["supporter_uri"] = record.get("supporter_id")
        row["supporter_id"] = uri_id(record.get("supporter_id"))
        row["rcpt_dict"] = record.get("rcpt_dict")
        row["_extra"] = record.get("_extra")
        rows[record["id"]] = row
    return rows


def warehouse_sendsms(database: Path) -> dict[int, dict[str, Any]]:
    """The `quorum_raw.sendsms` rows in the warehouse, by id, in the same shape."""
    columns = [
        *PLAIN_FIELDS,
        *TIMESTAMP_FIELDS,
        "bulk_sms_id",
        "supporter_uri",
        "supporter_id",
        "rcpt_dict",
        "_extra",
    ]
    with duckdb.connect(str(database), read_only=True) as connection:
        result = connection.execute(
            "select id, " + ", ".join(f'"{c}"' for c in columns) + " from quorum_raw.sendsms"
        ).fetchall()
    rows: dict[int, dict[str, Any]] = {}
    for values in result:
        row = dict(zip(columns, values[1:], strict=True))
        for field in TIMESTAMP_FIELDS:
            row[field] = utc(row[field])
        for field in ("rcpt_dict", "_extra"):
            row[field] = None if row[field] is None else json.loads(row[field])
        assert values[0] not in rows, f"duplicate id {values[0]} in quorum_raw.sendsms"
        rows[values[0]] = row
    return rows


def expected_events(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """`(sendsms_id, event_type, occurred_at, error_code, error_message, carrier)` rows."""
    rows: set[tuple[Any, ...]] = set()
    for record in records:
        for event_type in EVENT_TYPES:
            event = record.get(f"{event_type}_event") or {}
            if not event:
                continue
            code = event.get("error_code")
            rows.add(
                (
                    record["id"],
                    event_type,
                    utc(event.get("timestamp")),
                    None if code is None else str(code),
                    event.get("error_message"),
                    event.get("carrier"),
                )
            )
    return rows


def warehouse_events(database: Path) -> list[tuple[Any, ...]]:
    """The same tuples from `quorum_raw.sendsms_events` (a list: duplicates must show)."""
    with duckdb.connect(str(database), read_only=True) as connection:
        result = connection.execute(
            "select sendsms_id, event_type, occurred_at, error_code, error_message, carrier "
            "from quorum_raw.sendsms_events"
        ).fetchall()
    return [(r[0], r[1], utc(r[2]), r[3], r[4], r[5]) for r in result]


def assert_warehouse_equals(database: Path, records: list[dict[str, Any]]) -> None:
    """Every record, every field, every event: exactly the ground truth, nothing more."""
    expected = expected_sendsms(records)
    actual = warehouse_sendsms(database)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing, f"{len(missing)} records missing from the warehouse, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} records in the warehouse but not at the source: {extra[:5]}"
    differing = [i for i in expected if expected[i] != actual[i]]
    if differing:
        first = differing[0]
        diff = {
            k: (expected[first][k], actual[first].get(k))
            for k in expected[first]
            if expected[first][k] != actual[first].get(k)
        }
        raise AssertionError(f"{len(differing)} records differ; record {first}: {diff}")
    events = warehouse_events(database)
    assert len(events) == len(set(events)), "duplicate event rows in the warehouse"
    expected_event_rows = expected_events(records)
    assert set(events) == expected_event_rows, (
        f"events differ: {len(expected_event_rows - set(events))} missing, "
        f"{len(set(events) - expected_event_rows)} unexpected, e.g. "
        f"{sorted(expected_event_rows ^ set(events), key=str)[:3]}"
    )

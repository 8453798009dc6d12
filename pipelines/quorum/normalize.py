"""SendSMS records (API dicts) to Arrow tables: `sendsms` and `sendsms_events`.

Handing dlt Arrow tables with explicit types skips its row-by-row normalizer (fast) and
fixes every column's type up front, so a column that is NULL on one page does not change
type on the next. Every field is kept: documented ones get their documented type, fields the
API adds later are kept as they come (objects as JSON text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from pipelines.errors import BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.paging import Record, parse_api_time

TIMESTAMP = pa.timestamp("us", tz="UTC")

#: API field -> (column name, Arrow type). Order is the column order of `quorum_raw.sendsms`.
SENDSMS_COLUMNS: dict[str, tuple[str, pa.DataType]] = {
    "id": ("id", pa.int64()),
    "resource_uri": ("resource_uri", pa.string()),
    "created": ("created", TIMESTAMP),
    "updated": ("updated", TIMESTAMP),
    "timestamp": ("timestamp", TIMESTAMP),
    "send_time": ("send_time", TIMESTAMP),
    "bulk_sms": ("bulk_sms", pa.string()),
    "bulk_sms_description": ("bulk_sms_description", pa.string()),
    "bulk_sms_send_time": ("bulk_sms_send_time", TIMESTAMP),
    "supporter_id": ("supporter_uri", pa.string()),
    "supporter_name": ("supporter_name", pa.string()),
    "supporter_email": ("supporter_email", pa.string()),
    "supporter_title": ("supporter_title", pa.string()),
    "supporter_public_organization": ("supporter_public_organization", pa.string()),
    "associated_number": ("associated_number", pa.string()),
    "message_content": ("message_content", pa.string()),
    "message_uuid": ("message_uuid", pa.string()),
    "message_direction": ("message_direction", pa.int64()),
    "current_status": ("current_status", pa.int64()),
    "effective_message_count": ("effective_message_count", pa.int64()),
    "opens": ("opens", pa.int64()),
    "converted": ("converted", pa.bool_()),
    "archived": ("archived", pa.bool_()),
    "rcpt_dict": ("rcpt_dict", pa.string()),
    "_extra": ("_extra", pa.string()),
}
#: Columns derived from the record rather than copied from one field.
DERIVED_COLUMNS: dict[str, pa.DataType] = {
    "bulk_sms_id": pa.int64(),
    "supporter_id": pa.int64(),
    "source_deleted_at": TIMESTAMP,
}
EVENT_COLUMNS: dict[str, pa.DataType] = {
    "sendsms_id": pa.int64(),
    "event_type": pa.string(),
    "occurred_at": TIMESTAMP,
    "error_code": pa.string(),
    "error_message": pa.string(),
    "carrier": pa.string(),
    # the parent record's `updated`: the version these rows belong to, and dlt's cursor
    "updated": TIMESTAMP,
}
_EVENT_KEYS_MAPPED = {"timestamp": "occurred_at", "error_code": "error_code"}
_KNOWN_FIELDS = frozenset(SENDSMS_COLUMNS) | frozenset(settings.EVENT_FIELDS)
_URI_ID = re.compile(r"/(\d+)/?$")

Transform = Callable[[str, list[Any]], list[Any]]


def id_from_uri(uri: Any, *, record_id: Any, field_name: str) -> int | None:
    """The integer id at the end of a tastypie resource URI such as `/api/bulksms/12/`."""
    if uri is None or uri == "":
        return None
    if isinstance(uri, int):
        return uri
    match = _URI_ID.search(str(uri))
    if match is None:
        raise BadRecordError(
            f"SendSMS record {record_id} has a `{field_name}` that is not a resource URI "
            f"({str(uri)[:60]!r}). Nothing from this run was loaded and the saved cursor is "
            "unchanged; report the record id to Quorum support."
        )
    return int(match.group(1))


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _times(records: list[Record], field_name: str) -> list[datetime | None]:
    out: list[datetime | None] = []
    for record in records:
        value = record.get(field_name)
        out.append(
            None
            if value is None or value == ""
            else parse_api_time(value, record_id=record.get("id"), field_name=field_name)
        )
    return out


def _array(values: list[Any], arrow_type: pa.DataType, *, field_name: str) -> pa.Array:
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        bad = next(
            (v for v in values if v is not None and not _fits(v, arrow_type)), values[0]
        )
        raise BadRecordError(
            f"A SendSMS record has a `{field_name}` of an unexpected type ({str(bad)[:40]!r}, "
            f"expected {arrow_type}). Nothing from this run was loaded and the saved cursor is "
            "unchanged; report it to Quorum support."
        ) from None


def _fits(value: Any, arrow_type: pa.DataType) -> bool:
    try:
        pa.array([value], type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False
    return True


def _extra_array(values: list[Any]) -> pa.Array:
    """A column for a field the contract does not know: as it comes, JSON text if nested."""
    if any(isinstance(v, dict | list) for v in values):
        return pa.array([_json_text(v) for v in values], type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def sendsms_table(records: list[Record], transform: Transform | None = None) -> pa.Table:
    """One row per record with every field; ids parsed out of resource URIs.

    Args:
        records: SendSMS objects as the API returns them.
        transform: optional `(column, values) -> values` applied before the table is built
            (the personal-data policy hooks in here).
    """
    columns: dict[str, pa.Array] = {}
    for field_name, (column, arrow_type) in SENDSMS_COLUMNS.items():
        values: list[Any]
        if arrow_type == TIMESTAMP:
            values = _times(records, field_name)
        elif field_name in settings.JSON_FIELDS:
            values = [_json_text(r.get(field_name)) for r in records]
        else:
            values = [r.get(field_name) for r in records]
        if transform is not None:
            values = transform(column, values)
        columns[column] = _array(values, arrow_type, field_name=field_name)
    columns["bulk_sms_id"] = pa.array(
        [
            id_from_uri(r.get("bulk_sms"), record_id=r.get("id"), field_name="bulk_sms")
            for r in records
        ],
        type=pa.int64(),
    )
    columns["supporter_id"] = pa.array(
        [
            id_from_uri(r.get("supporter_id"), record_id=r.get("id"), field_name="supporter_id")
            for r in records
        ],
        type=pa.int64(),
    )
    if transform is not None:
        columns["supporter_id"] = pa.array(
            transform("supporter_id", columns["supporter_id"].to_pylist()), type=pa.int64()
        )
    columns["source_deleted_at"] = pa.nulls(len(records), type=TIMESTAMP)
    for field_name in _unknown_fields(records):
        values = [r.get(field_name) for r in records]
        if transform is not None:
            values = transform(field_name, values)
        columns[field_name] = _extra_array(values)
    return _table(columns, keys=("id",))


def _table(columns: dict[str, pa.Array], keys: tuple[str, ...]) -> pa.Table:
    """A table whose key columns are declared NOT NULL, as the destination's keys are."""
    fields = [pa.field(name, arr.type, nullable=name not in keys) for name, arr in columns.items()]
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


def _unknown_fields(records: Iterable[Record]) -> list[str]:
    found: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in _KNOWN_FIELDS and key not in found:
                found[key] = None
    return list(found)


def events_table(records: list[Record], transform: Transform | None = None) -> pa.Table:
    """One row per event that happened (a non-empty `*_event` object) of every record."""
    rows: list[dict[str, Any]] = []
    for record in records:
        record_id = record.get("id")
        updated = parse_api_time(
            record.get(settings.CURSOR_FIELD), record_id=record_id, field_name="updated"
        )
        for field_name in settings.EVENT_FIELDS:
            event = record.get(field_name)
            if not isinstance(event, dict) or not event:
                continue
            row: dict[str, Any] = {
                "sendsms_id": record_id,
                "event_type": field_name.removesuffix("_event"),
                "updated": updated,
            }
            for key, value in event.items():
                column = _EVENT_KEYS_MAPPED.get(key) or str(key)
                if column == "occurred_at":
                    value = (
                        None
                        if value is None
                        else parse_api_time(
                            value, record_id=record_id, field_name=f"{field_name}.timestamp"
                        )
                    )
                elif column == "error_code":
                    value = None if value is None else str(value)
                elif column in ("sendsms_id", "event_type", "updated"):
                    column = f"event_{column}"
                row[column] = value
            rows.append(row)
    columns: dict[str, pa.Array] = {}
    for column, arrow_type in EVENT_COLUMNS.items():
        values = [row.get(column) for row in rows]
        if transform is not None:
            values = transform(f"event.{column}", values)
        columns[column] = _array(values, arrow_type, field_name=f"event.{column}")
    extra_keys: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in EVENT_COLUMNS:
                extra_keys[key] = None
    for key in extra_keys:
        values = [row.get(key) for row in rows]
        if transform is not None:
            values = transform(f"event.{key}", values)
        columns[key] = _extra_array(values)
    return _table(columns, keys=("sendsms_id", "event_type"))

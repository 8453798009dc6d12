"""SendSMS records (API dicts) to Arrow tables: `sendsms` and `sendsms_events`.

Handing dlt Arrow tables with explicit types skips its row-by-row normalizer (fast) and
fixes every column's type up front, so a column that is NULL on one page does not change
type on the next. Every field is kept: documented ones get their documented type, fields the
API adds later are kept as they come (objects as JSON text).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.isotime import TIMESTAMP, parse_iso_utc
from pipelines.quorum.paging import Record
from pipelines.quorum.timestamps import parse_api_time

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

#: The personal-data policy as the tables apply it: `(column, values) -> values`, called on
#: every column (event columns as `event.<name>`) before the Arrow table is built.
PersonalDataPolicy = Callable[[str, list[Any]], list[Any]]


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
            (v for v in values if v is not None and not fits(v, arrow_type)), values[0]
        )
        raise BadRecordError(
            f"A SendSMS record has a `{field_name}` of an unexpected type ({str(bad)[:40]!r}, "
            f"expected {arrow_type}). Nothing from this run was loaded and the saved cursor is "
            "unchanged; report it to Quorum support."
        ) from None


def fits(value: Any, arrow_type: pa.DataType) -> bool:
    """Whether Arrow can hold `value` as `arrow_type` (a per-value check for slow paths)."""
    try:
        pa.array([value], type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False
    return True


def _extra_array(values: list[Any]) -> pa.Array:
    """A column for a field the contract does not know: as it comes, JSON text if nested."""
    if any(issubclass(kind, dict | list) for kind in set(map(type, values))):
        return pa.array([_json_text(v) for v in values], type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def sendsms_table(records: list[Record], policy: PersonalDataPolicy | None = None) -> pa.Table:
    """One row per record with every field; ids parsed out of resource URIs.

    Args:
        records: SendSMS objects as the API returns them.
        policy: the personal-data policy, applied to every column before the table is built.
    """
    columns: dict[str, pa.Array] = {}
    raw = _transpose(records, _SENDSMS_FIELDS)
    times = dict(
        zip(
            _SENDSMS_TIME_FIELDS,
            _time_arrays([raw[f] for f in _SENDSMS_TIME_FIELDS], empty_is_null=True),
            strict=True,
        )
    )
    for field_name, (column, arrow_type) in SENDSMS_COLUMNS.items():
        values = raw[field_name]
        if arrow_type == TIMESTAMP:
            parsed = times[field_name]
            if parsed is None:
                # the exact path, value by value: same result, and the error names the record
                values = _times(records, field_name)
            elif policy is None:
                columns[column] = parsed
                continue
            else:
                values = parsed.to_pylist()
        elif field_name in settings.JSON_FIELDS:
            values = [_json_text(v) for v in values]
        if policy is not None:
            values = policy(column, values)
        columns[column] = _array(values, arrow_type, field_name=field_name)
    columns["bulk_sms_id"], columns["supporter_id"] = _ids_from_uris(
        records, {"bulk_sms": raw["bulk_sms"], "supporter_id": raw["supporter_id"]}
    )
    if policy is not None:
        columns["supporter_id"] = pa.array(
            policy("supporter_id", columns["supporter_id"].to_pylist()), type=pa.int64()
        )
    columns["source_deleted_at"] = pa.nulls(len(records), type=TIMESTAMP)
    for field_name in _unknown_fields(records):
        values = [r.get(field_name) for r in records]
        if policy is not None:
            values = policy(field_name, values)
        columns[field_name] = _extra_array(values)
    return _table(columns, keys=("id",))


_SENDSMS_FIELDS = tuple(SENDSMS_COLUMNS)
_SENDSMS_TIME_FIELDS = tuple(f for f, (_, kind) in SENDSMS_COLUMNS.items() if kind == TIMESTAMP)
_GET_SENDSMS_FIELDS = operator.itemgetter(*_SENDSMS_FIELDS)


def _transpose(records: list[Record], fields: tuple[str, ...]) -> dict[str, list[Any]]:
    """`{field: [record.get(field) for record in records]}`, in C when every record has all.

    One `itemgetter` call per record and one `zip` replace a Python-level `dict.get` per
    value: the largest cost of turning a page into columns.
    """
    if len(fields) > 1 and records:
        getter = _GET_SENDSMS_FIELDS if fields is _SENDSMS_FIELDS else operator.itemgetter(*fields)
        try:
            rows = list(map(getter, records))
        except (KeyError, TypeError):
            pass  # a record lacks a field (or is no dict): the general path below
        else:
            columns = zip(*rows, strict=True)
            return {name: list(values) for name, values in zip(fields, columns, strict=True)}
    return {name: [r.get(name) for r in records] for name in fields}


def _time_array(values: list[Any], *, empty_is_null: bool) -> pa.Array | None:
    """Parse ISO 8601 strings to UTC timestamps a column at once, or None to go exact.

    Only forms that Arrow's parser reads as Python does are parsed here
    (`isotime.parse_iso_utc`, naive meaning UTC); a column holding anything else (another ISO
    form, a non-string, an impossible date) returns None and is parsed value by value with
    `parse_api_time`, which accepts every form Python does and raises the error that names
    the record.
    """
    try:
        strings = pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return parse_iso_utc(strings, empty_is_null=empty_is_null)


def _time_arrays(columns: list[list[Any]], *, empty_is_null: bool) -> list[pa.Array | None]:
    """`_time_array` of each column, parsed as one column when every value can be.

    One call for a page's five time columns instead of five, as each call has a fixed cost of
    several Arrow and numpy steps: 31 % less CPU in the timestamps of a 1M sync.
    """
    joined = _time_array(list(chain.from_iterable(columns)), empty_is_null=empty_is_null)
    if joined is None:
        return [_time_array(values, empty_is_null=empty_is_null) for values in columns]
    sizes = [len(values) for values in columns]
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    return [joined.slice(start, size) for start, size in zip(starts, sizes, strict=True)]


def _ids_from_uris(records: list[Record], uris: dict[str, list[Any]]) -> list[pa.Array]:
    """`id_from_uri` over columns (`{field name: values}`): one vectorised pass for all of
    them when every value is a string URI, else value by value (the error names the record).
    """
    n = len(records)
    try:
        strings = pa.array(list(chain.from_iterable(uris.values())), type=pa.string())
        if strings.null_count < len(strings):
            empty = pc.equal(strings, "")
            if pc.any(empty).as_py():
                strings = pc.if_else(empty, pa.scalar(None, pa.string()), strings)
        found = pc.extract_regex(strings, r"/(?P<id>\d+)/?$")
        if found.null_count == strings.null_count:
            ids: pa.Array = pc.struct_field(found, [0]).cast(pa.int64())
            return [ids.slice(i * n, n) for i in range(len(uris))]
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return ids_one_by_one(records, uris)


def ids_one_by_one(records: list[Record], uris: dict[str, list[Any]]) -> list[pa.Array]:
    """`id_from_uri` value by value over columns: the exact path, whose error names the record."""
    return [
        pa.array(
            [
                id_from_uri(uri, record_id=r.get("id"), field_name=field_name)
                for r, uri in zip(records, values, strict=True)
            ],
            type=pa.int64(),
        )
        for field_name, values in uris.items()
    ]


def _table(columns: dict[str, pa.Array], keys: tuple[str, ...]) -> pa.Table:
    """A table whose key columns are declared NOT NULL, as the destination's keys are."""
    fields = [pa.field(name, arr.type, nullable=name not in keys) for name, arr in columns.items()]
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


def _unknown_fields(records: Iterable[Record]) -> list[str]:
    records = list(records)
    if set(map(len, records)) <= {len(_KNOWN_FIELDS)} and all(
        map(_KNOWN_FIELDS.issuperset, records)
    ):
        return []  # the common case, decided in C; the loop below keeps first-seen order
    found: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in _KNOWN_FIELDS and key not in found:
                found[key] = None
    return list(found)


def events_table(records: list[Record], policy: PersonalDataPolicy | None = None) -> pa.Table:
    """One row per event that happened (a non-empty `*_event` object) of every record.

    Rows come in record order, then in the order of `settings.EVENT_FIELDS`.
    """
    fast = _events_by_type(records, policy)
    return fast if fast is not None else _events_row_by_row(records, policy)


#: Event keys with a column of their own; any other key becomes a column named after it.
_EVENT_OWN_KEYS = frozenset({"timestamp", "error_code", "error_message", "carrier"})
#: Event keys that the row-by-row path renames or re-parses: pages holding one take that path.
_EVENT_SPECIAL_KEYS = frozenset({"occurred_at", "sendsms_id", "event_type", "updated"})


_EVENT_RECORD_FIELDS = ("id", settings.CURSOR_FIELD, *settings.EVENT_FIELDS)


def _events_by_type(records: list[Record], policy: PersonalDataPolicy | None) -> pa.Table | None:
    """`events_table` a column at a time (one pass per event type instead of per row).

    Returns None when the page needs the row-by-row path: an unusual time form or a missing
    `updated` (that path raises the error naming the record) or an event key it renames.
    """
    raw = _transpose(records, _EVENT_RECORD_FIELDS)
    n_types = len(settings.EVENT_FIELDS)
    positions: list[int] = []
    events: list[dict[str, Any]] = []
    for type_index, field_name in enumerate(settings.EVENT_FIELDS):
        found = raw[field_name]
        hits = [i for i, event in enumerate(found) if event and isinstance(event, dict)]
        positions += [i * n_types + type_index for i in hits]
        events += [found[i] for i in hits]  # dicts, just checked
    keys: set[str] = set().union(*events)
    if keys & _EVENT_SPECIAL_KEYS:
        return None
    order = np.argsort(np.asarray(positions, dtype=np.int64), kind="stable")
    events = [events[j] for j in order]
    updated, occurred_at = _time_arrays(
        [raw[settings.CURSOR_FIELD], [e.get("timestamp") for e in events]], empty_is_null=False
    )
    if updated is None or updated.null_count or occurred_at is None:
        return None
    ordered = np.asarray(positions, dtype=np.int64)[order]
    record_index = ordered // n_types
    type_names = [f.removesuffix("_event") for f in settings.EVENT_FIELDS]
    ids = raw["id"]
    lists: dict[str, list[Any]] = {
        "sendsms_id": [ids[i] for i in record_index.tolist()],
        "event_type": [type_names[t] for t in (ordered % n_types).tolist()],
        "error_code": [
            None if v is None else str(v) for v in (e.get("error_code") for e in events)
        ],
        "error_message": [e.get("error_message") for e in events],
        "carrier": [e.get("carrier") for e in events],
    }
    times: dict[str, pa.Array] = {
        "occurred_at": occurred_at,
        "updated": updated.take(pa.array(record_index, type=pa.int64())),
    }
    columns: dict[str, pa.Array] = {}
    for column, arrow_type in EVENT_COLUMNS.items():
        parsed = times.get(column)
        if parsed is not None and policy is None:
            columns[column] = parsed
            continue
        values = parsed.to_pylist() if parsed is not None else lists[column]
        if policy is not None:
            values = policy(f"event.{column}", values)
        columns[column] = _array(values, arrow_type, field_name=f"event.{column}")
    for key in _first_seen(events, keys - _EVENT_OWN_KEYS):
        values = [e.get(key) for e in events]
        if policy is not None:
            values = policy(f"event.{key}", values)
        columns[key] = _extra_array(values)
    return _table(columns, keys=("sendsms_id", "event_type"))


def _first_seen(events: list[dict[str, Any]], keys: set[str]) -> list[str]:
    """`keys` in the order the row-by-row path meets them: by row, then within the event."""
    where: dict[str, tuple[int, int]] = {}
    for key in keys:
        row = next(j for j, event in enumerate(events) if key in event)
        where[key] = (row, list(events[row]).index(key))
    return sorted(keys, key=where.__getitem__)


def _events_row_by_row(records: list[Record], policy: PersonalDataPolicy | None) -> pa.Table:
    """`events_table` record by record: every ISO form, every event key, exact errors."""
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
        if policy is not None:
            values = policy(f"event.{column}", values)
        columns[column] = _array(values, arrow_type, field_name=f"event.{column}")
    extra_keys: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in EVENT_COLUMNS:
                extra_keys[key] = None
    for key in extra_keys:
        values = [row.get(key) for row in rows]
        if policy is not None:
            values = policy(f"event.{key}", values)
        columns[key] = _extra_array(values)
    return _table(columns, keys=("sendsms_id", "event_type"))


class TableBatch:
    """The tables of consecutive pages, handed on as one `sendsms` and one events table.

    dlt's extract costs per item as well as per row (it computes and validates the item's
    table schema, runs its incremental's Arrow kernels, buffers the writer), so pages are
    joined into items of about `rows` records. A table whose schema differs from the batch's
    (a page with a field the others lack) first ends the batch: every item holds exactly its
    pages' rows, in page order.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._sendsms: list[pa.Table] = []
        self._events: list[pa.Table] = []
        self._count = 0

    def add(
        self, sendsms: pa.Table | None, events: pa.Table | None
    ) -> list[tuple[pa.Table | None, pa.Table | None]]:
        """Add one page's tables; the batches that are now complete (zero, one or two)."""
        done = []
        if _other_schema(self._sendsms, sendsms) or _other_schema(self._events, events):
            done.append(self.flush())
        if sendsms is not None and sendsms.num_rows:
            self._sendsms.append(sendsms)
            self._count += sendsms.num_rows
        if events is not None and events.num_rows:
            self._events.append(events)
        if self._count >= self.rows:
            done.append(self.flush())
        return [tables for tables in done if tables[0] is not None or tables[1] is not None]

    def flush(self) -> tuple[pa.Table | None, pa.Table | None]:
        """What the batch holds (None for a table without rows); the batch is then empty."""
        sendsms = pa.concat_tables(self._sendsms) if self._sendsms else None
        events = pa.concat_tables(self._events) if self._events else None
        self._sendsms, self._events, self._count = [], [], 0
        return sendsms, events


def _other_schema(batch: list[pa.Table], table: pa.Table | None) -> bool:
    return bool(batch) and table is not None and bool(table.num_rows) and (
        table.schema != batch[0].schema
    )

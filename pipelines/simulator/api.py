"""The SendSMS endpoints as tastypie would answer them: parameters, filters, ordering, paging.

Pure request -> response functions over a `World`; the HTTP server adds authentication,
faults and the wire. Error bodies and messages follow tastypie's own wording.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson

from pipelines.simulator import timefmt
from pipelines.simulator.schema import BOOL_FIELDS, INT_FIELDS, TIME_FIELDS, Condition
from pipelines.simulator.spoil import PagePostprocessor
from pipelines.simulator.world import World

LIST_PATH = "/api/sendsms/"
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_MESSAGE_CHARS = 1600

# Every field of a SendSMS object (plus the documented `bulk_sms_id` filter name): a parameter
# that names none of these is ignored, as tastypie does.
FIELDS = frozenset(
    {
        "id", "resource_uri", "created", "updated", "timestamp", "send_time", "bulk_sms",
        "bulk_sms_id", "bulk_sms_description", "bulk_sms_send_time", "supporter_id",
        "supporter_name", "supporter_email", "supporter_title",
        "supporter_public_organization", "associated_number", "message_content",
        "message_uuid", "message_direction", "current_status", "queued_event", "sent_event",
        "delivered_event", "failed_event", "undelivered_event", "rejected_event",
        "effective_message_count", "opens", "converted", "archived", "rcpt_dict", "_extra",
    }
)
# Django's lookup names: a trailing one of these is a qualifier, anything else a relation.
QUERY_TERMS = frozenset(
    {
        "exact", "iexact", "contains", "icontains", "in", "gt", "gte", "lt", "lte",
        "startswith", "istartswith", "endswith", "iendswith", "range", "year", "month", "day",
        "week_day", "isnull", "search", "regex", "iregex",
    }
)
DOCUMENTED_QUALIFIERS = frozenset(
    {
        "exact", "in", "contains", "icontains", "startswith", "istartswith", "endswith",
        "iendswith", "iexact", "isnull", "gt", "gte", "lt", "lte",
    }
)
RANGE_QUALIFIERS = frozenset({"exact", "gt", "gte", "lt", "lte"})
RANGE_FIELDS = frozenset({"id", "created", "updated"})
FILTERING: dict[str, frozenset[str]] = {
    "archived": DOCUMENTED_QUALIFIERS,
    "associated_number": DOCUMENTED_QUALIFIERS,
    "bulk_sms": DOCUMENTED_QUALIFIERS,
    "bulk_sms_id": DOCUMENTED_QUALIFIERS,
    "converted": DOCUMENTED_QUALIFIERS,
    "current_status": DOCUMENTED_QUALIFIERS,
    "opens": DOCUMENTED_QUALIFIERS,
    "id": RANGE_QUALIFIERS | {"in"},
    "created": RANGE_QUALIFIERS,
    "updated": RANGE_QUALIFIERS,
}
ORDERING = frozenset({"id", "created", "updated", "timestamp", "send_time", "opens",
                      "current_status"})
STRING_QUALIFIERS = frozenset(
    {"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "iexact"}
)
SERVER_ERROR_MESSAGE = "Sorry, this request could not be processed. Please try again later."


class BadRequest(Exception):
    """A 400 with tastypie's `{"error": message}` body."""


@dataclass
class Capabilities:
    """What the API allows (switched by faults)."""

    range_filters: bool = True
    order_by: bool = True
    ignore_order_by: bool = False


@dataclass
class Response:
    """An HTTP response before it hits the wire."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0
    record_ids: list[int] = field(default_factory=list)
    page: bool = False  # a 200 list page (for the served-page counter)


def error(status: int, message: str) -> Response:
    """A JSON error response `{"error": message}`."""
    return Response(status, orjson.dumps({"error": message}))


def _last(params: Sequence[tuple[str, str]], key: str) -> str | None:
    value = None
    for k, v in params:
        if k == key:
            value = v
    return value


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(
            f"Invalid limit '{raw}' provided. Please provide a positive integer."
        ) from None
    if limit < 0:
        raise BadRequest(f"Invalid limit '{raw}' provided. Please provide a positive integer >= 0.")
    return MAX_LIMIT if limit == 0 or limit > MAX_LIMIT else limit


def _parse_offset(raw: str | None) -> int:
    if raw is None:
        return 0
    try:
        offset = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid offset '{raw}' provided. Please provide an integer.") from None
    if offset < 0:
        raise BadRequest(
            f"Invalid offset '{raw}' provided. Please provide a positive integer >= 0."
        )
    return offset


def _to_bool(raw: str) -> bool:
    if raw in ("true", "True", "1"):
        return True
    if raw in ("false", "False", "0"):
        return False
    raise ValueError(raw)


def _to_int(raw: str) -> int:
    text = raw.strip()
    if text.startswith("/api/") and text.rstrip("/").rsplit("/", 1)[-1].isdigit():
        text = text.rstrip("/").rsplit("/", 1)[-1]
    return int(text)


def _converter(name: str) -> Callable[[str], Any]:
    if name in INT_FIELDS or name in ("bulk_sms", "bulk_sms_id"):
        return _to_int
    if name in TIME_FIELDS:
        return timefmt.parse
    if name in BOOL_FIELDS:
        return _to_bool
    return str


def parse_filters(params: Sequence[tuple[str, str]], caps: Capabilities) -> list[Condition]:
    """Turn query parameters into conditions, tastypie's way (unknown names are ignored)."""
    values: dict[str, list[str]] = {}
    for key, raw_value in params:
        values.setdefault(key, []).append(raw_value)
    conditions: list[Condition] = []
    for key, raws in values.items():
        bits = key.split("__")
        name = bits.pop(0)
        if name not in FIELDS:
            continue
        op = "exact"
        if bits and bits[-1] in QUERY_TERMS:
            op = bits.pop()
        if bits:
            raise BadRequest(
                f"Lookups are not allowed more than one level deep on the '{name}' field."
            )
        allowed = FILTERING.get(name)
        if allowed is None or (name in RANGE_FIELDS and not caps.range_filters):
            raise BadRequest(f"The '{name}' field does not allow filtering.")
        if op not in allowed:
            raise BadRequest(f"'{op}' is not an allowed filter on the '{name}' field.")
        raw = raws[-1]
        convert = _converter(name)
        try:
            value: Any
            if op == "isnull":
                value = _to_bool(raw)
            elif op == "in":
                value = [convert(part) for part in ",".join(raws).split(",") if part != ""]
            elif op in STRING_QUALIFIERS:
                value = raw
            elif raw in ("none", "None", "nil") and op == "exact":
                value = None
            else:
                value = convert(raw)
        except (ValueError, OverflowError):
            raise BadRequest(f"Invalid value '{raw}' for the filter '{key}'.") from None
        conditions.append(Condition(name, op, value))
    return conditions


def parse_order(params: Sequence[tuple[str, str]], caps: Capabilities) -> list[tuple[str, bool]]:
    """The `order_by` keys as (field, descending), tastypie's way (a comma list is one name)."""
    order: list[tuple[str, bool]] = []
    for key, value in params:
        if key != "order_by":
            continue
        desc = value.startswith("-")
        name = value[1:] if desc else value
        bits = name.split("__")
        if bits[0] not in FIELDS:
            raise BadRequest(f"No matching '{name}' field for ordering on.")
        if not caps.order_by or bits[0] not in ORDERING or len(bits) > 1:
            raise BadRequest(f"The '{name}' field does not allow ordering.")
        order.append((bits[0], desc))
    return [] if caps.ignore_order_by else order


def page_uri(params: Sequence[tuple[str, str]], limit: int, offset: int) -> str:
    """A relative URL to another page: every request parameter, with this limit and offset."""
    rest = [(k, v) for k, v in params if k not in ("limit", "offset")]
    return f"{LIST_PATH}?{urlencode([('limit', limit), ('offset', offset), *rest])}"


def list_sendsms(
    world: World,
    params: Sequence[tuple[str, str]],
    caps: Capabilities,
    postprocess: PagePostprocessor | None = None,
) -> Response:
    """`GET /api/sendsms/`; `postprocess` applies record faults to the page's objects."""
    try:
        limit = _parse_limit(_last(params, "limit"))
        offset = _parse_offset(_last(params, "offset"))
        conditions = parse_filters(params, caps)
        order = parse_order(params, caps)
    except BadRequest as exc:
        return error(400, str(exc))
    with world.lock:
        total, rows = world.query(conditions, order, offset, limit)
        objects = world.render_json(rows)
        ids = world.ids(rows)
    if postprocess is not None:
        objects = postprocess(ids, objects, True)
    meta = {
        "limit": limit,
        "next": page_uri(params, limit, offset + limit) if offset + limit < total else None,
        "offset": offset,
        "previous": page_uri(params, limit, offset - limit) if offset - limit >= 0 else None,
        "total_count": total,
    }
    body = b"".join(
        (b'{"meta":', orjson.dumps(meta), b',"objects":[', ",".join(objects).encode(), b"]}")
    )
    return Response(200, body, records=len(objects), record_ids=ids, page=True)


def detail_sendsms(
    world: World, record_id: str, postprocess: PagePostprocessor | None = None
) -> Response:
    """`GET /api/sendsms/{id}/`: the record, or 404 with an empty body (tastypie's
    `HttpNotFound`) when there is no such record or it was deleted."""
    if not record_id.isdigit():
        return Response(404, content_type="text/html; charset=utf-8")
    with world.lock:
        row = world.get_row(int(record_id))
        if row is None:
            return Response(404, content_type="text/html; charset=utf-8")
        (text,) = world.render_json(np.asarray([row], dtype=np.int64))
    if postprocess is not None:
        (text,) = postprocess([int(record_id)], [text], False)
    return Response(200, text.encode(), records=1, record_ids=[int(record_id)])


def send_individual_sms(world: World, body: bytes) -> Response:
    """`POST /api/sendsms/send_individual_sms/`: validate, queue the text, answer 201."""
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return error(400, "The request body is not valid JSON.")
    if not isinstance(payload, dict):
        return error(400, "The request body must be a JSON object with supporter_id and message.")
    if "supporter_id" not in payload or payload["supporter_id"] in (None, ""):
        return error(400, "Missing required field: supporter_id.")
    supporter = payload["supporter_id"]
    if isinstance(supporter, str) and supporter.strip().isdigit():
        supporter = int(supporter.strip())
    if not isinstance(supporter, int) or isinstance(supporter, bool):
        return error(400, "supporter_id must be an integer.")
    if "message" not in payload or payload["message"] is None:
        return error(400, "Missing required field: message.")
    message = payload["message"]
    if not isinstance(message, str):
        return error(400, "message must be a string.")
    if not message.strip():
        return error(400, "message must not be empty.")
    if len(message) > MAX_MESSAGE_CHARS:
        return error(400, f"message is longer than {MAX_MESSAGE_CHARS} characters.")
    try:
        answer = world.send_individual_sms(supporter, message)
    except KeyError:
        return error(400, f"Supporter {supporter} does not exist.")
    return Response(201, orjson.dumps(answer), records=0, record_ids=[answer["id"]])

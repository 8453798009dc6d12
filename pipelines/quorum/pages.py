"""A list response's bytes turned into what the pager needs to move on, and the page itself.

The pager only needs each record's (`updated`, `id`) key to move its keyset and check the
order, plus a way to drop the records it has already handed on. The page itself is opaque to
it: a list of records when the body is decoded in this process (`decode_records`), or tables
already normalized by a worker process (`pipelines.quorum.workers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pipelines.errors import BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.client import decode_json
from pipelines.quorum.timestamps import parse_api_time

P = TypeVar("P")
#: A record's (`updated`, `id`): its place in keyset order.
Key = tuple[datetime, int]


class NotAListError(Exception):
    """The body is JSON but not a tastypie list (`meta` and `objects`)."""


@dataclass
class Fetched(Generic[P]):
    """One list response as the pager sees it.

    Attributes:
        page: every record of the response, in the decoder's form.
        more: whether the API says more pages follow.
        keys: per record, its (`updated`, `id`), or None when either cannot be read.
        ids: per record, its integer `id`, or None.
        without: the page without the records at the given positions.
    """

    page: P
    more: bool
    keys: list[Key | None]
    ids: list[int | None]
    without: Callable[[set[int]], P]


#: Turns a list response's bytes into a `Fetched` (raises NotJsonError to have it retried).
PageDecoder = Callable[[bytes], Fetched[P]]


def record_key(record: Any) -> Key | None:
    """A record's (`updated`, `id`), or None when either cannot be read.

    Such a record plays no part in ordering or in moving the keyset; it is still handed on,
    and the source sets it aside as a reject (`pipelines.quorum.rejects`).
    """
    if not isinstance(record, dict) or type(record.get("id")) is not int:
        return None
    try:
        updated = parse_api_time(
            record.get(settings.CURSOR_FIELD), record_id=record["id"], field_name="updated"
        )
    except BadRecordError:
        return None
    return updated, record["id"]


def record_id(record: Any) -> int | None:
    """A record's integer `id`, or None (a reject that cannot take part in id ordering)."""
    if isinstance(record, dict) and type(record.get("id")) is int:
        return int(record["id"])
    return None


def list_objects(body: Any) -> tuple[list[Any], bool]:
    """A decoded list body's objects and whether more pages follow.

    Raises:
        NotAListError: no `meta` object or no `objects` list.
    """
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("objects"), list)
        or not isinstance(body.get("meta"), dict)
    ):
        raise NotAListError
    objects: list[Any] = body["objects"]
    return objects, body["meta"].get("next") is not None and len(objects) > 0


def decode_records(content: bytes) -> Fetched[list[Any]]:
    """Decode a list body in this process: the page is its list of records."""
    objects, more = list_objects(decode_json(content))

    def without(positions: set[int]) -> list[Any]:
        return [record for i, record in enumerate(objects) if i not in positions]

    return Fetched(
        page=objects,
        more=more,
        keys=[record_key(record) for record in objects],
        ids=[record_id(record) for record in objects],
        without=without,
    )

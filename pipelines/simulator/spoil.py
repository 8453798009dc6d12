"""Record-level faults: a served record made malformed, or served twice at two versions.

These work on the JSON text of one rendered record, after the world rendered it well formed,
so the world (and its ground truth) never changes: switching the fault off serves the same
records well formed again.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from pipelines.simulator import timefmt
from pipelines.simulator.schema import DELIVERED

MALFORMED_KINDS: dict[str, str] = {
    "updated": '`updated` is "not-a-date"',
    "event_timestamp": '`sent_event.timestamp` is "yesterday" (the event is added if empty)',
    "wrong_type": '`opens` is the string "many"',
    "missing_id": "no `id` key (`resource_uri` still names the record)",
    "bad_uri": "`supporter_id` (and `bulk_sms`, when set) is a URI without an id",
    "lone_surrogate": "`message_content` starts with the JSON escape \\ud800 (a lone surrogate)",
}
"""Each way a record can be malformed, and what the client receives."""

OLDER_BY_US = 3600 * timefmt.US_PER_S
"""How much older the stale copy of a duplicated record is."""

_CONTENT_KEY = '"message_content":"'


def malform(text: str, kind: str) -> str:
    """The JSON text of a record, malformed in the way `kind` names.

    Raises:
        ValueError: for a kind not in `MALFORMED_KINDS`.
    """
    if kind == "lone_surrogate":
        # Built as text: no JSON encoder writes a lone surrogate, and it must reach the wire
        # as the six characters \ud800 (valid per RFC 8259, refused by strict parsers).
        return text.replace(_CONTENT_KEY, _CONTENT_KEY + "\\ud800", 1)
    record = orjson.loads(text)
    if kind == "updated":
        record["updated"] = "not-a-date"
    elif kind == "event_timestamp":
        event = record.get("sent_event") or {}
        event["timestamp"] = "yesterday"
        record["sent_event"] = event
    elif kind == "wrong_type":
        record["opens"] = "many"
    elif kind == "missing_id":
        del record["id"]
    elif kind == "bad_uri":
        record["supporter_id"] = "/api/newsupporter/unknown/"
        if record.get("bulk_sms"):
            record["bulk_sms"] = "/api/bulksms/unknown/"
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return orjson.dumps(record).decode()


def older_version(text: str) -> str:
    """A stale copy of a record: `updated` an hour earlier, delivered, no failure events.

    This is what a client sees when a page mixes a record's version from before its last
    change with the current one (say delivered, then failed an hour later).
    """
    record = orjson.loads(text)
    updated = timefmt.parse(record["updated"]) - OLDER_BY_US
    stamp = timefmt.iso_z(updated)
    carrier = (record.get("sent_event") or {}).get("carrier")
    record["updated"] = stamp
    record["current_status"] = DELIVERED
    record["delivered_event"] = {"timestamp": stamp, **({"carrier": carrier} if carrier else {})}
    for name in ("failed_event", "undelivered_event", "rejected_event"):
        record[name] = {}
    return orjson.dumps(record).decode()


PagePostprocessor = Callable[[list[int], list[str], bool], list[str]]
"""(ids, JSON texts of the records, is a list page) -> the JSON texts to serve."""


def postprocessor(
    kind_of: Callable[[int], str | None],
    duplicated: frozenset[int],
    count: Callable[[str], None],
) -> PagePostprocessor:
    """A page post-processor applying the record faults.

    Args:
        kind_of: the malformed kind of an id, or None.
        duplicated: ids served twice on list pages.
        count: called with the fault's name for every record it changes.
    """

    def apply(ids: list[int], texts: list[str], listing: bool) -> list[str]:
        out: list[str] = []
        for record_id, text in zip(ids, texts, strict=True):
            kind = kind_of(record_id)
            if listing and record_id in duplicated:
                stale = older_version(text)
                out.append(malform(stale, kind) if kind else stale)
                count("duplicate")
            if kind:
                text = malform(text, kind)
                count("malformed")
            out.append(text)
        return out

    return apply

"""Records the API serves malformed: find them, set them aside, describe them, retry them.

One bad record must not stop the night. A page is normalized as a whole (the fast columnar
path); only when that fails, or the page has a record without a usable `id` or `updated`, is
it split record by record: the records that cannot be loaded become reject rows of
`quorum_raw.sendsms_rejects`, the rest load as usual.

`quorum_raw.sendsms_rejects`, one row per rejected record (primary key `reject_key`):

| column | meaning |
|---|---|
| reject_key | `id:<id>`, or `sha256:<hash of the stored JSON>` for a record without a usable id |
| id | the record's id, NULL when it has none (it then cannot be retried by id) |
| status | `open` (retried every run) or `gone` (the API answered 404 on the retry) |
| reason | one line naming the field that could not be loaded |
| record | the record as served, as JSON, with the personal-data policy applied first |
| updated | the rejected version's `updated` when it parses, else NULL (dlt's cursor column) |
| first_seen_at, last_seen_at | UTC wall-clock time of the first and the latest sighting |
| run_id | the run that saw it last (the caller's run id, else dlt's load id) |
| resolved_at | always NULL in the table: a row carrying it deletes its reject (hard delete) |

Nothing secret goes there: the reason quotes only values of non-personal fields, the record
JSON passes through the personal-data policy, and both pass through `redact`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import pyarrow as pa

from pipelines.errors import BadRecordError
from pipelines.quorum import settings
from pipelines.quorum.normalize import (
    SENDSMS_COLUMNS,
    TIMESTAMP,
    PersonalDataPolicy,
    events_table,
    fits,
    sendsms_table,
)
from pipelines.quorum.timestamps import parse_api_time
from pipelines.redaction import redact

REJECTS_TABLE: Final = "sendsms_rejects"
STATUS_OPEN: Final = "open"
STATUS_GONE: Final = "gone"
#: How many (id, reason) pairs a run keeps for its summary, mail and webhook.
SAMPLE_SIZE: Final = 5
DEFAULT_MAX_REJECT_FRACTION: Final = 0.01
#: What the caller reads from the warehouse before a run and passes as `known_rejects`.
KNOWN_REJECTS_QUERY: Final = (
    f"select reject_key, id, first_seen_at, status, record, reason "
    f"from {settings.RAW_DATASET}.{REJECTS_TABLE}"
)

REJECT_COLUMNS: dict[str, pa.DataType] = {
    "reject_key": pa.string(),
    "id": pa.int64(),
    "status": pa.string(),
    "reason": pa.string(),
    "record": pa.string(),
    settings.CURSOR_FIELD: TIMESTAMP,
    "first_seen_at": TIMESTAMP,
    "last_seen_at": TIMESTAMP,
    "run_id": pa.string(),
    "resolved_at": TIMESTAMP,
}

#: Errors that normalizing a record can raise when its values are not what the contract says.
NORMALIZE_ERRORS: tuple[type[BaseException], ...] = (
    BadRecordError,
    ValueError,  # pa.ArrowInvalid is one
    TypeError,  # pa.ArrowTypeError and orjson.JSONEncodeError are
    OverflowError,
    pa.ArrowException,
)

_TYPE_WORDS = {pa.int64(): "an integer", pa.bool_(): "true or false", pa.string(): "text"}
_URI_ID = re.compile(r"/(\d+)/?$")
_URI_FIELDS = ("bulk_sms", "supporter_id")
#: Fields whose values are never personal data, so a reason may quote them.
_QUOTABLE = frozenset(
    {"id", "resource_uri", "bulk_sms", "supporter_id", "message_uuid", "message_direction",
     "current_status", "effective_message_count", "opens", "converted", "archived",
     *settings.TIMESTAMP_FIELDS}
)
_EVENT_TEXT_KEYS = ("error_message", "carrier")


@dataclass(frozen=True)
class KnownReject:
    """A reject the warehouse already holds (a row of `KNOWN_REJECTS_QUERY`)."""

    reject_key: str
    id: int | None
    first_seen_at: datetime
    status: str = STATUS_OPEN
    record: str | None = None
    reason: str | None = None


@dataclass
class RejectStats:
    """What the run set aside, for the summary, run history, status, mail and webhook."""

    #: distinct records rejected this run (open rejects written)
    rejected: int = 0
    #: of those, how many no earlier run had rejected
    new: int = 0
    #: earlier rejects that parsed this time: loaded, and removed from the rejects
    resolved: int = 0
    #: earlier rejects the API no longer has (404 on the retry)
    gone: int = 0
    #: the first few (id, reason) of this run's rejects
    samples: list[tuple[int | None, str]] = field(default_factory=list)


def utc_now() -> datetime:
    """Now, in UTC (the time a reject was seen)."""
    return datetime.now(UTC)


# -- classification ---------------------------------------------------------------------------


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "text",
        dict: "an object", list: "a list",
    }.get(type(value), type(value).__name__)


def _shown(field_name: str, value: Any) -> str:
    """How a reason shows a value: quoted when the field is never personal, else its kind."""
    if field_name.split(".")[-1] in _QUOTABLE or field_name.endswith(".timestamp"):
        return f"{redact(repr(value))[:60]}"
    return _kind(value)


def _time_problem(field_name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        parse_api_time(value, field_name=field_name)
    except BadRecordError:
        return f"`{field_name}` is not an ISO 8601 date-time ({_shown(field_name, value)})"
    return None


def find_problem(record: Any) -> str | None:
    """Why `record` cannot be loaded, in one line naming the field; None when it can.

    The rules are normalize's (`sendsms_table`, `events_table`), checked one record at a time
    so that the reason names the record's own bad field.
    """
    if not isinstance(record, dict):
        return f"the record is {_kind(record)}, not a JSON object (it cannot be retried by id)"
    record_id = record.get("id")
    retry = (
        "retried by its resource_uri's id" if record_id_of(record) is not None
        else "it cannot be retried by id"
    )
    if record_id is None:
        return f"`id` is missing ({retry})"
    if type(record_id) is not int or not fits(record_id, pa.int64()):
        return f"`id` is not an integer ({_shown('id', record_id)}; {retry})"
    updated = record.get(settings.CURSOR_FIELD)
    if updated is None or updated == "":
        return "`updated` is missing"
    for field_name in settings.TIMESTAMP_FIELDS:
        problem = _time_problem(field_name, record.get(field_name))
        if problem:
            return problem
    for field_name in _URI_FIELDS:
        value = record.get(field_name)
        if value in (None, "") or isinstance(value, int):
            continue
        if not isinstance(value, str) or _URI_ID.search(value) is None:
            shown = _shown(field_name, value)
            return f"`{field_name}` is not a resource URI ending in an id ({shown})"
    for field_name, (_, arrow_type) in SENDSMS_COLUMNS.items():
        value = record.get(field_name)
        if value is None or arrow_type == TIMESTAMP or field_name in _URI_FIELDS:
            continue
        if field_name in settings.JSON_FIELDS:
            try:
                orjson.dumps(value)
            except TypeError:
                return f"`{field_name}` cannot be written as JSON (a number beyond 64 bits)"
        elif not fits(value, arrow_type):
            expected = _TYPE_WORDS.get(arrow_type, str(arrow_type))
            return f"`{field_name}` is {_shown(field_name, value)}, expected {expected}"
    for field_name in settings.EVENT_FIELDS:
        event = record.get(field_name)
        if not isinstance(event, dict):
            continue  # normalize ignores anything but an object here
        problem = _time_problem(f"{field_name}.timestamp", event.get("timestamp"))
        if problem:
            return problem
        for key in _EVENT_TEXT_KEYS:
            value = event.get(key)
            if value is not None and not isinstance(value, str):
                return f"`{field_name}.{key}` is {_kind(value)}, expected text"
    return None


def _reason_from_error(error: BaseException) -> str:
    """A one-line reason from a normalize error the rules above did not foresee."""
    named = re.search(r"`([^`]+)`", str(error))
    where = f"`{named.group(1)}`" if named else "a field"
    return f"{where} could not be normalized ({type(error).__name__})"


def _is_clean(page: list[Any]) -> bool:
    """Every record is an object with an integer `id` and an `updated`: the fast path may go."""
    cursor = settings.CURSOR_FIELD
    return all(
        type(r) is dict and type(r.get("id")) is int and r.get(cursor) not in (None, "")
        for r in page
    )


@dataclass
class SplitPage:
    """A page normalized: the tables of its good records and its bad records with reasons."""

    sendsms: pa.Table | None
    events: pa.Table | None
    bad: list[tuple[Any, str]]


def _normalize(
    records: list[Any], transform: PersonalDataPolicy | None
) -> tuple[pa.Table, pa.Table]:
    return sendsms_table(records, transform), events_table(records, transform)


def split_page(page: list[Any], transform: PersonalDataPolicy | None = None) -> SplitPage:
    """Normalize a page, setting aside the records that cannot be loaded.

    Fast when every record is good (one columnar pass); otherwise the records are classified
    one by one (`find_problem`) and the rest normalized, and should that still fail, record
    by record, so one unforeseen bad value costs only its own record.
    """
    if _is_clean(page):
        try:
            return SplitPage(*_normalize(page, transform), bad=[])
        except NORMALIZE_ERRORS:
            pass
    good: list[Any] = []
    bad: list[tuple[Any, str]] = []
    for record in page:
        problem = find_problem(record)
        if problem is None:
            good.append(record)
        else:
            bad.append((record, problem))
    if not good:
        return SplitPage(None, None, bad)
    try:
        return SplitPage(*_normalize(good, transform), bad=bad)
    except NORMALIZE_ERRORS:
        pass
    survivors: list[Any] = []
    for record in good:
        try:
            _normalize([record], transform)
        except NORMALIZE_ERRORS as error:
            bad.append((record, _reason_from_error(error)))
        else:
            survivors.append(record)
    if not survivors:
        return SplitPage(None, None, bad)
    return SplitPage(*_normalize(survivors, transform), bad=bad)


# -- reject rows ------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits, say: the slower encoder takes it
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


_WITHHELD: Final = "[withheld: the personal-data policy could not be applied]"


def _policy_value(transform: PersonalDataPolicy, column: str, value: Any) -> Any:
    try:
        return transform(column, [value])[0]
    except Exception:  # a value the policy cannot read is withheld, never kept as it came
        return _WITHHELD


def apply_policy(record: Any, transform: PersonalDataPolicy | None) -> Any:
    """The record with the personal-data policy applied to every field, as normalize does.

    Fields go through the transform under the names of the columns they would load into
    (`supporter_id` as `supporter_uri`, event keys as `event.<column>`); a value the policy
    cannot read is withheld rather than kept.
    """
    if transform is None:
        return record
    if not isinstance(record, dict):
        return _policy_value(transform, "record", record)
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in settings.EVENT_FIELDS and isinstance(value, dict):
            out[key] = {
                k: _policy_value(
                    transform, f"event.{'occurred_at' if k == 'timestamp' else k}", v
                )
                for k, v in value.items()
            }
        elif key in settings.JSON_FIELDS and value is not None:
            try:
                text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
            except TypeError:
                out[key] = _WITHHELD
                continue
            cleaned = _policy_value(transform, key, text)
            out[key] = value if cleaned == text else cleaned
        else:
            column = SENDSMS_COLUMNS[key][0] if key in SENDSMS_COLUMNS else key
            out[key] = _policy_value(transform, column, value)
    return out


_DETAIL_URI = re.compile(r"/api/sendsms/(\d+)/?$")


def record_id_of(record: Any) -> int | None:
    """The record's id: its integer `id`, else the one its `resource_uri` names, else None.

    A record served without a usable `id` but with its detail URI can still be retried by id.
    """
    if not isinstance(record, dict):
        return None
    value = record.get("id")
    if type(value) is int:
        return value
    match = _DETAIL_URI.search(str(record.get("resource_uri") or ""))
    return int(match.group(1)) if match else None


def reject_key(record: Any, stored_json: str) -> str:
    """`id:<id>` for a record whose id is known (`record_id_of`), else a hash of its JSON."""
    record_id = record_id_of(record)
    if record_id is not None:
        return f"id:{record_id}"
    return "sha256:" + hashlib.sha256(stored_json.encode()).hexdigest()


def _served_updated(record: Any) -> datetime | None:
    if not isinstance(record, dict):
        return None
    try:
        return parse_api_time(record.get(settings.CURSOR_FIELD))
    except BadRecordError:
        return None


def rejects_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Reject rows as an Arrow table with every column typed (`reject_key` NOT NULL)."""
    rows = list(rows)
    fields = [
        pa.field(name, arrow_type, nullable=name != "reject_key")
        for name, arrow_type in REJECT_COLUMNS.items()
    ]
    arrays = [
        pa.array([row.get(name) for row in rows], type=arrow_type)
        for name, arrow_type in REJECT_COLUMNS.items()
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class RejectLog:
    """The rejects of one run: rows to write and the statistics the caller reports.

    Shared by the source's two resources (the incremental read and the retry of known
    rejects); a record gets one row per run, the first sighting's.

    Args:
        known: the rejects the warehouse holds (their `first_seen_at` survives).
        transform: the personal-data policy, applied to the stored record.
        run_id: the run's id, stored with every row it writes.
        stats: where the counts go (the source observer's).
    """

    def __init__(
        self,
        known: Iterable[KnownReject],
        *,
        transform: PersonalDataPolicy | None,
        run_id: str | None,
        stats: RejectStats,
    ) -> None:
        self.known = {k.reject_key: k for k in known}
        self.transform = transform
        self.run_id = run_id
        self.stats = stats
        self._rows: dict[str, dict[str, Any]] = {}
        #: the first few (id, reason) of rejects no earlier run had seen (for the error)
        self.new_samples: list[tuple[int | None, str]] = []

    def retry_ids(self) -> list[int]:
        """Ids of the open rejects to fetch again, in id order."""
        return sorted(
            k.id for k in self.known.values() if k.id is not None and k.status == STATUS_OPEN
        )

    def is_retried(self, record: Any) -> bool:
        """Whether the retry of known rejects owns this record (it has the final word)."""
        record_id = record_id_of(record)
        if record_id is None:
            return False
        known = self.known.get(f"id:{record_id}")
        return known is not None and known.status == STATUS_OPEN

    def reject(self, record: Any, reason: str) -> str:
        """Set a record aside; return its key."""
        stored = redact(_dumps(apply_policy(record, self.transform)))
        key = reject_key(record, stored)
        if key in self._rows:
            return key
        now = utc_now()
        known = self.known.get(key)
        record_id = record_id_of(record)
        reason = redact(reason)
        self._rows[key] = {
            "reject_key": key,
            "id": record_id,
            "status": STATUS_OPEN,
            "reason": reason,
            "record": stored,
            settings.CURSOR_FIELD: _served_updated(record),
            "first_seen_at": known.first_seen_at if known is not None else now,
            "last_seen_at": now,
            "run_id": self.run_id,
        }
        self.stats.rejected += 1
        if known is None:
            self.stats.new += 1
            if len(self.new_samples) < SAMPLE_SIZE:
                self.new_samples.append((record_id, reason))
        if len(self.stats.samples) < SAMPLE_SIZE:
            self.stats.samples.append((record_id, reason))
        return key

    def resolve(self, record_id: int) -> None:
        """A known reject parsed: its row is deleted by the load (`resolved_at` is set)."""
        key = f"id:{record_id}"
        self._rows[key] = {"reject_key": key, "id": record_id, "resolved_at": utc_now()}
        self.stats.resolved += 1

    def gone(self, record_id: int) -> None:
        """The API no longer has a known reject: keep it, marked `gone`."""
        key = f"id:{record_id}"
        known = self.known.get(key)
        now = utc_now()
        self._rows[key] = {
            "reject_key": key,
            "id": record_id,
            "status": STATUS_GONE,
            "reason": f"gone: the API answered 404 on the retry; before: "
            f"{known.reason if known and known.reason else 'no reason kept'}",
            "record": known.record if known is not None else None,
            "first_seen_at": known.first_seen_at if known is not None else now,
            "last_seen_at": now,
            "run_id": self.run_id,
        }
        self.stats.gone += 1

    def table(self, keys: Iterable[str]) -> pa.Table | None:
        """The rows of `keys` as a table, or None when there are none."""
        rows = [self._rows[key] for key in keys if key in self._rows]
        return rejects_table(rows) if rows else None


def too_many_rejects_error(
    new: int, records: int, max_fraction: float, samples: list[tuple[int | None, str]]
) -> BadRecordError:
    """The error of a run whose share of new rejects says the API's format changed."""
    first = "; ".join(
        f"record {record_id if record_id is not None else '(no id)'}: {reason}"
        for record_id, reason in samples[:3]
    )
    return BadRecordError(
        f"{new:,} of the {records:,} records read ({new / max(records, 1):.1%}) could not be "
        f"loaded, more than max_reject_fraction ({max_fraction:.1%}) allows: that is a change "
        f"of the API's format, not a few bad records. First: {first}. Nothing from this run "
        "was loaded and the saved cursor is unchanged. Report it to Quorum support; to load "
        "the good records anyway, raise [sources.quorum] max_reject_fraction in "
        ".dlt/config.toml (or SOURCES__QUORUM__MAX_REJECT_FRACTION) for one run."
    )

"""Dates and times as the API and the settings write them, parsed into aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pendulum

from pipelines.errors import BadRecordError, ConfigError


def parse_api_time(value: Any, *, record_id: Any = None, field_name: str = "?") -> datetime:
    """Parse one of the API's ISO 8601 forms into an aware UTC datetime.

    Naive values are UTC (the contract); `Z` and numeric offsets are converted.

    Raises:
        BadRecordError: the value is not an ISO 8601 date-time.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        if parsed is not None:
            try:
                return parsed.astimezone(UTC)
            except OverflowError:
                pass  # an offset that moves it past year 1 or 9999: not an instant Python holds
    raise BadRecordError(
        f"SendSMS record {record_id} has a `{field_name}` that is not an ISO 8601 date-time "
        f"({str(value)[:40]!r}). Nothing from this run was loaded and the saved cursor is "
        "unchanged. This is a data problem at the source: report the record id to Quorum "
        "support; the sync will load the record once it is fixed."
    )


def format_api_time(value: datetime) -> str:
    """Format a datetime for a filter: UTC, explicit offset, microseconds when non-zero."""
    return value.astimezone(UTC).isoformat()


def parse_since(value: str) -> str:
    """Validate a `--since` (or `initial_value`) date or date-time; return ISO in UTC.

    Raises:
        ConfigError: the value is not a date.
    """
    try:
        parsed = pendulum.parse(value)
    except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if not isinstance(parsed, datetime):
        if isinstance(parsed, pendulum.Date):
            parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
        else:
            raise ConfigError(
                f"{value!r} is not a date. Give --since (or [sources.quorum] initial_value) as "
                "an ISO date such as 2024-01-31 or a date-time such as 2024-01-31T12:00:00Z."
            )
    return pendulum.instance(parsed).in_timezone("UTC").isoformat()

"""Timestamps of the simulated world: int64 microseconds since the Unix epoch, always UTC.

Rendering is the hot spot of serving a page, so it is vectorised: numpy formats a whole column
of a page at once, and each value gets one of the ISO 8601 forms the contract allows (naive,
`Z`, an offset such as `-05:00`; with or without microseconds), picked by a form code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

US_PER_S = 1_000_000
US_PER_H = 3600 * US_PER_S
US_PER_DAY = 24 * US_PER_H
NEVER = np.iinfo(np.int64).max
"""A planned time that never comes."""
NO_TIME = np.iinfo(np.int64).min
"""A time that is not set (used as the neutral element of max)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (offset in minutes, suffix, with microseconds). Codes 0-3 are for values with microseconds,
# codes 4-7 for values that are whole seconds (the world rounds those records' times).
FORMS: tuple[tuple[int, str, bool], ...] = (
    (0, "", True),
    (0, "Z", True),
    (0, "+00:00", True),
    (-240, "-04:00", True),
    (0, "", False),
    (0, "Z", False),
    (-300, "-05:00", False),
    (60, "+01:00", False),
)
FORMS_PER_GROUP = 4
_OFFSET_US = np.array([m * 60 * US_PER_S for m, _, _ in FORMS], dtype=np.int64)
_SUFFIX = [s for _, s, _ in FORMS]
_MICRO = [m for _, _, m in FORMS]


def to_us(moment: datetime) -> int:
    """Convert an aware (or naive, meaning UTC) datetime to microseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_S + delta.microseconds


def from_us(value: int) -> datetime:
    """Convert microseconds since the epoch to an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(value))


def iso_z(value: int) -> str:
    """Render microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`."""
    moment = from_us(value)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def render(values: npt.NDArray[np.int64], forms: npt.NDArray[np.integer]) -> list[str | None]:
    """Render a column of times, each in its form; NEVER and NO_TIME become None."""
    if len(values) == 0:
        return []
    missing = (values == NEVER) | (values == NO_TIME)
    shifted = np.where(missing, 0, values) + _OFFSET_US[forms]
    texts = np.datetime_as_string(shifted.astype("datetime64[us]"), unit="us").tolist()
    out: list[str | None] = []
    append = out.append
    for text, form, gone in zip(texts, forms.tolist(), missing.tolist(), strict=True):
        if gone:
            append(None)
        elif _MICRO[form]:
            append(text + _SUFFIX[form])
        else:
            append(text[:19] + _SUFFIX[form])
    return out


def render_json(values: npt.NDArray[np.int64], forms: npt.NDArray[np.integer]) -> list[str]:
    """Like `render`, as JSON tokens: a quoted string, or `null`."""
    if len(values) == 0:
        return []
    missing = (values == NEVER) | (values == NO_TIME)
    shifted = np.where(missing, 0, values) + _OFFSET_US[forms]
    texts = np.datetime_as_string(shifted.astype("datetime64[us]"), unit="us").tolist()
    out: list[str] = []
    append = out.append
    for text, form, gone in zip(texts, forms.tolist(), missing.tolist(), strict=True):
        if gone:
            append("null")
        elif _MICRO[form]:
            append(f'"{text}{_SUFFIX[form]}"')
        else:
            append(f'"{text[:19]}{_SUFFIX[form]}"')
    return out


def parse(text: str) -> int:
    """Parse an ISO 8601 date or date-time (naive means UTC) into microseconds since the epoch.

    Raises:
        ValueError: when `text` is not an ISO 8601 date or date-time.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty date-time")
    moment = datetime.fromisoformat(value.replace(" ", "T", 1) if "T" not in value else value)
    return to_us(moment)

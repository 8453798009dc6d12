"""`pipelines/quorum/isotime.py`: Arrow's parse of a column agrees with Python's, value by value.

The column parser guesses which values lack a zone and leaves the rest to Arrow's cast. Its
promise: whatever it returns equals what `parse_api_time` (Python's `fromisoformat`, the
exact path) makes of every value, and when it cannot promise that it returns None. The
generated values below cover the API's forms, the ISO forms around them, impossible dates and
times, and random damage to all of these.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipelines.errors import BadRecordError
from pipelines.quorum.isotime import TIMESTAMP, parse_iso_utc
from pipelines.quorum.timestamps import parse_api_time

SIX_PM = datetime(2026, 10, 30, 18, 0, 4, tzinfo=UTC)


def exact(value: str) -> datetime | None:
    """What the exact path makes of one value: a UTC datetime, or None for an error."""
    try:
        return parse_api_time(value)
    except BadRecordError:
        return None


def parsed(
    values: Sequence[str | None], *, empty_is_null: bool = True
) -> list[datetime | None] | None:
    """The column parser's values for `values`, or None when it leaves them to the exact path."""
    result = parse_iso_utc(pa.array(values, type=pa.string()), empty_is_null=empty_is_null)
    if result is None:
        return None
    assert result.type == TIMESTAMP
    return result.to_pylist()


def well_formed_value(rng: random.Random) -> str:
    """A valid date-time in one of the forms the API and ISO 8601 allow."""
    year, month = rng.randint(1, 9999), rng.randint(1, 12)
    day = rng.randint(1, 28 if month == 2 else 30)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    date = f"{year:04d}-{month:02d}-{day:02d}"
    hh_mm = f"{hour:02d}:{minute:02d}"
    time = rng.choice([f"{hh_mm}:{second:02d}"] * 4 + [hh_mm, f"{hour:02d}"])
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))
    fraction = rng.choice(["", f".{digits}"])
    offset = f"{rng.choice('+-')}{rng.randint(0, 23):02d}:{rng.choice([0, 30, 45, 59]):02d}"
    zone = rng.choice(["", "Z", "+00:00", offset, offset, offset.replace(":", ""), offset[:3]])
    return f"{date}{rng.choice('TT ')}{time}{fraction}{zone}"


def wild_value(rng: random.Random) -> str:
    """An ISO-8601-like value with the parts that go wrong: ranges, separators, lengths."""
    year = rng.choice(["2026", "2024", "0001", "0000", "9999", "1970", "1969", "202"])
    month = rng.choice(["01", "02", "10", "12", "13", "00", "1"])
    day = rng.choice(["01", "28", "29", "30", "31", "32", "00"])
    date = rng.choice([f"{year}-{month}-{day}", f"{year}{month}{day}", f"{year}-{month}"])
    hour, minute = rng.choice(["00", "18", "23", "24"]), rng.choice(["00", "59", "60"])
    second = rng.choice(["04", "59", "60"])
    time = rng.choice([
        f"{hour}:{minute}:{second}", f"{hour}:{minute}", hour, f"{hour}{minute}{second}",
    ])
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([0, 1, 6, 7, 9])))
    fraction = rng.choice(["", f".{digits}", f",{digits}", "."])
    zone = rng.choice([
        "", "Z", "+24:00", "+01", "+0530", "-05:00:30", "z", "+5:30", "UTC", "-00:00",
    ])
    separator = rng.choice(["T", " ", "t", "_"])
    return rng.choice([f"{date}{separator}{time}{fraction}{zone}", date])


def generated_value(rng: random.Random) -> str:
    """Half well formed, half wild; a third of them then damaged by a byte or two."""
    value = well_formed_value(rng) if rng.random() < 0.5 else wild_value(rng)
    if rng.random() < 1 / 3:
        for _ in range(rng.choice([1, 2])):
            at = rng.randrange(len(value) + 1)
            damage = rng.choice("0123456789-:T+Z. é\x00")
            value = rng.choice([
                value[:at] + damage + value[at:],
                value[:at] + damage + value[at + 1 :],
                value[:at] + value[at + 1 :],
            ])
    return value


def test_every_value_arrow_accepts_reads_the_same_in_python() -> None:
    rng = random.Random(20261126)
    values = [generated_value(rng) for _ in range(6000)]
    taken = refused = 0
    for value in values:
        expected = exact(value)
        result = parsed([value])
        if result is None:
            refused += 1
            continue
        taken += 1
        assert expected is not None, f"{value!r}: Python refuses it, the column parser took it"
        assert result == [expected], value
    # the generator must exercise both outcomes, or this test proves nothing
    assert taken > 1000 and refused > 1000, (taken, refused)


def test_a_column_is_taken_whole_or_not_at_all() -> None:
    rng = random.Random(7)
    good = [v for v in (generated_value(rng) for _ in range(3000)) if parsed([v]) is not None]
    bad = "2026-02-30T00:00:00Z"
    for size in (1, 7, 1000):
        column = [rng.choice(good) for _ in range(size)]
        assert parsed(column) == [exact(v) for v in column]
        assert parsed([*column, bad]) is None


def test_the_api_forms_are_all_taken_and_mean_the_same_instant() -> None:
    forms = [
        "2026-10-30T18:00:04.123456",
        "2026-10-30T18:00:04.123456Z",
        "2026-10-30T18:00:04.123456+00:00",
        "2026-10-30T14:00:04.123456-04:00",
        "2026-10-30T18:00:04",
        "2026-10-30T18:00:04Z",
        "2026-10-30T13:00:04-05:00",
        "2026-10-30T19:00:04+01:00",
    ]
    assert parsed(forms) == [datetime(2026, 10, 30, 18, 0, 4, 123456, tzinfo=UTC)] * 4 + [
        datetime(2026, 10, 30, 18, 0, 4, tzinfo=UTC)
    ] * 4


@pytest.mark.parametrize(
    ("values", "empty_is_null", "expected"),
    [
        ([None, None], True, [None, None]),
        (["", None], True, [None, None]),
        (["", "2026-10-30T18:00:04"], True, [None, SIX_PM]),
        # an empty `updated` is not a missing value: the exact path raises the error
        (["", "2026-10-30T18:00:04"], False, None),
        ([None, "2026-10-30T18:00:04"], False, [None, SIX_PM]),
        # values shorter than the six bytes looked at, first in the buffer
        (["1", "2026-10-30T18:00:04"], True, None),
        # outside Python's years: Arrow would take them, Python refuses
        (["0000-01-01T00:00:00Z"], True, None),
        (["0001-01-01T00:30:00+01:00"], True, None),
        (["9999-12-31T23:30:00-01:00"], True, None),
        (["0001-01-01T00:00:00Z"], True, [datetime(1, 1, 1, tzinfo=UTC)]),
    ],
)
def test_nulls_empties_and_edges(
    values: list[str | None], empty_is_null: bool, expected: list[datetime | None] | None
) -> None:
    assert parsed(values, empty_is_null=empty_is_null) == expected


def test_a_slice_of_a_column_parses_as_its_own_values() -> None:
    values = ["2026-10-30T18:00:04Z", None, "2026-10-30T18:00:05", "2026-10-30T18:00:06+01:00"]
    column = pa.array(values * 3, type=pa.string()).slice(5, 6)
    result = parse_iso_utc(column, empty_is_null=True)
    assert result is not None
    assert result.to_pylist() == [exact(v) if v else None for v in (values * 3)[5:11]]


def test_a_column_of_another_type_goes_the_exact_way() -> None:
    assert parse_iso_utc(pa.array([1, 2]), empty_is_null=True) is None

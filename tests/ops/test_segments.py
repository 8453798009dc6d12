"""The segment counter, against the contract's rules and the simulator's independent counter."""

from __future__ import annotations

import pytest

from pipelines.ops.segments import GSM7, UCS2, count_segments
from pipelines.simulator import segment_count as simulator_segments


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", GSM7, 0, 1),
        ("Hello from Quorum!", GSM7, 18, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("€" * 80, GSM7, 160, 1),  # extension characters take two septets
        ("[" * 81, GSM7, 162, 2),
        ("Ça coûte 5€", UCS2, 11, 1),  # û is not GSM-7
        ("x" * 70 + "é", GSM7, 71, 1),  # é is in the basic table
        ("👍" * 35, UCS2, 70, 1),  # an emoji is two UTF-16 units
        ("👍" * 36, UCS2, 72, 2),
        ("ы" * 134, UCS2, 134, 2),
        ("ы" * 135, UCS2, 135, 3),
    ],
)
def test_counts_follow_the_contract(text, encoding, units, segments):
    info = count_segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_ucs2_names_the_characters_that_forced_it():
    info = count_segments("Richard \u2013 see you")
    assert info.encoding == UCS2 and info.non_gsm_chars == ("\u2013",)
    assert "UCS-2 because of '\u2013'" in info.describe()


@pytest.mark.parametrize(
    "text",
    [
        "Election Day is Tuesday! Find your polling place: https://qrm.us/x Reply STOP",
        "Richard \u2013 great to meet you at the town hall. " * 3,
        "{curly} [square] ~tilde~ |pipe| \\ ^ €" * 5,
        "👍🏽 thanks!" * 9,
        "Grüße aus Köln, ¿qué tal? ñ" * 7,
        "\f\n\r@£$¥",
    ],
)
def test_agrees_with_the_simulators_independent_counter(text):
    assert count_segments(text).segments == simulator_segments(text)

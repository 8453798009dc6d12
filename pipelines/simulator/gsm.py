"""SMS segment counting: the GSM 03.38 7-bit alphabet (basic table and extension table) and UCS-2.

A message made only of GSM-7 characters is measured in septets, where a character of the
extension table (`^{}\\[~]|€` and form feed) takes two (an escape plus the character). Any other
character makes the whole message UCS-2, measured in UTF-16 code units (an emoji outside the
Basic Multilingual Plane takes two, as carriers bill it).
"""

from __future__ import annotations

import math

# The basic table of GSM 03.38, without the escape code 0x1B (not a character of its own).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each of these is sent as ESC + character, so it counts twice.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


def gsm7_length(text: str) -> int | None:
    """Return the length of `text` in GSM-7 septets, or None if it needs UCS-2."""
    length = 0
    for char in text:
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def ucs2_length(text: str) -> int:
    """Return the length of `text` in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def encoding(text: str) -> str:
    """Return "GSM-7" or "UCS-2", the encoding a carrier would use for `text`."""
    return "GSM-7" if gsm7_length(text) is not None else "UCS-2"


def segment_count(text: str) -> int:
    """Return the number of SMS segments `text` is billed as (at least 1).

    GSM-7: 1 segment up to 160 septets, else ceil(septets / 153). UCS-2: 1 segment up to 70
    code units, else ceil(units / 67).
    """
    septets = gsm7_length(text)
    if septets is not None:
        return 1 if septets <= GSM7_SINGLE else math.ceil(septets / GSM7_MULTI)
    units = ucs2_length(text)
    return 1 if units <= UCS2_SINGLE else math.ceil(units / UCS2_MULTI)

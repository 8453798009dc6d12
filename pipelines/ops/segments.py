"""How many SMS segments a text is billed as, and in which encoding (GSM-7 or UCS-2).

Written from the GSM 03.38 standard and the contract (`quorum-api.md`), independently of the
simulator's counter, so that a dry run and the API's `num_segments` check each other:

* a text made only of GSM-7 characters is counted in septets; a character of the extension
  table (form feed, ``^ { } \\ [ ~ ] |`` and the euro sign) is sent as escape + character and
  takes two. Up to 160 septets is 1 segment, else ceil(septets / 153);
* any other character makes the whole text UCS-2, counted in UTF-16 code units (an emoji
  outside the Basic Multilingual Plane takes two). Up to 70 is 1 segment, else ceil(units / 67).
"""

from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 default alphabet, in table order (0x00-0x7F), without the escape code 0x1B.
_GSM7_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = "\f^{}\\[~]|€"
_SEPTETS: dict[str, int] = {char: 1 for char in _GSM7_DEFAULT} | {
    char: 2 for char in _GSM7_EXTENDED
}

GSM7 = "GSM-7"
UCS2 = "UCS-2"
_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


@dataclass(frozen=True)
class SegmentInfo:
    """The billing shape of one text."""

    encoding: str
    #: septets (GSM-7) or UTF-16 code units (UCS-2)
    units: int
    segments: int
    #: the first characters that forced UCS-2 (empty for GSM-7), to help shorten a bill
    non_gsm_chars: tuple[str, ...] = ()

    def describe(self) -> str:
        """E.g. `2 segments (GSM-7, 170 septets)`."""
        unit = "septets" if self.encoding == GSM7 else "UTF-16 units"
        plural = "segment" if self.segments == 1 else "segments"
        text = f"{self.segments} {plural} ({self.encoding}, {self.units} {unit})"
        if self.non_gsm_chars:
            shown = " ".join(repr(c) for c in self.non_gsm_chars)
            text += f"; UCS-2 because of {shown}"
        return text


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def count_segments(text: str) -> SegmentInfo:
    """Count the segments `text` is billed as (at least 1, even for an empty text)."""
    septets = 0
    outside: list[str] = []
    for char in text:
        width = _SEPTETS.get(char)
        if width is None:
            if char not in outside and len(outside) < 5:
                outside.append(char)
            continue
        septets += width
    if outside:
        encoding = UCS2
        units = len(text.encode("utf-16-le")) // 2
    else:
        encoding = GSM7
        units = septets
    single, multi = _LIMITS[encoding]
    segments = 1 if units <= single else _ceil_div(units, multi)
    return SegmentInfo(encoding, units, segments, tuple(outside))

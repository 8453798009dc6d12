"""Parsing API bodies that are valid JSON but that orjson refuses (lone UTF-16 surrogates).

JSON allows any `\\uXXXX` escape, including half of a surrogate pair on its own (`"\\ud800"`);
orjson refuses such a string, and so does everything downstream: Arrow and Parquet hold valid
UTF-8 only. Such a page is not the API failing, so it must not be retried as an outage.

**Decision: a lone surrogate is kept as the literal text of its escape**, six characters
`\\ud800`. The stored text then says exactly what the API sent, loads everywhere, and a person
reading `message_content` sees where the broken character was. Valid surrogate *pairs* are
not touched: the standard library joins them into the character they encode.
"""

from __future__ import annotations

import json
import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: a body holding them is as broken as a cut one.
    raise ValueError(f"{name} is not valid JSON")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _clean(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (and keys) spelled as its escape."""
    if isinstance(value, str):
        if value.isascii():
            return value
        return _LONE_SURROGATE.sub(_escape_surrogate, value)
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def loads_tolerant(content: bytes) -> Any:
    """Parse a body orjson refused, if it is valid JSON after all.

    Only for the rare body orjson rejects (it is slower than orjson): the standard library's
    parser accepts lone surrogates, which are then kept as the text of their escape (see the
    module docstring).

    Args:
        content: the raw response body (UTF-8).

    Returns:
        The decoded JSON value, every string valid UTF-8.

    Raises:
        ValueError: the body is not valid JSON (cut short, not UTF-8, NaN, ...).
    """
    text = content.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return _clean(json.loads(text, parse_constant=_refuse_constant))

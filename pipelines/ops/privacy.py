"""The personal-data policy: keep, hash (keyed HMAC-SHA256) or drop each group of columns.

Applied through `run_sync(config, policy=...)`, i.e. to every column of both raw tables
*before* the Arrow table is built, so a value that is hashed or dropped never reaches a load
package, the DuckDB file or a trace.

Groups (docs/operations.md says what each choice does to the marts):

* ``phones``: phone numbers of the recipient: keys of `rcpt_dict` and columns whose name says
  phone (`phone`, `phone_number`, `mobile`, ...). `associated_number`, the organisation's own
  sending number, is not personal data and is always kept.
* ``emails``: `supporter_email`, and e-mail keys/columns elsewhere.
* ``names``: `supporter_name`, `supporter_title`, `supporter_public_organization`, and name
  keys (`name`, `first_name`, `last_name`, ...) elsewhere.
* ``messages``: `message_content`.
* ``recipients``: `rcpt_dict` as a whole. When it is kept, the phone, e-mail and name keys
  inside it still follow their own group.

Hashes are HMAC-SHA256 under a secret key, hex encoded, of a normalised value (phones: `+` and
digits; e-mails: trimmed, lower case; names: single-spaced, case-folded), so the same person
hashes the same in every load and joins still work, while nobody without the key can recover
a phone number by hashing every possible one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

import orjson

from pipelines.config import PiiSettings
from pipelines.quorum.normalize import PersonalDataPolicy
from pipelines.redaction import register_secret

#: Fixed columns of `quorum_raw.sendsms` and their group.
COLUMN_GROUPS: dict[str, str] = {
    "supporter_email": "emails",
    "supporter_name": "names",
    "supporter_title": "names",
    "supporter_public_organization": "names",
    "message_content": "messages",
    "rcpt_dict": "recipients",
}
#: Never personal data, whatever their name looks like.
NEVER_PERSONAL = frozenset({"associated_number"})

_PHONE_NAME = re.compile(r"phone|mobile|cell|msisdn|sms_number|^to$|^to_number$", re.I)
_EMAIL_NAME = re.compile(r"e_?mail", re.I)
_NAME_NAME = re.compile(r"^(first|last|full|middle|given|family|sur)?_?name$", re.I)


def group_of_key(key: str) -> str | None:
    """The group of a column or JSON key judged by its name, or None when not personal."""
    bare = key.removeprefix("event.")
    if bare in NEVER_PERSONAL:
        return None
    if bare in COLUMN_GROUPS:
        return COLUMN_GROUPS[bare]
    if _PHONE_NAME.search(bare):
        return "phones"
    if _EMAIL_NAME.search(bare):
        return "emails"
    if _NAME_NAME.search(bare):
        return "names"
    return None


def _normalise(group: str, value: str) -> str:
    if group == "phones":
        digits = re.sub(r"[^0-9]", "", value)
        return ("+" if value.strip().startswith("+") else "") + digits if digits else value
    if group == "emails":
        return value.strip().lower()
    if group == "names":
        return " ".join(value.split()).casefold()
    return value


class PrivacyPolicy:
    """Turns `PiiSettings` into the `(column, values) -> values` policy of the sync.

    Args:
        settings: the validated choice per group and the HMAC key.
    """

    def __init__(self, settings: PiiSettings) -> None:
        self.choices = dict(settings.choices)
        self._key = (settings.hash_key or "").encode()
        if settings.hash_key:
            register_secret(settings.hash_key)

    def hash_value(self, group: str, value: Any) -> str:
        """HMAC-SHA256 (hex) of the value's normalised text under the policy's key."""
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        normalised = _normalise(group, text)
        return hmac.new(self._key, normalised.encode(), hashlib.sha256).hexdigest()

    def _apply(self, group: str, value: Any) -> Any:
        choice = self.choices.get(group, "keep")
        if value is None or value == "" or choice == "keep":
            return value
        if choice == "drop":
            return None
        return self.hash_value(group, value)

    def _scrub_json(self, value: Any) -> Any:
        """Apply the key-named groups inside a JSON object or list, recursively."""
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                group = group_of_key(str(key))
                if group is not None and group != "recipients" and not isinstance(
                    item, dict | list
                ):
                    out[key] = self._apply(group, item)
                else:
                    out[key] = self._scrub_json(item)
            return out
        if isinstance(value, list):
            return [self._scrub_json(item) for item in value]
        return value

    def _json_column(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for text in values:
            if text is None:
                out.append(None)
                continue
            scrubbed = self._scrub_json(orjson.loads(text))
            out.append(orjson.dumps(scrubbed, option=orjson.OPT_SORT_KEYS).decode())
        return out

    def apply(self, column: str, values: list[Any]) -> list[Any]:
        """The policy applied to one column: its group decides; JSON columns are walked."""
        group = group_of_key(column)
        if column in ("rcpt_dict", "_extra"):
            if group == "recipients" and self.choices["recipients"] != "keep":
                return [self._apply("recipients", v) for v in values]
            return self._json_column(values)
        if group is None:
            # a field the contract does not know may be an object with personal keys
            return [self._scrub_nested(v) for v in values]
        return [self._apply(group, v) for v in values]

    def _scrub_nested(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return self._scrub_json(value)
        if not isinstance(value, str) or value[:1] not in "{[":
            return value
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        return orjson.dumps(self._scrub_json(parsed), option=orjson.OPT_SORT_KEYS).decode()


def make_policy(settings: PiiSettings) -> PersonalDataPolicy | None:
    """The personal-data policy for `run_sync`, or None when everything is kept (no cost)."""
    if settings.keeps_everything:
        return None
    policy: Callable[[str, list[Any]], list[Any]] = PrivacyPolicy(settings).apply
    return policy

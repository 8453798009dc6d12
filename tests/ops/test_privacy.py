"""The personal-data policy as a transform, and its settings."""

from __future__ import annotations

import re

import orjson
import pytest

from pipelines.config import PiiSettings, load_pii_settings
from pipelines.errors import ConfigError
from pipelines.ops.privacy import group_of_key, make_policy

KEY = "a-test-key-that-is-long-enough"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def policy(**choices: str):
    base = {g: "keep" for g in ("phones", "emails", "names", "messages", "recipients")}
    transform = make_policy(PiiSettings({**base, **choices}, KEY))
    assert transform is not None
    return transform


def test_everything_kept_means_no_transform():
    assert make_policy(PiiSettings({"phones": "keep"}, None)) is None


@pytest.mark.parametrize(
    ("key", "group"),
    [
        ("supporter_email", "emails"),
        ("supporter_name", "names"),
        ("supporter_title", "names"),
        ("message_content", "messages"),
        ("rcpt_dict", "recipients"),
        ("phone_number", "phones"),
        ("event.to", "phones"),
        ("first_name", "names"),
        ("email", "emails"),
        ("associated_number", None),
        ("bulk_sms_description", None),
        ("campaign_name", None),
        ("carrier", None),
    ],
)
def test_groups_by_column_or_key(key, group):
    assert group_of_key(key) == group


def test_hash_is_keyed_normalised_and_stable():
    transform = policy(phones="hash", emails="hash")
    one = transform("supporter_email", ["Ann@Example.org ", "ann@example.org", None, ""])
    assert HEX64.match(one[0]) and one[0] == one[1]
    assert one[2:] == [None, ""]
    other_key = make_policy(
        PiiSettings({"emails": "hash"}, "another-key-that-is-long-enough")
    )
    assert other_key is not None
    assert other_key("supporter_email", ["ann@example.org"])[0] != one[1]


def test_rcpt_dict_kept_whole_but_its_phone_email_and_name_keys_follow_their_groups():
    transform = policy(phones="hash", emails="drop", names="hash")
    record = {"phone_number": "+1 (720) 862-7897", "email": "a@b.org", "first_name": "Ann",
              "zip": "30303", "custom_fields": {"phone": "+17208627897"}}
    (out,) = transform("rcpt_dict", [orjson.dumps(record).decode()])
    parsed = orjson.loads(out)
    assert parsed["zip"] == "30303"
    assert parsed["email"] is None
    assert HEX64.match(parsed["first_name"])
    # the same phone in two formats hashes the same: joins still work
    assert parsed["phone_number"] == parsed["custom_fields"]["phone"]
    assert "7897" not in out


def test_recipients_hash_replaces_the_whole_object_and_drop_nulls_it():
    text = orjson.dumps({"phone": "+15550001111"}).decode()
    assert HEX64.match(policy(recipients="hash")("rcpt_dict", [text])[0])
    assert policy(recipients="drop")("rcpt_dict", [text, None]) == [None, None]


def test_the_organisations_number_and_other_columns_are_untouched():
    transform = policy(phones="hash", names="drop", messages="drop")
    assert transform("associated_number", ["+16175550112"]) == ["+16175550112"]
    assert transform("opens", [1, 2]) == [1, 2]
    assert transform("message_content", ["hello"]) == [None]
    assert transform("supporter_name", ["Ann Lee"]) == [None]


def test_unknown_fields_with_personal_keys_are_scrubbed():
    transform = policy(phones="drop")
    assert transform("new_field", [{"mobile": "+1555", "x": 1}]) == [{"mobile": None, "x": 1}]


def test_hash_without_a_key_is_a_config_error(monkeypatch):
    monkeypatch.setenv("QUORUM_PII_PHONES", "hash")
    monkeypatch.delenv("QUORUM_PII_HASH_KEY", raising=False)
    with pytest.raises(ConfigError, match="no hash key"):
        load_pii_settings()
    monkeypatch.setenv("QUORUM_PII_HASH_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than"):
        load_pii_settings()
    monkeypatch.setenv("QUORUM_PII_HASH_KEY", KEY)
    settings = load_pii_settings()
    assert settings.choices["phones"] == "hash" and KEY not in repr(settings)


def test_an_unknown_choice_is_a_config_error(monkeypatch):
    monkeypatch.setenv("QUORUM_PII_EMAILS", "encrypt")
    with pytest.raises(ConfigError, match="keep, hash or drop"):
        load_pii_settings()

"""The README's settings table and `.dlt/config.toml` are what the settings specs render."""

from __future__ import annotations

import re
import tomllib

from pipelines.config import PROJECT_ROOT, SPECS, env_name, spec_fields
from pipelines.settings_doc import render_config_toml, render_settings_markdown


def test_readme_settings_table_is_generated_from_the_specs():
    readme = (PROJECT_ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings-table:[^>]*-->\n(.*?)<!-- end of settings-table -->",
                      readme, re.S)
    assert found, "the README lost its settings-table markers"
    assert found.group(1) == render_settings_markdown(), (
        "README's settings table is stale: paste `quorum-sms settings --markdown`"
    )


def test_config_toml_is_generated_from_the_specs_and_lists_every_default():
    text = (PROJECT_ROOT / ".dlt" / "config.toml").read_text()
    assert text == render_config_toml(), "stale: run `quorum-sms settings --toml`"
    parsed = tomllib.loads(text)
    for section, spec in SPECS:
        table = parsed
        for part in section:
            table = table[part]
        for field in spec_fields(spec):
            if field.name in ("username", "api_key", "webhook_url", "pii_hash_key"):
                assert field.name not in table  # secrets never in config.toml
            else:
                assert table[field.name] == field.default, field.name


def test_every_setting_has_one_distinct_quorum_environment_name():
    names = [env_name(f.name) for _, spec in SPECS for f in spec_fields(spec)]
    assert len(names) == len(set(names))
    for expected in ("QUORUM_BASE_URL", "QUORUM_USERNAME", "QUORUM_API_KEY", "QUORUM_DATABASE",
                     "QUORUM_DESTINATION", "QUORUM_WEBHOOK_URL", "QUORUM_PII_PHONES"):
        assert expected in names

"""The settings specs rendered as documentation: `.dlt/config.toml` and the README's table.

Both are generated from the specs in `pipelines.config.SPECS`, so a setting added there shows
up in both; tests check the committed files equal what is rendered here.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.configuration.specs.base_configuration import is_secret_hint

from pipelines.config import SPECS, env_name, spec_fields

CONFIG_TOML_HEADER = """\
# quorum-sms settings (non-secret), every one with its default. Generated from the settings
# specs by `quorum-sms settings --toml`; edit values freely, regenerate after adding a setting.
# Each setting has one documented environment variable, QUORUM_<NAME> (QUORUM_PAGE_SIZE=500),
# which overrides this file; command-line flags override both. Secrets (username, api_key,
# webhook_url, pii_hash_key) go in .dlt/secrets.toml (see .dlt/secrets.toml.example) or the
# environment, never here.
"""


def _is_secret(spec: type[BaseConfiguration], field: dataclasses.Field[Any]) -> bool:
    return bool(is_secret_hint(spec.get_resolvable_fields()[field.name]))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config_toml() -> str:
    """`.dlt/config.toml`: each non-secret setting with its default and its meaning."""
    parts = [CONFIG_TOML_HEADER]
    for section, spec in SPECS:
        parts.append(f"\n[{'.'.join(section)}]\n")
        for field in spec_fields(spec):
            if _is_secret(spec, field):
                continue
            doc = f"{field.metadata['doc']} ({env_name(field.name)})"
            parts.append(textwrap.fill(doc, width=95, initial_indent="# ",
                                       subsequent_indent="# ") + "\n")
            parts.append(f"{field.name} = {_toml_value(field.default)}\n")
    parts.append('\n[runtime]\nlog_level = "WARNING"\n')
    parts.append(
        "\n[load]\n# dlt deletes a package's data files once they are loaded: they are a "
        "plaintext copy of\n# the night's records (personal data included). The sync also "
        "removes loaded packages.\ndelete_completed_jobs = true\n"
    )
    return "".join(parts)


def render_settings_markdown() -> str:
    """The README's table of settings: name, environment variable, default, meaning."""
    rows = [
        "| setting | environment variable | default | what it does |",
        "|---|---|---|---|",
    ]
    for section, spec in SPECS:
        for field in spec_fields(spec):
            default = (
                "(secret)" if _is_secret(spec, field)
                else "(none)" if field.default is None
                else f"`{_toml_value(field.default)}`"
            )
            doc = str(field.metadata["doc"]).replace("|", "\\|")
            rows.append(
                f"| `{'.'.join(section)}.{field.name}` | `{env_name(field.name)}` | {default} "
                f"| {doc} |"
            )
    return "\n".join(rows) + "\n"

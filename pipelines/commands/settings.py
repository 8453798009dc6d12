"""`quorum-sms settings`: every setting, its environment variable and default."""

from __future__ import annotations

import argparse
from typing import Any

from pipelines.settings_doc import render_config_toml, render_settings_markdown


def register(subparsers: Any) -> None:
    """Add `settings` to the CLI."""
    parser = subparsers.add_parser(
        "settings",
        help="list every setting with its environment variable and default",
        description="Print the settings table (Markdown, as in the README) or the commented "
        ".dlt/config.toml, both generated from the settings specs.",
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="the README's table (default)")
    form.add_argument("--toml", action="store_true", help="the commented .dlt/config.toml")
    parser.set_defaults(handler=settings_command)


def settings_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms settings`."""
    print(render_config_toml() if args.toml else render_settings_markdown(), end="")
    return 0

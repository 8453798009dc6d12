"""`quorum-sms models|report|export` (filled in by the SQL models work)."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the warehouse subcommands to the CLI."""
    del subparsers

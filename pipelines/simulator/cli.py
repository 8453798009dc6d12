"""`quorum-sms simulate`: run the local Quorum API simulator (filled in by the simulator work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the simulator's subcommands to the CLI."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate", help="run the local Quorum API simulator"
    )
    del parser

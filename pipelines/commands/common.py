"""Argument declarations and texts that several commands share."""

from __future__ import annotations

import argparse

EXIT_CODES = (
    "Exit codes: 0 done, 5 loaded, with rejected records (see quorum_raw.sendsms_rejects), "
    "2 bad configuration or usage, 3 authorization failure, 4 the API kept failing, "
    "130/143 interrupted, 1 anything else."
)


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    """`--database PATH`: the DuckDB file, over QUORUM_DATABASE and the config."""
    parser.add_argument(
        "--database",
        help="the DuckDB file (default: $QUORUM_DATABASE, else [quorum_sms] database); "
        "a relative path is relative to the current directory",
    )


def add_base_url_argument(parser: argparse.ArgumentParser) -> None:
    """`--base-url URL`: the API's scheme and host, over QUORUM_BASE_URL and the config."""
    parser.add_argument(
        "--base-url", help="API scheme and host (default: $QUORUM_BASE_URL, else config)"
    )


def add_publish_argument(parser: argparse.ArgumentParser) -> None:
    """`--publish-database PATH`: the published analytics file, over the setting."""
    parser.add_argument(
        "--publish-database",
        metavar="PATH",
        help="the published analytics file (default: $QUORUM_PUBLISH_DATABASE, else "
        "[quorum_sms] publish_database, else <warehouse stem>-analytics.duckdb beside the "
        "warehouse)",
    )


def add_destination_argument(parser: argparse.ArgumentParser) -> None:
    """`--destination NAME`: where the warehouse is, over QUORUM_DESTINATION and the config."""
    parser.add_argument(
        "--destination",
        help="duckdb (the --database file) or postgres (credentials the dlt way: "
        "DESTINATION__POSTGRES__CREDENTIALS); default: $QUORUM_DESTINATION, else config",
    )

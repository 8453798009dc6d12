"""`quorum-sms models|report|export`: build and publish the marts (under the database lock),
print or draw the report, export. The report and the export read the published analytics
file, never the warehouse, so they work while a nightly run holds the warehouse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.commands.common import add_database_argument, add_publish_argument
from pipelines.config import load_published_paths


def register(subparsers: Any) -> None:
    """Add the warehouse subcommands to the CLI."""
    models: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="build the SQL models (seeds, staging, marts) and run the data checks",
        description="Build every model under sql/ in one transaction, then run the data "
        "checks and publish the analytics file; on any failure the previous marts and the "
        "published file stay as they were.",
    )
    add_database_argument(models)
    add_publish_argument(models)
    models.add_argument("--sql-dir", type=Path, help="the model directory (default: sql/)")
    models.set_defaults(handler=run_models)

    report: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="print the headline figures of the last days, or write them as an HTML page",
        description="Figures of the last --days days of sends, ending at the newest send in "
        "the data (UTC dates). Reads the published analytics file.",
    )
    add_database_argument(report)
    add_publish_argument(report)
    report.add_argument("--days", type=int, default=30, help="window length (default 30)")
    report.add_argument(
        "--html", type=Path, metavar="PATH", help="write a self-contained HTML page here"
    )
    report.set_defaults(handler=run_report)

    export: argparse.ArgumentParser = subparsers.add_parser(
        "export", help="write each mart of the published analytics file as a Parquet file"
    )
    add_database_argument(export)
    add_publish_argument(export)
    export.add_argument("--out", type=Path, required=True, help="the directory to write to")
    export.set_defaults(handler=run_export)


def run_models(args: argparse.Namespace) -> int:
    """Build the models and print a summary."""
    from pipelines.orchestrator import rebuild_models

    run, database, published = load_published_paths(args.database, args.publish_database)
    print(f"building the SQL models in {database} ...", file=sys.stderr, flush=True)
    done = rebuild_models(
        database,
        published,
        lock_wait_seconds=run.lock_wait_seconds,
        sql_dir=args.sql_dir,
        duckdb_memory_limit=run.duckdb_memory_limit,
        duckdb_threads=run.duckdb_threads,
    )
    print(done.models.summary())
    for relation, rows in sorted(done.models.row_counts.items()):
        print(f"  {relation:<40} {rows:>12,} rows")
    print(done.published.summary())
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Print the terminal report, or write the HTML page."""
    _, _, database = load_published_paths(args.database, args.publish_database)
    if args.html is not None:
        from pipelines.warehouse.html_report import write_html_report

        written = write_html_report(database, args.html, days=args.days)
        print(f"wrote {written}")
        return 0
    from pipelines.warehouse.report import render_terminal_report

    print(render_terminal_report(database, days=args.days))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export the marts as Parquet."""
    from pipelines.warehouse.export import export_marts

    _, _, database = load_published_paths(args.database, args.publish_database)
    files = export_marts(database, args.out)
    print(f"wrote {len(files)} Parquet file(s) to {args.out}")
    for file in files:
        print(f"  {file.name}")
    return 0

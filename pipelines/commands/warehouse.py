"""`quorum-sms models|report|export`: build and publish the marts (under the database lock),
print or draw the report, export. The report and the export read the published analytics
file, never the warehouse, so they work while a nightly run holds the warehouse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.commands.common import (
    add_database_argument,
    add_destination_argument,
    add_publish_argument,
)
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
    add_destination_argument(models)
    models.add_argument("--sql-dir", type=Path, help="the model directory (default: sql/)")
    models.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every model and republish every table, even when only some records "
        "changed since the last build (by default only what they touch is recomputed)",
    )
    models.set_defaults(handler=run_models)

    report: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="print the headline figures of the last days, or write them as an HTML page",
        description="Figures of the last --days days of sends, ending at the newest send in "
        "the data (UTC dates). Reads the published analytics file.",
    )
    add_database_argument(report)
    add_publish_argument(report)
    add_destination_argument(report)
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
    add_destination_argument(export)
    export.add_argument("--out", type=Path, required=True, help="the directory to write to")
    export.set_defaults(handler=run_export)


def run_models(args: argparse.Namespace) -> int:
    """Build the models and print a summary."""
    from pipelines.orchestrator import rebuild_models
    from pipelines.target import model_target, target_label

    run, database, published = load_published_paths(
        args.database, args.publish_database, args.destination
    )
    target = model_target(run.destination, database)
    print(f"building the SQL models in {target_label(target)} ...", file=sys.stderr, flush=True)
    done = rebuild_models(
        target,
        published if isinstance(target, Path) else None,
        lock_wait_seconds=run.lock_wait_seconds,
        sql_dir=args.sql_dir,
        full_refresh=args.full_refresh,
        duckdb_memory_limit=run.duckdb_memory_limit,
        duckdb_threads=run.duckdb_threads,
    )
    print(done.models.summary())
    for relation, rows in sorted(done.models.row_counts.items()):
        print(f"  {relation:<40} {rows:>12,} rows")
    if done.published is not None:
        print(done.published.summary())
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Print the terminal report, or write the HTML page."""
    database = _marts_target(args)
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

    database = _marts_target(args)
    files = export_marts(database, args.out)
    print(f"wrote {len(files)} Parquet file(s) to {args.out}")
    for file in files:
        print(f"  {file.name}")
    return 0


def _marts_target(args: argparse.Namespace) -> str | Path:
    """Where `report`/`export` read the marts: the published analytics file (DuckDB), never
    the warehouse a nightly run may be writing, or the PostgreSQL database."""
    from pipelines.target import model_target

    run, database, published = load_published_paths(
        args.database, args.publish_database, args.destination
    )
    target = model_target(run.destination, database)
    return published if isinstance(target, Path) else target

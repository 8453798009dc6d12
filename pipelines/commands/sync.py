"""`quorum-sms sync` and `quorum-sms demo`: parse, run the orchestrator, print."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pipelines.commands.common import (
    EXIT_CODES,
    add_base_url_argument,
    add_database_argument,
    add_destination_argument,
    add_publish_argument,
)
from pipelines.config import PROJECT_ROOT, SyncConfig, load_sync_config
from pipelines.orchestrator import RunReporter, run_nightly
from pipelines.quorum import SourceObserver
from pipelines.sync import SyncSummary, pipelines_dir_for
from pipelines.warehouse.publish import PublishResult
from pipelines.warehouse.runner import BuildResult


class TerminalReporter(RunReporter):
    """Prints a run: progress on stderr (a live line on a terminal, a line every 15 s in a
    log), the summary on stdout, notes and the failure summary on stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.interval = 0.5 if self.live else 15.0
        self.started_at = time.monotonic()
        self.last = 0.0

    def started(self, config: SyncConfig) -> None:
        """Say what is synced into what."""
        print(f"quorum-sms sync: {config.source.base_url} -> {config.database}",
              file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """One line on stderr."""
        self._end_live_line()
        prefix = "" if text.startswith("warning:") else "note: "
        print(prefix + text, file=self.stream, flush=True)

    def progress(self, observer: SourceObserver) -> None:
        """Report the pages and records read so far (rate-limited)."""
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        retries = observer.client.stats.retries if observer.client is not None else 0
        elapsed = max(now - self.started_at, 1e-6)
        text = (
            f"  read {observer.records:,} records in {observer.pages:,} pages "
            f"({observer.records / elapsed:,.0f}/s, {retries} retries)"
        )
        if self.live:
            print(f"\r{text}\033[K", end="", file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)

    def synced(self, summary: SyncSummary) -> None:
        """The sync summary block."""
        self._end_live_line()
        print("sync finished")
        for line in summary.lines():
            print(line)
        sys.stdout.flush()

    def models_built(self, result: BuildResult) -> None:
        """One line: what the model build did."""
        print(f"models rebuilt: {result.summary()}", flush=True)

    def published(self, result: PublishResult) -> None:
        """One line: where the analytics file that BI tools read now is."""
        print(result.summary(), flush=True)

    def failed(self, text: str) -> None:
        """The failure (or rejected-records) summary, for the cron mail."""
        self._end_live_line()
        print(text, file=self.stream, flush=True)

    def _end_live_line(self) -> None:
        if self.live and self.last:
            print(file=self.stream, flush=True)
            self.last = 0.0


def register(subparsers: Any) -> None:
    """Add `sync` and `demo` to the CLI."""
    sync = subparsers.add_parser(
        "sync",
        help="read what changed in Quorum's SendSMS and merge it into the warehouse",
        description="Read every SendSMS record changed since the saved cursor (minus the lag "
        "window) and merge it into quorum_raw, then rebuild the SQL models. " + EXIT_CODES,
    )
    add_base_url_argument(sync)
    add_database_argument(sync)
    add_publish_argument(sync)
    add_destination_argument(sync)
    sync.add_argument("--since", help="start of the first sync, ISO date or date-time")
    sync.add_argument(
        "--full-refresh",
        action="store_true",
        help="drop the raw tables and the cursor, then read everything from --since",
    )
    sync.add_argument("--no-models", action="store_true", help="skip rebuilding the SQL models")
    sync.add_argument("--sql-dir", type=Path, help="the model directory (default: sql/)")
    sync.set_defaults(handler=sync_command)

    demo = subparsers.add_parser(
        "demo",
        help="simulator -> sync -> DuckDB -> SQL models -> report, all on this machine",
    )
    demo.add_argument("--records", type=int, default=20_000, help="size of the simulated world")
    demo.add_argument("--seed", type=int, default=2026, help="seed of the simulated world")
    demo.add_argument(
        "--database",
        default=str(PROJECT_ROOT / "data" / "demo.duckdb"),
        help="DuckDB file the demo writes (recreated on every demo run)",
    )
    demo.set_defaults(handler=demo_command)


def sync_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms sync`."""
    config = load_sync_config(
        base_url=args.base_url,
        database=args.database,
        destination=args.destination,
        since=args.since,
        full_refresh=args.full_refresh,
        build_models=not args.no_models,
        publish_database=args.publish_database,
        sql_dir=args.sql_dir,
    )
    return run_nightly(config, TerminalReporter()).exit_code


def demo_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms demo`: the whole product on a simulated Quorum, on this machine."""
    from pipelines.simulator import SimulatorServer, World
    from pipelines.warehouse.html_report import write_html_report
    from pipelines.warehouse.report import render_terminal_report

    database = Path(args.database)
    _remove_database(database)
    print(f"simulating a Quorum account with {args.records:,} texts (seed {args.seed}) ...")
    world = World(seed=args.seed, n_records=args.records)
    with SimulatorServer(world, username="demo", api_key="demo-key") as simulator:
        os.environ["QUORUM_USERNAME"] = "demo"
        os.environ["QUORUM_API_KEY"] = "demo-key"
        config = load_sync_config(base_url=simulator.base_url, database=str(database))
        run_nightly(config, TerminalReporter())
    published = config.publish_database
    print()
    print(render_terminal_report(published))
    html = database.with_name(database.stem + "-report.html")
    write_html_report(published, html)
    print(
        f"\nPoint a BI tool (read-only) at {published}: it holds every mart and is replaced "
        "atomically after each nightly build, so dashboards can keep it open "
        "(docs/bi-tools.md)."
    )
    print(
        f"The warehouse {database} (raw tables, dlt state in {pipelines_dir_for(database)}, run "
        "history) is the job's private working file."
    )
    print(f"The same report with charts, for a browser: {html}")
    return 0


def _remove_database(database: Path) -> None:
    from pipelines.warehouse.publish import default_publish_path

    published = default_publish_path(database)
    for path in (database, database.with_name(database.name + ".wal"), published):
        path.unlink(missing_ok=True)
    shutil.rmtree(pipelines_dir_for(database), ignore_errors=True)

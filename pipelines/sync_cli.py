"""`quorum-sms sync` and `quorum-sms demo`: the command-line face of `pipelines.sync`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pipelines.config import PROJECT_ROOT, SyncConfig, load_sync_config, use_project_config
from pipelines.quorum import SourceObserver
from pipelines.sync import SyncSummary, run_sync


class Progress:
    """Prints progress to stderr: a live line on a terminal, a line every 15 s in a log."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.interval = 0.5 if self.live else 15.0
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, observer: SourceObserver) -> None:
        """Report the pages and records read so far (rate-limited)."""
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        retries = observer.client.stats.retries if observer.client is not None else 0
        elapsed = max(now - self.started, 1e-6)
        text = (
            f"  read {observer.records:,} records in {observer.pages:,} pages "
            f"({observer.records / elapsed:,.0f}/s, {retries} retries)"
        )
        if self.live:
            print(f"\r{text}\033[K", end="", file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)

    def done(self) -> None:
        """End the live line."""
        if self.live and self.last:
            print(file=self.stream, flush=True)


def register(subparsers: Any) -> None:
    """Add `sync` and `demo` to the CLI."""
    sync = subparsers.add_parser(
        "sync",
        help="read what changed in Quorum's SendSMS and merge it into the warehouse",
        description="Read every SendSMS record changed since the saved cursor (minus the lag "
        "window) and merge it into quorum_raw, then rebuild the SQL models. Exit codes: 0 done, "
        "2 bad configuration or usage, 3 authorization failure, 4 the API kept failing, "
        "1 anything else.",
    )
    sync.add_argument("--base-url", help="API scheme and host (default: config/QUORUM_BASE_URL)")
    sync.add_argument("--database", help="DuckDB file (default: config/QUORUM_DATABASE)")
    sync.add_argument("--since", help="start of the first sync, ISO date or date-time")
    sync.add_argument(
        "--full-refresh",
        action="store_true",
        help="drop the raw tables and the cursor, then read everything from --since",
    )
    sync.add_argument("--no-models", action="store_true", help="skip rebuilding the SQL models")
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


def print_summary(title: str, summary: SyncSummary, stream: TextIO | None = None) -> None:
    """Print a sync summary block."""
    stream = stream or sys.stdout
    print(title, file=stream)
    for line in summary.lines():
        print(line, file=stream)
    stream.flush()


def _run_and_report(config: SyncConfig) -> SyncSummary:
    progress = Progress()
    print(f"quorum-sms sync: {config.base_url} -> {config.database}", file=sys.stderr, flush=True)
    try:
        summary = run_sync(config, on_progress=progress)
    finally:
        progress.done()
    print_summary("sync finished", summary)
    if config.build_models and config.destination == "duckdb":
        from pipelines.warehouse.runner import build_models

        result = build_models(config.database)
        print(f"models rebuilt: {result}", flush=True)
    return summary


def sync_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms sync`."""
    config = load_sync_config(
        base_url=args.base_url,
        database=args.database,
        since=args.since,
        full_refresh=args.full_refresh,
        build_models=not args.no_models,
    )
    _run_and_report(config)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms demo`: the whole product on a simulated Quorum, on this machine."""
    from pipelines.simulator import SimulatorServer, World
    from pipelines.sync import pipelines_dir_for
    from pipelines.warehouse.report import render_terminal_report

    use_project_config()
    database = Path(args.database)
    _remove_database(database)
    print(f"simulating a Quorum account with {args.records:,} texts (seed {args.seed}) ...")
    world = World(seed=args.seed, n_records=args.records)
    with SimulatorServer(world, username="demo", api_key="demo-key") as simulator:
        os.environ["QUORUM_USERNAME"] = "demo"
        os.environ["QUORUM_API_KEY"] = "demo-key"
        config = load_sync_config(base_url=simulator.base_url, database=str(database))
        _run_and_report(config)
    print()
    print(render_terminal_report(database))
    print(f"\nThe warehouse is {database}; its dlt state is in {pipelines_dir_for(database)}.")
    return 0


def _remove_database(database: Path) -> None:
    import shutil

    from pipelines.sync import pipelines_dir_for

    for path in (database, database.with_name(database.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(pipelines_dir_for(database), ignore_errors=True)

"""`quorum-sms sync` and `quorum-sms demo`: the command-line face of `pipelines.sync`."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pipelines.config import (
    PROJECT_ROOT,
    SyncConfig,
    load_pii_settings,
    load_sync_config,
    load_webhook_url,
    use_project_config,
)
from pipelines.errors import QuorumSmsError
from pipelines.ops.history import RunCounts, RunRecorder
from pipelines.ops.privacy import make_transform
from pipelines.quorum import SourceObserver
from pipelines.quorum.normalize import Transform
from pipelines.sync import SyncSummary, database_lock, run_sync


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


class _Watch:
    """Forwards progress and keeps the source's observer, so a failed run can say how far it got."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.observer: SourceObserver | None = None

    def __call__(self, observer: SourceObserver) -> None:
        self.observer = observer
        self.progress(observer)

    def counts(self) -> RunCounts:
        """What the run read before it stopped."""
        observer = self.observer
        if observer is None:
            return RunCounts()
        client = observer.client
        return RunCounts(
            records_fetched=observer.records,
            pages=observer.pages,
            requests=client.stats.requests if client is not None else None,
            retries=client.stats.retries if client is not None else None,
        )


def _summary_counts(summary: SyncSummary) -> RunCounts:
    return RunCounts(
        records_fetched=summary.records_fetched,
        records_loaded=summary.records_new + summary.records_updated,
        records_new=summary.records_new,
        records_updated=summary.records_updated,
        events_loaded=summary.events_loaded,
        pages=summary.pages,
        requests=summary.requests,
        retries=summary.retries,
        paging_mode=summary.paging_mode,
        cursor_before=summary.cursor_before,
        cursor_after=summary.cursor_after,
    )


def failure_text(config: SyncConfig, error: BaseException, run_id: str | None) -> str:
    """The failure summary for stderr (a cron mail) and the webhook; never holds the key."""
    from pipelines.quorum.client import redact

    code = error.exit_code if isinstance(error, QuorumSmsError) else 1
    lines = [
        f"quorum-sms sync FAILED on {socket.gethostname()} at "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')} (exit code {code})",
        f"  database  {config.database}",
        f"  API       {config.base_url}",
    ]
    if run_id:
        lines.append(f"  run       {run_id} (quorum_ops.sync_runs; `quorum-sms status`)")
    lines.append(f"  error     {' '.join(str(error).split()) or type(error).__name__}")
    return redact("\n".join(lines))


def _report_failure(config: SyncConfig, error: BaseException, run_id: str | None) -> None:
    from pipelines.errors import NotifyError
    from pipelines.ops.notify import post_webhook

    text = failure_text(config, error, run_id)
    print(text, file=sys.stderr, flush=True)
    try:
        webhook = load_webhook_url()
    except QuorumSmsError:
        webhook = None  # a bad webhook setting is reported by `quorum-sms check`
    if webhook:
        try:
            post_webhook(webhook, text)
        except NotifyError as notify_error:
            print(f"warning: {notify_error}", file=sys.stderr, flush=True)


def _run_and_report(config: SyncConfig) -> SyncSummary:
    """Run the sync under the lock, with the run history, the privacy policy and alerts.

    Every run leaves a row in quorum_ops.sync_runs (DuckDB); a failed run prints a summary fit
    for a cron mail and posts it to the failure webhook, then re-raises for the exit code.
    """
    run_id: str | None = None
    try:
        transform = make_transform(load_pii_settings())
        print(
            f"quorum-sms sync: {config.base_url} -> {config.database}", file=sys.stderr, flush=True
        )
        with database_lock(config.database, config.lock_wait_seconds):
            recorder: RunRecorder | None = None
            if config.destination == "duckdb":
                recorder = RunRecorder(config.database, "sync")
                recorder.start(cursor_before=_local_cursor(config))
                run_id = recorder.run_id
                if recorder.interrupted_marked:
                    print(
                        f"note: {recorder.interrupted_marked} earlier run(s) ended without "
                        "recording it (killed); marked interrupted in the run history",
                        file=sys.stderr,
                        flush=True,
                    )
            summary = _sync_recorded(config, recorder, transform)
    except BaseException as error:
        if not isinstance(error, KeyboardInterrupt):
            _report_failure(config, error, run_id)
        raise
    return summary


def _local_cursor(config: SyncConfig) -> str | None:
    from pipelines.sync import make_pipeline, saved_cursor

    try:
        return saved_cursor(make_pipeline(config))
    except Exception:
        return None  # the sync itself reports a broken pipeline folder


def _sync_recorded(
    config: SyncConfig, recorder: RunRecorder | None, transform: Transform | None
) -> SyncSummary:
    progress = Progress()
    watch = _Watch(progress)
    try:
        try:
            summary = run_sync(config, on_progress=watch, transform=transform)
        finally:
            progress.done()
    except BaseException as error:
        if recorder is not None:
            interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
            recorder.finish(
                "interrupted" if interrupted else "failed",
                watch.counts(),
                error=str(error) or type(error).__name__,
                exit_code=error.exit_code if isinstance(error, QuorumSmsError) else 1,
            )
        raise
    if recorder is not None:
        recorder.finish("succeeded", _summary_counts(summary))
    print_summary("sync finished", summary)
    if config.build_models and config.destination == "duckdb":
        from pipelines.warehouse.runner import build_models

        try:
            result = build_models(config.database)
        except QuorumSmsError as error:
            if recorder is not None:
                recorder.finish(
                    "failed",
                    _summary_counts(summary),
                    error=f"the data was loaded and the cursor moved, but the SQL models "
                    f"failed: {error}",
                    exit_code=error.exit_code,
                )
            raise
        print(f"models rebuilt: {result.summary()}", flush=True)
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
    from pipelines.warehouse.html_report import write_html_report
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
    html = database.with_name(database.stem + "-report.html")
    write_html_report(database, html)
    print(f"\nThe warehouse is {database}; its dlt state is in {pipelines_dir_for(database)}.")
    print(f"The same report with charts, for a browser: {html}")
    return 0


def _remove_database(database: Path) -> None:
    import shutil

    from pipelines.sync import pipelines_dir_for

    for path in (database, database.with_name(database.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(pipelines_dir_for(database), ignore_errors=True)

"""`quorum-sms send|check|status|reconcile`: parse, call `pipelines.ops` (or the
orchestrator, for reconcile), print."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.commands.common import (
    add_base_url_argument,
    add_database_argument,
    add_destination_argument,
)
from pipelines.errors import ConfigError

EXIT_CODES = (
    "Exit codes: 0 done, 2 bad configuration or usage, 3 authorization failure, 4 the API "
    "kept failing or a send's outcome is unknown, 1 anything else."
)


def register(subparsers: Any) -> None:
    """Add `send`, `check`, `status` and `reconcile` to the CLI."""
    send = subparsers.add_parser(
        "send",
        help="text one supporter (never retried when the outcome is unknown)",
        description="Text one supporter through POST /api/sendsms/send_individual_sms/. A send "
        "whose outcome is unknown (timeout, 5xx) is never retried: texting a supporter twice "
        "is worse than failing. " + EXIT_CODES,
    )
    send.add_argument("--supporter-id", type=int, required=True, help="the supporter's id")
    send.add_argument("--message", required=True, help="the text to send")
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and show the segments and encoding, send nothing (no request at all)",
    )
    add_base_url_argument(send)
    send.set_defaults(handler=send_command)

    check = subparsers.add_parser(
        "check",
        help="validate settings, credentials and the database; say what a sync would do",
        description="Validate the settings, prove the credentials with one small request, "
        "check the database is writable and describe the next sync. Changes nothing. "
        + EXIT_CODES,
    )
    add_base_url_argument(check)
    add_database_argument(check)
    check.set_defaults(handler=check_command)

    status = subparsers.add_parser(
        "status", help="the last runs and how fresh the data is (from the run history)"
    )
    add_database_argument(status)
    add_destination_argument(status)
    status.add_argument("--limit", type=int, default=10, help="how many runs to show")
    status.set_defaults(handler=status_command)

    reconcile = subparsers.add_parser(
        "reconcile",
        help="mark records deleted at the source (weekly); the marts leave them out",
        description="Read the id of every live record, mark warehouse records the API no "
        "longer serves with source_deleted_at, and rebuild the SQL models. Holds the same lock "
        "as the sync. " + EXIT_CODES,
    )
    add_base_url_argument(reconcile)
    add_database_argument(reconcile)
    add_destination_argument(reconcile)
    reconcile.add_argument("--no-models", action="store_true", help="skip rebuilding the models")
    reconcile.add_argument(
        "--force",
        action="store_true",
        help="mark even when more than half of the warehouse seems deleted",
    )
    reconcile.set_defaults(handler=reconcile_command)


# -- send -------------------------------------------------------------------------------------


def send_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms send`."""
    from pipelines.ops.send import plan_send, send

    plan = plan_send(args.supporter_id, args.message, base_url=args.base_url)
    if args.dry_run:
        print(
            f"dry run: would text supporter {plan.supporter_id} ({len(plan.message)} "
            f"characters): {plan.segments.describe()}. Nothing was sent.",
            flush=True,
        )
        return 0
    result = send(plan)
    billed = result.segments_billed
    print(
        f"sent: texted supporter {plan.supporter_id} at {result.to_number or 'their number'} "
        f"from {result.from_number or 'the default number'}; new SendSMS record id "
        f"{result.record_id}; {billed} segment{'s' if billed != 1 else ''} billed "
        f"({plan.segments.encoding}).",
        flush=True,
    )
    if isinstance(billed, int) and billed != plan.segments.segments:
        print(
            f"note: the API billed {billed} segments where {plan.segments.segments} were "
            "expected; the API's count is the one charged.",
            file=sys.stderr,
            flush=True,
        )
    return 0


# -- check ------------------------------------------------------------------------------------


def check_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms check`."""
    from pipelines.ops.preflight import run_checks

    report = run_checks(base_url=args.base_url, database=args.database)
    width = max(len(r.name) for r in report.results)
    for result in report.results:
        mark = "ok  " if result.ok else "FAIL"
        print(f"  {mark} {result.name:<{width}}  {result.detail}", flush=True)
    if report.plan:
        print(report.plan, flush=True)
    if not report.ok:
        print("check failed: fix the FAIL lines above before the next sync.", file=sys.stderr)
    return report.exit_code


# -- status -----------------------------------------------------------------------------------


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hours_since(value: Any) -> str:
    if not isinstance(value, datetime):
        return "never"
    hours = (datetime.now(UTC) - value).total_seconds() / 3600
    return f"{hours:,.1f} h ago"


def status_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms status`."""
    from pipelines.config import load_run_settings
    from pipelines.ops.history import freshness, pid_alive, recent_runs
    from pipelines.target import model_target, target_label

    run_settings, database = load_run_settings(args.database, args.destination)
    target = model_target(run_settings.destination, database)
    if isinstance(target, Path) and not target.is_file():
        raise ConfigError(
            f"There is no database at {database} yet; run `quorum-sms sync` first (or point "
            "--database / QUORUM_DATABASE at the right file)."
        )
    runs = recent_runs(target, limit=max(args.limit, 1))
    print(f"quorum-sms status: {target_label(target)}")
    if not runs:
        print("  no runs recorded yet")
    for run in runs:
        status = run["status"]
        if status == "running" and not pid_alive(run["pid"]):
            status = "interrupted?"  # the next run marks it; its process is gone
        loaded = run["records_loaded"] if run["records_loaded"] is not None else "-"
        deleted = run["records_deleted"]
        what = f"{loaded} loaded" if run["command"] == "sync" else f"{deleted} marked deleted"
        line = (
            f"  {_when(run['started_at'])}  {run['command']:<9} {status:<12} "
            f"{run['records_fetched'] if run['records_fetched'] is not None else '-'} fetched, "
            f"{what}"
        )
        if run.values.get("records_unchanged"):
            line += f", {run['records_unchanged']} unchanged (read again as stored)"
        if run.values.get("records_rejected"):
            line += f", {run['records_rejected']} rejected (quorum_raw.sendsms_rejects)"
            if run.values.get("rejected_sample"):
                line += f"\n      rejected: {str(run['rejected_sample'])[:300]}"
        if run["error"]:
            line += f"\n      error: {str(run['error'])[:300]}"
        print(line)
    fresh = freshness(target)
    if fresh is None:
        print("freshness: the models have not been built yet (`quorum-sms models`)")
    else:
        print(
            "freshness: last successful sync "
            f"{_when(fresh.get('last_successful_sync_at'))} "
            f"({_hours_since(fresh.get('last_successful_sync_at'))}); newest `updated` loaded "
            f"{_when(fresh.get('newest_updated_loaded'))} "
            f"({_hours_since(fresh.get('newest_updated_loaded'))})"
        )
        if fresh.get("rejected_records"):
            print(
                f"rejected: {fresh['rejected_records']} record(s) set aside by the last "
                "successful sync (quorum_raw.sendsms_rejects); they are retried every run"
            )
    sys.stdout.flush()
    return 0


# -- reconcile --------------------------------------------------------------------------------


def reconcile_command(args: argparse.Namespace) -> int:
    """Handle `quorum-sms reconcile`."""
    from pipelines.config import load_sync_config
    from pipelines.orchestrator import run_reconcile
    from pipelines.target import model_target, target_label

    config = load_sync_config(
        base_url=args.base_url,
        database=args.database,
        destination=args.destination,
        build_models=not args.no_models,
    )
    target = model_target(config.run.destination, config.database)
    print(
        f"quorum-sms reconcile: {config.source.base_url} -> {target_label(target)}",
        file=sys.stderr,
    )
    done = run_reconcile(config, force=args.force)
    result = done.result
    print("reconcile finished")
    print(f"  live records at the source   {result.live_at_source:,}")
    print(f"  records in the warehouse     {result.in_warehouse:,}")
    print(f"  newly marked deleted         {result.newly_deleted:,}")
    if result.deleted_ids_sample:
        shown = ", ".join(str(i) for i in result.deleted_ids_sample)
        print(f"    e.g. ids                   {shown}")
    print(f"  served again, un-marked      {result.undeleted:,}")
    print(f"  marked deleted earlier       {result.already_deleted:,}")
    print(f"  requests                     {result.requests:,} ({result.retries} retries)")
    if done.notes:
        print(f"  note                         {'; '.join(done.notes)}")
    if done.models is not None:
        print(f"models rebuilt: {done.models.summary()}")
    if done.published is not None:
        print(done.published.summary())
    sys.stdout.flush()
    return 0

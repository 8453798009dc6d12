"""The pre-flight check (`quorum-sms check`): prove a sync would work before cron finds out.

Each step is a `CheckResult`; a failed step does not stop the later ones that do not depend
on it, so one run lists every problem. Nothing is written to the warehouse.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from pipelines.config import (
    SyncConfig,
    load_pii_settings,
    load_sync_config,
    load_webhook_url,
)
from pipelines.errors import BusyError, QuorumSmsError
from pipelines.lock import database_lock
from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.redaction import redact
from pipelines.sync import make_pipeline, saved_cursor


@dataclass(frozen=True)
class CheckResult:
    """One step of the check: its name, whether it passed, and what it found."""

    name: str
    ok: bool
    detail: str
    exit_code: int = 0


@dataclass
class CheckReport:
    """Every step, plus the plain-words plan of the next sync when the settings are valid."""

    results: list[CheckResult]
    plan: str | None = None

    @property
    def ok(self) -> bool:
        """True when every step passed."""
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        """The exit code of the first failed step (as a sync would exit), else 0."""
        return next((r.exit_code for r in self.results if not r.ok), 0)


def _fail(name: str, error: QuorumSmsError) -> CheckResult:
    return CheckResult(name, False, redact(" ".join(str(error).split())), error.exit_code)


def run_checks(*, base_url: str | None = None, database: str | None = None) -> CheckReport:
    """Validate the settings, the credentials, the database and describe the next sync."""
    results: list[CheckResult] = []
    try:
        config = load_sync_config(base_url=base_url, database=database)
        pii = load_pii_settings(config.run)
        webhook = load_webhook_url(config.run)
    except QuorumSmsError as error:
        return CheckReport([_fail("settings", error)])
    hashed = [g for g, c in pii.choices.items() if c != "keep"]
    results.append(
        CheckResult(
            "settings",
            True,
            f"valid; API {config.source.base_url} as user {config.source.username!r}; "
            "personal data: "
            + (", ".join(f"{g} {pii.choices[g]}" for g in hashed) if hashed else "kept as is")
            + f"; failure webhook {'set' if webhook else 'not set'}",
        )
    )
    results.append(_check_credentials(config))
    results.append(_check_database(config))
    return CheckReport(results, plan=describe_next_sync(config))


def _check_credentials(config: SyncConfig) -> CheckResult:
    try:
        with QuorumClient(
            config.source.base_url,
            config.source.username or "",
            config.source.api_key or "",
            timeout=min(config.source.timeout, 30.0),
            max_attempts=min(config.source.max_attempts, 3),
            max_total_wait=30.0,
            backoff_initial=config.source.backoff_initial,
        ) as client:
            body = client.get_json(settings.LIST_PATH, [("limit", 1)])
    except QuorumSmsError as error:
        return _fail("credentials", error)
    total = body.get("meta", {}).get("total_count") if isinstance(body, dict) else None
    shown = f"{total:,}" if isinstance(total, int) else "an unknown number of"
    return CheckResult("credentials", True, f"accepted; the account holds {shown} SendSMS records")


def _check_database(config: SyncConfig) -> CheckResult:
    if not config.is_duckdb:
        return CheckResult(
            "database",
            True,
            f"destination {config.run.destination} (checked by dlt when it loads)",
        )
    database = config.database
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=database.parent, prefix=".quorum-sms-check-"):
            pass
    except OSError as error:
        return CheckResult(
            "database",
            False,
            f"cannot write in {database.parent} ({error.strerror}); fix the folder's "
            "permissions or point QUORUM_DATABASE / --database elsewhere",
            2,
        )
    if not database.exists():
        return CheckResult("database", True, f"{database} will be created by the first sync")
    if not os.access(database, os.W_OK):
        return CheckResult("database", False, f"{database} is not writable by this user", 2)
    try:
        with database_lock(database, 0):
            connection = duckdb.connect(str(database))
            connection.close()
    except BusyError:
        return CheckResult(
            "database", True, f"{database} is writable; a run is using it right now"
        )
    except duckdb.Error as error:
        return CheckResult(
            "database",
            False,
            f"DuckDB cannot open {database} for writing: {str(error).splitlines()[0]}; if a BI "
            "tool holds it open, close it before the sync runs",
            1,
        )
    return CheckResult("database", True, f"{database} is writable")


def describe_next_sync(config: SyncConfig) -> str:
    """In plain words: from which cursor, into which database, what the sync would read."""
    cursor: str | None = None
    if config.is_duckdb and config.database.exists():
        pipeline = make_pipeline(config)
        try:
            # the destination's state is the truth (the local folder may be gone); only
            # read it when no run is using the database
            with database_lock(config.database, 0):
                pipeline.sync_destination()
        except BusyError:
            pass
        except Exception:
            # a check reports; odd local state must not crash it (the local cursor is used)
            pass
        cursor = saved_cursor(pipeline)
    target = (
        f"the DuckDB file {config.database}"
        if config.is_duckdb
        else f"the {config.run.destination} warehouse (dataset {settings.RAW_DATASET})"
    )
    how = (
        "a full scan of every record, the cursor applied on this side"
        if config.source.force_full_scan
        else "keyset paging on `updated` (falling back to a full scan if the API refuses it)"
    )
    if cursor is None:
        what = (
            f"a first sync: every SendSMS record changed since {config.source.initial_value} (the "
            "initial_value; no saved cursor yet)"
        )
    else:
        try:
            begin = (
                datetime.fromisoformat(cursor) - timedelta(seconds=config.source.lag_seconds)
            ).isoformat()
        except ValueError:
            begin = f"{config.source.lag_seconds:g} s before {cursor}"
        what = (
            f"an incremental sync: records changed since {begin} (the saved cursor "
            f"{cursor} minus the {config.source.lag_seconds:g} s lag window)"
        )
    models = "then rebuild the SQL models" if config.build_models else "without the SQL models"
    return (
        f"A sync now would read {what}, from {config.source.base_url}, by {how}, in pages of "
        f"{config.source.page_size}, and merge them into {target}, {models}."
    )

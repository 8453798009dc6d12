"""The pre-flight check (`quorum-sms check`): prove a sync would work before cron finds out.

Each step is a `CheckResult`; a failed step does not stop the later ones that do not depend
on it, so one run lists every problem. Nothing is written: no folder, no lock file, no dlt
working folder; the warehouse is only opened read-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
from dlt.pipeline.state_sync import decompress_state

from pipelines.config import (
    SyncConfig,
    load_pii_settings,
    load_sync_config,
    load_webhook_url,
)
from pipelines.dbfile import location_problem
from pipelines.errors import QuorumSmsError
from pipelines.lock import lock_is_held
from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.redaction import redact


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
    # Reads only: no folder, no lock file, no dlt working folder is created here. That the
    # path holds a usable DuckDB file (or nothing yet) was checked with the settings.
    if not config.is_duckdb:
        return CheckResult(
            "database",
            True,
            f"destination {config.run.destination} (checked by dlt when it loads)",
        )
    database = config.database
    problem = location_problem(database)
    if problem:
        return CheckResult(
            "database",
            False,
            f"{database} cannot be written: {problem}; fix the folder's permissions or point "
            "QUORUM_DATABASE / --database elsewhere",
            2,
        )
    if not database.exists():
        return CheckResult("database", True, f"{database} will be created by the first sync")
    if not os.access(database, os.W_OK):
        return CheckResult("database", False, f"{database} is not writable by this user", 2)
    if lock_is_held(database):
        return CheckResult(
            "database", True, f"{database} is writable; a run is using it right now"
        )
    return CheckResult("database", True, f"{database} is writable")


def committed_cursor(config: SyncConfig) -> str | None:
    """The cursor of the last committed load, read from the DuckDB file without writing.

    The destination's state is the truth (the local dlt folder may be gone); opening the
    file read-only leaves it, its WAL and dlt's folder as they are.
    """
    if not config.is_duckdb or not config.database.exists():
        return None
    try:
        with duckdb.connect(str(config.database), read_only=True) as connection:
            row = connection.execute(
                # only states whose load completed (status 0), as dlt's own restore does
                f"select s.state from {settings.RAW_DATASET}._dlt_pipeline_state as s "
                f"join {settings.RAW_DATASET}._dlt_loads as l on l.load_id = s._dlt_load_id "
                "where s.pipeline_name = ? and l.status = 0 order by s.version desc limit 1",
                [settings.PIPELINE_NAME],
            ).fetchone()
    except duckdb.Error:
        return None  # no load yet, or a run holds the file: described as a first sync
    if row is None:
        return None
    state = decompress_state(row[0])
    try:
        value = state["sources"]["quorum"]["resources"][settings.SENDSMS_TABLE]["incremental"][
            settings.CURSOR_FIELD
        ]["last_value"]
    except (KeyError, TypeError):
        return None
    return None if value is None else str(value)


def describe_next_sync(config: SyncConfig) -> str:
    """In plain words: from which cursor, into which database, what the sync would read."""
    cursor = committed_cursor(config)
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

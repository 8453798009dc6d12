"""The nightly run, and reconcile: one lock, then an explicit sequence of steps.

`run_nightly` takes the database lock once and, inside it, starts the run history, then runs
`NIGHTLY_STEPS` in order (sync, record the sync, models; later steps such as publishing slot
into that tuple), then finishes the history. Whatever step fails, the failure is recorded in
the history once and alerted once (the summary for stderr/cron mail through the reporter,
and the webhook), and the original error is re-raised unchanged for the exit code.

Command modules call this and print; nothing here prints or imports a command module. What
the command shows goes through a `RunReporter`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.config import SyncConfig, load_pii_settings, load_webhook_url
from pipelines.errors import EXIT_LOADED_WITH_REJECTS, NotifyError, QuorumSmsError
from pipelines.interrupts import Interrupted, interruption, raise_if_received
from pipelines.lock import warehouse_lock
from pipelines.ops.history import RunCounts, RunRecorder
from pipelines.ops.notify import post_webhook
from pipelines.ops.privacy import make_policy
from pipelines.ops.reconcile import ReconcileResult, apply_deletions, read_live_ids
from pipelines.private_files import owner_only_umask, restrict
from pipelines.process_memory import release_free_memory
from pipelines.quorum import SourceObserver
from pipelines.quorum.normalize import PersonalDataPolicy
from pipelines.quorum.paging import PagingStats
from pipelines.quorum.settings import RAW_DATASET
from pipelines.redaction import redact
from pipelines.sync import SyncSummary, check_start, make_pipeline, run_sync, saved_cursor
from pipelines.target import builds_models, warehouse_target
from pipelines.warehouse.database import allow_vacuum, set_connection_defaults
from pipelines.warehouse.publish import PublishResult, publish_analytics, remove_stale_temporaries
from pipelines.warehouse.publish_prefetch import PublishedCopy
from pipelines.warehouse.runner import BuildResult, build_models


class RunReporter:
    """What a run tells its command as it goes; the command prints. Defaults do nothing."""

    def started(self, config: SyncConfig) -> None:
        """The run begins (settings valid, lock not yet taken)."""

    def note(self, text: str) -> None:
        """Something worth a line on stderr that is not an error."""

    def progress(self, observer: SourceObserver) -> None:
        """A page was read (called from reader threads; rate-limit there)."""

    def synced(self, summary: SyncSummary) -> None:
        """The sync step finished and its load is committed."""

    def models_built(self, result: BuildResult) -> None:
        """The SQL models were rebuilt."""

    def published(self, result: PublishResult) -> None:
        """The analytics file that BI tools read was replaced by the new build."""

    def failed(self, text: str) -> None:
        """The run failed, or loaded with records set aside (exit 5); `text` is the redacted
        summary for the cron mail, also posted to the webhook."""


@dataclass
class RunResult:
    """What a nightly run did; each part is None when its step did not run."""

    config: SyncConfig
    run_id: str | None = None
    summary: SyncSummary | None = None
    models: BuildResult | None = None
    published: PublishResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0, or 5 when the run loaded what it could but records are set aside as rejects."""
        if self.summary is not None and self.summary.records_rejected:
            return EXIT_LOADED_WITH_REJECTS
        return 0


@dataclass
class _Run:
    """The state the steps share."""

    config: SyncConfig
    reporter: RunReporter
    result: RunResult
    policy: PersonalDataPolicy | None = None
    #: the DuckDB file or the PostgreSQL credentials string (history, models, lock)
    target: str | Path = ""
    recorder: RunRecorder | None = None
    observer: SourceObserver = field(default_factory=SourceObserver)
    #: the history row already says the data was loaded (a later step failed)
    loaded: bool = False
    #: the step running now, for the history row of a run that stops in it
    step: str = "start"
    #: the published file, copied in the background for the publish step to start from
    published_copy: PublishedCopy | None = None


Step = Callable[[_Run], None]


def _sync_step(run: _Run) -> None:
    run.observer.on_page = run.reporter.progress
    run.result.summary = run_sync(
        run.config, observer=run.observer, policy=run.policy, run_id=run.result.run_id
    )
    run.reporter.synced(run.result.summary)


def _record_sync_step(run: _Run) -> None:
    # before the models: `sync_freshness` reads this row
    if run.recorder is not None and run.result.summary is not None:
        run.recorder.finish(
            "succeeded", _summary_counts(run.result.summary), exit_code=run.result.exit_code
        )
        run.loaded = True


def _models_step(run: _Run) -> None:
    if run.config.build_models and builds_models(run.config.run.destination):
        run.reporter.note("building the SQL models")
        run.result.models = build_models(
            run.target, run.config.sql_dir, full_refresh=run.config.full_refresh
        )
        run.reporter.models_built(run.result.models)


def _publish_step(run: _Run) -> None:
    # only a build that just passed its checks is published; readers keep the last good one
    if run.result.models is not None and run.config.is_duckdb:
        run.result.published = publish_analytics(
            run.config.database, run.config.publish_database, prefetched=run.published_copy
        )
        run.reporter.published(run.result.published)


#: The nightly run after the run history has started, in order.
NIGHTLY_STEPS: tuple[Step, ...] = (_sync_step, _record_sync_step, _models_step, _publish_step)

#: What each step is called in the history row of a run interrupted in it.
STEP_NAMES: dict[Step, str] = {
    _sync_step: "the sync (reading or loading)",
    _record_sync_step: "recording the sync",
    _models_step: "the SQL model build",
    _publish_step: "publishing the analytics file",
}


def run_nightly(
    config: SyncConfig,
    reporter: RunReporter | None = None,
    *,
    steps: tuple[Step, ...] = NIGHTLY_STEPS,
) -> RunResult:
    """Run the nightly sequence under the database lock; see the module docstring.

    A signal (SIGINT, SIGTERM) at any step is recorded as `interrupted` and raised as
    `Interrupted`, whatever error the code it landed in made of it.

    Raises:
        QuorumSmsError: the first step's error, unchanged (after history and alert).
        Interrupted: a signal stopped the run (recorded, not alerted).
    """
    run = _Run(config, reporter or RunReporter(), RunResult(config))
    try:
        run.policy = make_policy(load_pii_settings(config.run))
        run.target = warehouse_target(config.run.destination, config.database)
        # the model build and the publish copy open their own DuckDB connections: same ceiling;
        # no row groups merged until `_choose_compaction` has read the history (a checkpoint
        # of any writing connection, the history's own, would merge them)
        set_connection_defaults(
            memory_limit=config.run.duckdb_memory_limit,
            threads=config.run.duckdb_threads,
            vacuum=False,
        )
        run.reporter.started(config)
        with owner_only_umask(), warehouse_lock(
            run.target, RAW_DATASET, config.run.lock_wait_seconds
        ), contextlib.ExitStack() as cleanup:
            if config.is_duckdb:
                restrict(config.database)  # what older versions left readable by others
            _remove_stale_publishes(run)
            # a --since that would skip records is refused before the history row is written
            check_start(config)
            _start_history(run)
            _choose_compaction(run)
            if _publish_step in steps:
                run.published_copy = _start_published_copy(run)
                if run.published_copy is not None:
                    cleanup.callback(run.published_copy.close)
            for step in steps:
                # a signal dlt took during its load (it finishes the load, then returns)
                # stops the run here, between steps
                raise_if_received()
                run.step = STEP_NAMES.get(step, getattr(step, "__name__", "a step"))
                step(run)
                # what a step freed (pages, a merge's buffers) goes back to the OS before the
                # next step allocates: the run's peak is one step's, not their sum
                release_free_memory()
            raise_if_received()
            run.step = "recording the run's end"
            if run.recorder is not None and not run.loaded:
                run.recorder.finish(
                    "succeeded", _summary_counts(run.result.summary),
                    exit_code=run.result.exit_code,
                )
    except BaseException as error:
        stopped = interruption(error)
        _record_failure_safely(run, stopped or error)
        if stopped is not None:
            if stopped is error:
                raise
            raise stopped from error
        _alert(run, error)
        raise
    if run.result.exit_code == EXIT_LOADED_WITH_REJECTS:
        _announce(run, rejects_text(run.config, run.result))
    return run.result


def _remove_stale_publishes(run: _Run) -> None:
    if not run.config.is_duckdb:
        return
    for folder in remove_stale_temporaries(run.config.publish_database):
        run.reporter.note(f"removed {folder}, left behind by a run killed while publishing")


def _start_published_copy(run: _Run) -> PublishedCopy | None:
    # the publish's file copy does not depend on the night's data: it runs beside the sync
    # and the build (a full build publishes every mart whole and needs no copy)
    config = run.config
    if not (config.is_duckdb and config.build_models and not config.full_refresh):
        return None
    return PublishedCopy.start(config.publish_database)


def _start_history(run: _Run) -> None:
    if not builds_models(run.config.run.destination):
        return  # other dlt destinations get the raw tables only
    run.recorder = RunRecorder(run.target, "sync")
    run.recorder.start(cursor_before=_local_cursor(run.config))
    run.result.run_id = run.recorder.run_id
    if run.recorder.interrupted_marked:
        run.reporter.note(
            f"{run.recorder.interrupted_marked} earlier run(s) ended without recording it "
            "(killed); marked interrupted in the run history"
        )


def _choose_compaction(run: _Run) -> None:
    """Let this run's DuckDB checkpoints merge row groups, or not (`duckdb_compact_every`).

    A first sync, a --full-refresh and a warehouse no recorded run has compacted yet may;
    otherwise every `duckdb_compact_every`-th run, counted in the run history, does.
    """
    config = run.config
    if not config.is_duckdb or run.recorder is None:
        return
    every = config.run.duckdb_compact_every
    since = None if config.full_refresh else run.recorder.syncs_since_compaction
    compact = since is None or since + 1 >= every
    run.recorder.compacting = compact
    allow_vacuum(compact)
    if compact and since is not None and every > 1:
        run.reporter.note(
            f"DuckDB may merge row groups in this run, one run in {every} "
            f"(duckdb_compact_every; {since} since the last): it takes longer than the others"
        )


def _local_cursor(config: SyncConfig) -> str | None:
    try:
        return saved_cursor(make_pipeline(config))
    except Exception:
        return None  # the sync itself reports a broken pipeline folder


def _record_failure_safely(run: _Run, error: BaseException) -> None:
    """Record the failure; a history that cannot be written is a warning, never the error."""
    try:
        _record_failure(run, error)
    except Exception as history_error:
        run.reporter.note(
            f"warning: the run history could not record this run's end "
            f"({redact(' '.join(str(history_error).split()))}); the row stays `running` until "
            "the next run marks it interrupted. The run's own error follows."
        )


def _record_failure(run: _Run, error: BaseException) -> None:
    if run.recorder is None:
        return  # the history never started (settings, lock): nothing to record
    if isinstance(error, Interrupted):
        code = error.exit_code
        text = f"{error} during {run.step}"
        status = "interrupted"
    else:
        code = error.exit_code if isinstance(error, QuorumSmsError) else 1
        text = str(error) or type(error).__name__
        status = "interrupted" if isinstance(error, KeyboardInterrupt | SystemExit) else "failed"
    if run.result.summary is not None:  # the sync's load is committed
        stopped = "was interrupted" if status == "interrupted" else "failed"
        after = (
            "building or publishing the SQL models" if run.loaded
            else "the run, after the load,"
        )
        run.recorder.finish(
            status,
            _summary_counts(run.result.summary),
            error=f"the data was loaded and the cursor moved, but {after} {stopped} "
            f"(the previous marts are unchanged): {text}",
            exit_code=code,
        )
        return
    run.recorder.finish(status, _observer_counts(run.observer), error=text, exit_code=code)


def failure_text(config: SyncConfig, error: BaseException, run_id: str | None) -> str:
    """The failure summary for stderr (a cron mail) and the webhook; never holds the key."""
    code = error.exit_code if isinstance(error, QuorumSmsError) else 1
    lines = [
        f"quorum-sms sync FAILED on {socket.gethostname()} at "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')} (exit code {code})",
        f"  database  {config.database}"
        + ("" if config.is_duckdb else f" (destination {config.run.destination})"),
        f"  API       {config.source.base_url}",
    ]
    if run_id:
        lines.append(f"  run       {run_id} (quorum_ops.sync_runs; `quorum-sms status`)")
    lines.append(f"  error     {' '.join(str(error).split()) or type(error).__name__}")
    return redact("\n".join(lines))


def rejects_text(config: SyncConfig, result: RunResult) -> str:
    """The summary of a run that set records aside (exit 5), for the cron mail and webhook."""
    summary = result.summary
    assert summary is not None
    lines = [
        f"quorum-sms sync LOADED WITH {summary.records_rejected:,} REJECTED RECORD(S) on "
        f"{socket.gethostname()} at {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')} "
        f"(exit code {EXIT_LOADED_WITH_REJECTS})",
        f"  database  {config.database}",
        f"  API       {config.source.base_url}",
    ]
    if result.run_id:
        lines.append(f"  run       {result.run_id} (quorum_ops.sync_runs; `quorum-sms status`)")
    lines.append(
        f"  rejected  {summary.records_rejected:,} open ({summary.rejects_new:,} new this run); "
        "every other record loaded. They are in quorum_raw.sendsms_rejects and are fetched "
        "again by id every run until they load; report the ids to Quorum support."
    )
    lines += [f"    id {record_id}: {reason}" for record_id, reason in summary.reject_samples]
    return redact("\n".join(lines))


def _alert(run: _Run, error: BaseException) -> None:
    _announce(run, failure_text(run.config, error, run.result.run_id))


def _announce(run: _Run, text: str) -> None:
    """Tell the cron mail (through the reporter) and the webhook, once."""
    run.reporter.failed(text)
    try:
        webhook = load_webhook_url(run.config.run)
    except QuorumSmsError:
        webhook = None  # a bad webhook setting is reported by `quorum-sms check`
    if webhook:
        try:
            post_webhook(webhook, text)
        except NotifyError as notify_error:
            run.reporter.note(f"warning: {notify_error}")


def _summary_counts(summary: SyncSummary | None) -> RunCounts:
    if summary is None:
        return RunCounts()
    return RunCounts(
        records_fetched=summary.records_fetched,
        records_loaded=summary.records_new + summary.records_updated,
        records_new=summary.records_new,
        records_updated=summary.records_updated,
        records_unchanged=summary.records_unchanged,
        events_loaded=summary.events_loaded,
        pages=summary.pages,
        requests=summary.requests,
        retries=summary.retries,
        paging_mode=summary.paging_mode,
        cursor_before=summary.cursor_before,
        cursor_after=summary.cursor_after,
        records_rejected=summary.records_rejected,
        rejected_sample="; ".join(f"id {i}: {reason}" for i, reason in summary.reject_samples)
        or None,
    )


def _observer_counts(observer: SourceObserver) -> RunCounts:
    """What the source read before the run stopped."""
    if observer.client is None:
        return RunCounts()
    return RunCounts(
        records_fetched=observer.records,
        pages=observer.pages,
        requests=observer.client.stats.requests,
        retries=observer.client.stats.retries,
    )


# -- models on their own ----------------------------------------------------------------------


@dataclass
class ModelsRun:
    """What `quorum-sms models` built and published."""

    models: BuildResult
    published: PublishResult | None


def rebuild_models(
    target: str | Path,
    publish_database: Path | None,
    *,
    lock_wait_seconds: float,
    sql_dir: Path | None = None,
    full_refresh: bool = False,
    duckdb_memory_limit: str | None = None,
    duckdb_threads: int | None = None,
) -> ModelsRun:
    """Under the warehouse lock: build the models and data checks, then publish them.

    Args:
        target: the DuckDB file or the PostgreSQL credentials (`pipelines.target`).
        publish_database: the published analytics file (DuckDB only; None: no publishing).
        lock_wait_seconds: how long to wait for a run that holds the lock.
        sql_dir: the model directory; the project's `sql/` when None.

    The build is incremental when it can be; `full_refresh` rebuilds (and republishes)
    everything.

    `duckdb_memory_limit` and `duckdb_threads` cap DuckDB as during the load (see
    `database.set_connection_defaults`).

    Raises:
        QuorumSmsError: a model or check failed (nothing changed, nothing published), or
            the analytics file could not be published (the warehouse's marts are new).
    """
    set_connection_defaults(memory_limit=duckdb_memory_limit, threads=duckdb_threads)
    with warehouse_lock(target, RAW_DATASET, lock_wait_seconds):
        models = build_models(target, sql_dir, full_refresh=full_refresh)
        published = None
        if publish_database is not None and isinstance(target, Path):
            published = publish_analytics(target, publish_database)
    return ModelsRun(models, published)


# -- reconcile --------------------------------------------------------------------------------


@dataclass
class ReconcileRun:
    """What reconcile found and did, the paging notes, and the models it rebuilt."""

    result: ReconcileResult
    notes: list[str]
    models: BuildResult | None = None
    published: PublishResult | None = None


def run_reconcile(config: SyncConfig, *, force: bool = False) -> ReconcileRun:
    """Under the database lock: read every live id, mark the missing rows, rebuild models.

    Raises:
        QuorumSmsError: the API failed, the warehouse has no raw table, or the share to mark
            was implausible (nothing changed); recorded in the run history first.
    """
    target = warehouse_target(config.run.destination, config.database)
    with owner_only_umask(), warehouse_lock(target, RAW_DATASET, config.run.lock_wait_seconds):
        if config.is_duckdb:
            restrict(config.database)
        recorder = RunRecorder(target, "reconcile")
        recorder.start()
        result = ReconcileResult()
        stats = PagingStats()
        try:
            live, result.requests, result.retries = read_live_ids(config, stats)
            result.live_at_source, result.pages = len(live), stats.pages
            apply_deletions(target, live, result, force=force)
        except BaseException as error:
            stopped = interruption(error)
            status = "interrupted" if stopped is not None else "failed"
            code = (
                stopped.exit_code if stopped is not None
                else error.exit_code if isinstance(error, QuorumSmsError) else 1
            )
            # a history that cannot be written never replaces reconcile's own error; the row
            # left `running` is marked interrupted by the next run
            with contextlib.suppress(Exception):
                recorder.finish(
                    status,
                    RunCounts(pages=stats.pages or None),
                    error=str(stopped or error) or type(error).__name__,
                    exit_code=code,
                )
            if stopped is not None and stopped is not error:
                raise stopped from error
            raise
        recorder.finish(
            "succeeded",
            RunCounts(
                records_fetched=result.live_at_source,
                records_deleted=result.newly_deleted,
                pages=result.pages,
                requests=result.requests,
                retries=result.retries,
                paging_mode="full-scan",
            ),
        )
        done = ReconcileRun(result, list(stats.notes))
        if config.build_models:
            done.models = build_models(target)
            if config.is_duckdb:
                done.published = publish_analytics(config.database, config.publish_database)
    return done

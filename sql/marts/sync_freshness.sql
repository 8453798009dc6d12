-- depends_on: quorum_ops.sync_runs, quorum_raw.sendsms
-- One row: how fresh the warehouse is, for a stale-data warning on a dashboard.
-- Reads the run history (quorum_ops.sync_runs, written by every sync and reconcile; the sync
-- creates it before the models build, so this builds on a database with no runs yet: then
-- the times are NULL). The hours are as of built_at, the end of the last build; a dashboard
-- compares last_successful_sync_at with its own now() to warn when syncs stop.
with runs as (
    select
        run_id,
        command,
        status,
        started_at,
        finished_at,
        records_loaded,
        records_rejected
    from quorum_ops.sync_runs
    where command = 'sync'
),

raw_records as (
    select
        updated,
        source_deleted_at
    from quorum_raw.sendsms
),

successes as (
    select
        max(finished_at) as last_successful_sync_at,
        count(*) as successful_runs,
        -- rejected_records = records the last successful sync left set aside (still open)
        coalesce(arg_max(records_rejected, finished_at), 0) as rejected_records
    from runs
    where status = 'succeeded'
),

latest as (
    select
        arg_max(status, started_at) as last_run_status,
        max(started_at) as last_run_started_at
    from runs
),

failures_since as (
    -- failed_runs_since_success = failed or interrupted syncs started after the last success
    select count(*) as failed_runs_since_success
    from runs
    cross join successes
    where runs.status in ('failed', 'interrupted')
        and (
            successes.last_successful_sync_at is null
            or runs.started_at > successes.last_successful_sync_at
        )
),

loaded as (
    select
        max(updated) as newest_updated_loaded,
        count(*) filter (where source_deleted_at is null) as live_records,
        count(*) filter (where source_deleted_at is not null) as deleted_at_source_records
    from raw_records
),

final as (
    select
        successes.last_successful_sync_at,
        loaded.newest_updated_loaded,
        cast(now() as timestamptz) as built_at,
        -- hours_since_last_sync = built_at - last_successful_sync_at, in hours
        (epoch(cast(now() as timestamptz)) - epoch(successes.last_successful_sync_at)) / 3600.0
            as hours_since_last_sync,
        -- hours_since_newest_update = built_at - newest_updated_loaded, in hours
        (epoch(cast(now() as timestamptz)) - epoch(loaded.newest_updated_loaded)) / 3600.0
            as hours_since_newest_update,
        latest.last_run_status,
        latest.last_run_started_at,
        failures_since.failed_runs_since_success,
        successes.successful_runs,
        successes.rejected_records,
        loaded.live_records,
        loaded.deleted_at_source_records
    from successes
    cross join latest
    cross join failures_since
    cross join loaded
)

select * from final

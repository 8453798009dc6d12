-- depends_on: analytics.fct_sms_message
-- One row per error code and failure status (failed, undelivered, rejected) over messages
-- (outbound, not archived) in status category 'failed'. error_code is NULL when the
-- provider gave none or the status's event is missing.
with failures as (
    select
        error_code,
        status,
        error_message,
        bulk_sms_id,
        associated_number,
        send_time
    from analytics.fct_sms_message
    where is_message and status_category = 'failed'
),

totals as (
    select count(*) as total_failures
    from failures
),

aggregated as (
    select
        error_code,
        status,
        count(*) as failures,
        -- one of the provider's texts for this code: the alphabetically first
        min(error_message) as example_error_message,
        -- campaigns_affected = distinct campaigns among these failures (individual texts
        -- have no campaign and are not counted)
        count(distinct bulk_sms_id) as campaigns_affected,
        count(distinct associated_number) as sender_numbers_affected,
        min(send_time) as first_seen,
        max(send_time) as last_seen
    from failures
    group by error_code, status
),

final as (
    select
        aggregated.error_code,
        aggregated.status,
        aggregated.failures,
        -- share_of_failures = failures with this code and status / all failed messages
        cast(aggregated.failures as double) / nullif(totals.total_failures, 0)
            as share_of_failures,
        aggregated.campaigns_affected,
        aggregated.sender_numbers_affected,
        aggregated.example_error_message,
        aggregated.first_seen,
        aggregated.last_seen
    from aggregated
    cross join totals
)

select * from final
order by failures desc, error_code nulls last, status

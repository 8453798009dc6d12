-- depends_on: analytics.fct_sms_message
-- unique_key: associated_number
-- incremental_strategy: additive(count=failures, group=error_code)
-- One row per sender number and error code given on its failures (messages in status
-- category 'failed' with a non-NULL error_code): sums, so a nightly build adds the changed
-- records' new versions and subtracts their old ones.
with failures as (
    select
        associated_number,
        error_code
    from analytics.fct_sms_message
    where is_message and status_category = 'failed'
        and associated_number is not null and error_code is not null
),

final as (
    select
        associated_number,
        error_code,
        -- failures = failed messages of the number with this error code
        count(*) as failures
    from failures
    group by associated_number, error_code
)

select * from final

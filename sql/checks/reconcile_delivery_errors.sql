-- depends_on: analytics.sms_delivery_errors, analytics.fct_sms_message
-- The failures by error code add up to the failed messages of fct_sms_message.
with counts as (
    select
        (select coalesce(sum(failures), 0) from analytics.sms_delivery_errors) as error_failures,
        (
            select count(*) from analytics.fct_sms_message
            where is_message and status_category = 'failed'
        ) as fct_failures
),

final as (
    select error_failures, fct_failures
    from counts
    where error_failures <> fct_failures
)

select * from final

-- One row per associated_number (the organisation's number) seen on a non-archived text.
-- Rates are over the number's messages (outbound, not archived); the "recent" columns cover
-- the 7 days up to the newest send in the whole data set, so a number that carriers have
-- started to filter stands out even when its lifetime rates still look fine.
with records as (
    select
        associated_number,
        is_message,
        direction,
        status,
        status_category,
        error_code,
        send_time
    from analytics.fct_sms_message
    where not archived and associated_number is not null
),

newest as (
    select max(send_time) as newest_send_time
    from analytics.fct_sms_message
    where is_message
),

error_counts as (
    select
        associated_number,
        error_code,
        count(*) as error_count
    from records
    where is_message and status_category = 'failed' and error_code is not null
    group by associated_number, error_code
),

top_errors as (
    -- the most frequent error code among the number's failures; ties go to the smallest code
    select
        associated_number,
        error_code as top_error_code,
        error_count as top_error_code_count
    from error_counts
    qualify row_number() over (
        partition by associated_number order by error_count desc, error_code
    ) = 1
),

aggregated as (
    select
        records.associated_number,
        count(*) filter (where records.is_message) as messages,
        count(*) filter (where records.direction = 'inbound') as inbound,
        count(*) filter (where records.is_message and records.status = 'delivered') as delivered,
        -- failures = messages in status category 'failed' (failed + undelivered + rejected)
        count(*) filter (where records.is_message and records.status_category = 'failed')
            as failures,
        count(*) filter (where records.is_message and records.status = 'rejected') as rejected,
        -- recent = sent in the 7 days (168 hours) up to the newest send in the data
        count(*) filter (
            where records.is_message
                and records.send_time > newest.newest_send_time - interval 7 day
        ) as recent_messages,
        count(*) filter (
            where records.is_message and records.status_category = 'failed'
                and records.send_time > newest.newest_send_time - interval 7 day
        ) as recent_failures,
        min(records.send_time) filter (where records.is_message) as first_send_time,
        max(records.send_time) filter (where records.is_message) as last_send_time
    from records
    cross join newest
    group by records.associated_number
),

final as (
    select
        aggregated.associated_number,
        aggregated.messages,
        aggregated.inbound,
        aggregated.delivered,
        aggregated.failures,
        aggregated.rejected,
        -- delivery_rate = delivered / messages
        cast(aggregated.delivered as double) / nullif(aggregated.messages, 0) as delivery_rate,
        -- failure_rate = (failed + undelivered + rejected) / messages
        cast(aggregated.failures as double) / nullif(aggregated.messages, 0) as failure_rate,
        -- rejection_rate = rejected / messages
        cast(aggregated.rejected as double) / nullif(aggregated.messages, 0) as rejection_rate,
        aggregated.recent_messages,
        -- recent_failure_rate = recent failures / recent messages
        cast(aggregated.recent_failures as double) / nullif(aggregated.recent_messages, 0)
            as recent_failure_rate,
        top_errors.top_error_code,
        coalesce(top_errors.top_error_code_count, 0) as top_error_code_count,
        aggregated.first_send_time,
        aggregated.last_send_time
    from aggregated
    left join top_errors on top_errors.associated_number = aggregated.associated_number
)

select
    associated_number,
    messages,
    inbound,
    delivered,
    failures,
    rejected,
    delivery_rate,
    failure_rate,
    rejection_rate,
    recent_messages,
    recent_failure_rate,
    top_error_code,
    top_error_code_count,
    first_send_time,
    last_send_time
from final
order by associated_number

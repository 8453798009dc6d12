-- One row per send_date (UTC) on which at least one non-archived text, outbound or
-- inbound, was sent. Outbound figures count messages (outbound, not archived) by the date
-- they were sent; inbound counts non-archived inbound texts by the date they arrived.
with records as (
    select
        send_date,
        is_message,
        direction,
        archived,
        status,
        status_category,
        segments,
        opens,
        is_opened,
        converted
    from analytics.fct_sms_message
    where not archived and send_date is not null
),

aggregated as (
    select
        send_date,
        count(*) filter (where is_message) as messages,
        count(*) filter (where direction = 'inbound') as inbound,
        count(*) filter (where is_message and status = 'queued') as queued,
        count(*) filter (where is_message and status = 'sent') as sent,
        count(*) filter (where is_message and status = 'delivered') as delivered,
        count(*) filter (where is_message and status = 'undelivered') as undelivered,
        count(*) filter (where is_message and status = 'failed') as failed,
        count(*) filter (where is_message and status = 'rejected') as rejected,
        -- failures = messages in status category 'failed' (failed + undelivered + rejected)
        count(*) filter (where is_message and status_category = 'failed') as failures,
        -- segments = billed segments of the day's messages
        cast(coalesce(sum(segments) filter (where is_message), 0) as bigint) as segments,
        -- unique_opens = the day's messages with opens > 0; opens = their total opens
        count(*) filter (where is_message and is_opened) as unique_opens,
        cast(coalesce(sum(opens) filter (where is_message), 0) as bigint) as opens,
        -- conversions = the day's converted messages
        count(*) filter (where is_message and converted) as conversions
    from records
    group by send_date
),

final as (
    select
        send_date,
        messages,
        inbound,
        queued,
        sent,
        delivered,
        undelivered,
        failed,
        rejected,
        failures,
        -- delivery_rate = delivered / messages
        cast(delivered as double) / nullif(messages, 0) as delivery_rate,
        -- failure_rate = (failed + undelivered + rejected) / messages
        cast(failures as double) / nullif(messages, 0) as failure_rate,
        segments,
        unique_opens,
        opens,
        -- open_rate = unique_opens / delivered
        cast(unique_opens as double) / nullif(delivered, 0) as open_rate,
        conversions,
        -- conversion_rate = conversions / delivered
        cast(conversions as double) / nullif(delivered, 0) as conversion_rate
    from aggregated
)

select
    send_date,
    messages,
    inbound,
    queued,
    sent,
    delivered,
    undelivered,
    failed,
    rejected,
    failures,
    delivery_rate,
    failure_rate,
    segments,
    unique_opens,
    opens,
    open_rate,
    conversions,
    conversion_rate
from final
order by send_date

-- One row per campaign (bulk_sms_id) that has at least one record, even if all its texts are
-- archived (then messages = 0 and every rate is NULL).
with campaign_records as (
    select
        sendsms_id,
        bulk_sms_id,
        campaign_description,
        campaign_scheduled_at,
        is_message,
        status,
        status_category,
        send_time,
        segments,
        opens,
        is_opened,
        converted,
        seconds_to_deliver,
        replies
    from analytics.fct_sms_message
    where bulk_sms_id is not null
),

aggregated as (
    select
        bulk_sms_id,
        -- the description on the campaign's newest record (highest id) that has one
        arg_max(campaign_description, sendsms_id) filter (where campaign_description is not null)
            as campaign_description,
        max(campaign_scheduled_at) as scheduled_send_time,
        min(send_time) filter (where is_message) as first_send_time,
        max(send_time) filter (where is_message) as last_send_time,
        -- messages = outbound, not archived texts of the campaign
        count(*) filter (where is_message) as messages,
        count(*) filter (where is_message and status = 'queued') as queued,
        count(*) filter (where is_message and status = 'sent') as sent,
        count(*) filter (where is_message and status = 'delivered') as delivered,
        count(*) filter (where is_message and status = 'undelivered') as undelivered,
        count(*) filter (where is_message and status = 'failed') as failed,
        count(*) filter (where is_message and status = 'rejected') as rejected,
        -- failures = messages in status category 'failed' (failed + undelivered + rejected)
        count(*) filter (where is_message and status_category = 'failed') as failures,
        -- segments = billed segments of the messages
        cast(coalesce(sum(segments) filter (where is_message), 0) as bigint) as segments,
        -- unique_opens = messages with opens > 0
        count(*) filter (where is_message and is_opened) as unique_opens,
        -- total_opens = sum of opens over the messages
        cast(coalesce(sum(opens) filter (where is_message), 0) as bigint) as total_opens,
        -- conversions = converted messages
        count(*) filter (where is_message and converted) as conversions,
        -- median / p90 of seconds_to_deliver over delivered messages with both times known,
        -- linear interpolation between order statistics (numpy.percentile's default)
        quantile_cont(seconds_to_deliver, 0.5) filter (where is_message and status = 'delivered')
            as median_seconds_to_deliver,
        quantile_cont(seconds_to_deliver, 0.9) filter (where is_message and status = 'delivered')
            as p90_seconds_to_deliver,
        -- replies = inbound texts answering one of the campaign's messages within 72 hours
        cast(coalesce(sum(replies) filter (where is_message), 0) as bigint) as replies
    from campaign_records
    group by bulk_sms_id
),

final as (
    select
        bulk_sms_id,
        campaign_description,
        scheduled_send_time,
        first_send_time,
        last_send_time,
        messages,
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
        total_opens,
        -- open_rate = unique_opens / delivered
        cast(unique_opens as double) / nullif(delivered, 0) as open_rate,
        conversions,
        -- conversion_rate = conversions / delivered
        cast(conversions as double) / nullif(delivered, 0) as conversion_rate,
        median_seconds_to_deliver,
        p90_seconds_to_deliver,
        replies
    from aggregated
)

select
    bulk_sms_id,
    campaign_description,
    scheduled_send_time,
    first_send_time,
    last_send_time,
    messages,
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
    total_opens,
    open_rate,
    conversions,
    conversion_rate,
    median_seconds_to_deliver,
    p90_seconds_to_deliver,
    replies
from final
order by bulk_sms_id

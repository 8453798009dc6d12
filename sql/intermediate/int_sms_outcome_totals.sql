-- depends_on: analytics.fct_sms_message
-- unique_key: grain(campaign=bulk_sms_id, day=send_date, sender=associated_number)
-- incremental_strategy: additive(count=texts, min=first_send_time, max=last_send_time)
-- The outcome counts that the campaign, daily and sender-number marts share, computed in one
-- pass with grouping sets: one row per campaign (grain 'campaign'), per send_date (grain
-- 'day') and per associated_number (grain 'sender'). Every count is over messages (outbound,
-- not archived) but texts, inbound and live_texts. Every column is a sum over the key's
-- records (or their min/max send time), so a nightly build adds the changed records' new
-- versions and subtracts their old ones instead of recounting every record of a key.
with records as (
    select
        bulk_sms_id,
        send_date,
        associated_number,
        direction,
        archived,
        is_message,
        status,
        status_category,
        segments,
        opens,
        is_opened,
        converted,
        replies,
        send_time
    from analytics.fct_sms_message
),

aggregated as (
    select
        case
            when grouping(bulk_sms_id) = 0 then 'campaign'
            when grouping(send_date) = 0 then 'day'
            else 'sender'
        end as grain,
        bulk_sms_id,
        send_date,
        associated_number,
        -- texts = every record of the key (archived included): the key exists while > 0
        count(*) as texts,
        -- live_texts = non-archived texts, outbound or inbound
        count(*) filter (where not archived) as live_texts,
        -- messages = outbound, not archived texts
        count(*) filter (where is_message) as messages,
        -- inbound = non-archived inbound texts
        count(*) filter (where direction = 'inbound' and not archived) as inbound,
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
        -- replies = inbound texts answering the messages
        cast(coalesce(sum(replies) filter (where is_message), 0) as bigint) as replies,
        -- funnel_sent = messages that left the queue for the carrier (the funnel's stage 2)
        count(*) filter (
            where is_message and status in ('sent', 'delivered', 'undelivered', 'failed')
        ) as funnel_sent,
        -- funnel_opened = delivered messages with opens > 0 (stage 4)
        count(*) filter (where is_message and status = 'delivered' and is_opened)
            as funnel_opened,
        -- funnel_converted = delivered, opened and converted messages (stage 5)
        count(*) filter (where is_message and status = 'delivered' and is_opened and converted)
            as funnel_converted,
        min(send_time) filter (where is_message) as first_send_time,
        max(send_time) filter (where is_message) as last_send_time
    from records
    group by grouping sets ((bulk_sms_id), (send_date), (associated_number))
),

final as (
    select * from aggregated
)

select * from final

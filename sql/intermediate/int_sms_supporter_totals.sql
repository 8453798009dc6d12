-- depends_on: analytics.fct_sms_message
-- unique_key: supporter_id
-- incremental_strategy: additive(count=texts, min=first_message_at, max=last_message_at, max=last_inbound_at, max=last_status_sent_at, max=last_delivered_sent_at)
-- One row per supporter with at least one non-archived text, outbound or inbound: the sums
-- and the min/max times of sms_supporter_engagement, so a nightly build adds the changed
-- records' new versions and subtracts their old ones instead of re-reading every text of a
-- changed supporter (a supporter's history grows with the warehouse, a night's changes do not).
with records as (
    select
        supporter_id,
        is_message,
        direction,
        status,
        status_category,
        opens,
        is_opened,
        converted,
        send_time
    from analytics.fct_sms_message
    where not archived and supporter_id is not null
),

final as (
    select
        supporter_id,
        -- texts = non-archived texts of the supporter, outbound or inbound
        count(*) as texts,
        -- messages_received = messages (outbound, not archived) sent to the supporter
        count(*) filter (where is_message) as messages_received,
        count(*) filter (where is_message and status = 'delivered') as delivered,
        -- failures = messages in status category 'failed' (failed + undelivered + rejected)
        count(*) filter (where is_message and status_category = 'failed') as failures,
        -- opens = total opens of the messages
        cast(coalesce(sum(opens) filter (where is_message), 0) as bigint) as opens,
        -- messages_opened = messages with opens > 0
        count(*) filter (where is_message and is_opened) as messages_opened,
        -- conversions = converted messages
        count(*) filter (where is_message and converted) as conversions,
        -- inbound_texts = non-archived inbound texts from the supporter (any time)
        count(*) filter (where direction = 'inbound') as inbound_texts,
        min(send_time) filter (where is_message) as first_message_at,
        max(send_time) filter (where is_message) as last_message_at,
        max(send_time) filter (where direction = 'inbound') as last_inbound_at,
        -- a supporter's messages are ordered by send_time, those without one last: the latest
        -- message with a status (and the latest delivered one) is one without a send_time if
        -- there is any, else the one with the latest send_time; counts and maxima stay sums
        -- and maxima, so they are maintained like the rest
        count(*) filter (where is_message and status is not null and send_time is null)
            as unsent_with_status,
        max(send_time) filter (where is_message and status is not null) as last_status_sent_at,
        count(*) filter (where is_message and status_category = 'delivered' and send_time is null)
            as unsent_delivered,
        max(send_time) filter (where is_message and status_category = 'delivered')
            as last_delivered_sent_at
    from records
    group by supporter_id
)

select * from final

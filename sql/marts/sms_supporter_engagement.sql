-- depends_on: analytics.fct_sms_message
-- unique_key: supporter_id
-- One row per supporter with at least one non-archived text, outbound or inbound.
with records as (
    select
        sendsms_id,
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

messages as (
    -- a supporter's messages are ordered by send_time (those without one last), then by id
    select
        supporter_id,
        sendsms_id,
        status,
        status_category,
        coalesce(send_time, cast('infinity' as timestamp with time zone)) as order_time
    from records
    where is_message
),

latest_times as (
    select
        supporter_id,
        max(order_time) filter (where status is not null) as last_status_time,
        max(order_time) filter (where status_category = 'delivered') as last_delivered_time
    from messages
    group by supporter_id
),

latest as (
    -- the latest message with a status and the latest delivered one; at one time, the highest id
    select
        messages.supporter_id,
        latest_times.last_delivered_time,
        max(messages.sendsms_id) filter (
            where messages.status is not null
                and messages.order_time = latest_times.last_status_time
        ) as last_status_id,
        max(messages.sendsms_id) filter (
            where messages.status_category = 'delivered'
                and messages.order_time = latest_times.last_delivered_time
        ) as last_delivered_id
    from messages
    inner join latest_times on latest_times.supporter_id = messages.supporter_id
    where messages.order_time in (latest_times.last_status_time, latest_times.last_delivered_time)
    group by messages.supporter_id, latest_times.last_delivered_time
),

final as (
    select
        records.supporter_id,
        -- messages_received = messages (outbound, not archived) sent to the supporter
        count(*) filter (where records.is_message) as messages_received,
        count(*) filter (where records.is_message and records.status = 'delivered')
            as delivered,
        -- failures = messages in status category 'failed' (failed + undelivered + rejected)
        count(*) filter (where records.is_message and records.status_category = 'failed')
            as failures,
        -- opens = total opens; messages_opened = messages with opens > 0
        cast(coalesce(sum(records.opens) filter (where records.is_message), 0) as bigint) as opens,
        count(*) filter (where records.is_message and records.is_opened) as messages_opened,
        -- conversions = converted messages
        count(*) filter (where records.is_message and records.converted) as conversions,
        -- inbound_texts = non-archived inbound texts from the supporter (any time)
        count(*) filter (where records.direction = 'inbound') as inbound_texts,
        -- last_status = status of the latest message (by send_time, then id)
        max(records.status) filter (where records.sendsms_id = latest.last_status_id)
            as last_status,
        -- consecutive_failed_deliveries = failed-category messages after the latest delivered
        -- one (all of them if none was delivered); queued/sent messages neither count nor
        -- break the streak, since their outcome is not known yet
        count(*) filter (
            where records.is_message and records.status_category = 'failed'
                and (
                    latest.last_delivered_time is null
                    or coalesce(records.send_time, cast('infinity' as timestamp with time zone))
                    > latest.last_delivered_time
                    or (coalesce(records.send_time, cast('infinity' as timestamp with time zone))
                        = latest.last_delivered_time
                        and records.sendsms_id > latest.last_delivered_id)
                )
        ) as consecutive_failed_deliveries,
        min(records.send_time) filter (where records.is_message) as first_message_at,
        max(records.send_time) filter (where records.is_message) as last_message_at,
        max(records.send_time) filter (where records.direction = 'inbound')
            as last_inbound_at
    from records
    left join latest on latest.supporter_id = records.supporter_id
    group by records.supporter_id
)

select * from final
order by supporter_id

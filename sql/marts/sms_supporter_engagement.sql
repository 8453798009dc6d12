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

sequenced as (
    -- message order per supporter: by send_time, then id
    select
        records.*,
        case when is_message then row_number() over (
            partition by supporter_id, is_message order by send_time, sendsms_id
        ) end as message_seq
    from records
),

last_delivered as (
    select
        supporter_id,
        max(message_seq) filter (where status_category = 'delivered') as last_delivered_seq
    from sequenced
    where is_message
    group by supporter_id
),

final as (
    select
        sequenced.supporter_id,
        -- messages_received = messages (outbound, not archived) sent to the supporter
        count(*) filter (where sequenced.is_message) as messages_received,
        count(*) filter (where sequenced.is_message and sequenced.status = 'delivered')
            as delivered,
        -- failures = messages in status category 'failed' (failed + undelivered + rejected)
        count(*) filter (where sequenced.is_message and sequenced.status_category = 'failed')
            as failures,
        -- opens = total opens; messages_opened = messages with opens > 0
        cast(coalesce(sum(sequenced.opens) filter (where sequenced.is_message), 0) as bigint) as opens,
        count(*) filter (where sequenced.is_message and sequenced.is_opened) as messages_opened,
        -- conversions = converted messages
        count(*) filter (where sequenced.is_message and sequenced.converted) as conversions,
        -- inbound_texts = non-archived inbound texts from the supporter (any time)
        count(*) filter (where sequenced.direction = 'inbound') as inbound_texts,
        -- last_status = status of the latest message (by send_time, then id)
        arg_max(sequenced.status, sequenced.message_seq) filter (where sequenced.is_message)
            as last_status,
        -- consecutive_failed_deliveries = failed-category messages after the latest delivered
        -- one (all of them if none was delivered); queued/sent messages neither count nor
        -- break the streak, since their outcome is not known yet
        count(*) filter (
            where sequenced.is_message and sequenced.status_category = 'failed'
                and sequenced.message_seq > coalesce(last_delivered.last_delivered_seq, 0)
        ) as consecutive_failed_deliveries,
        min(sequenced.send_time) filter (where sequenced.is_message) as first_message_at,
        max(sequenced.send_time) filter (where sequenced.is_message) as last_message_at,
        max(sequenced.send_time) filter (where sequenced.direction = 'inbound')
            as last_inbound_at
    from sequenced
    left join last_delivered on last_delivered.supporter_id = sequenced.supporter_id
    group by sequenced.supporter_id
)

select * from final
order by supporter_id

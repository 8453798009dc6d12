-- depends_on: intermediate.int_sms_supporter_totals, analytics.fct_sms_message
-- unique_key: supporter_id
-- One row per supporter with at least one non-archived text, outbound or inbound. The sums
-- come from int_sms_supporter_totals; of fct only the messages at the latest status time and
-- from the latest delivered message on are read, which is all last_status and the failure
-- streak need.
with totals as (
    select
        supporter_id,
        messages_received,
        delivered,
        failures,
        opens,
        messages_opened,
        conversions,
        inbound_texts,
        first_message_at,
        last_message_at,
        last_inbound_at,
        -- the order time of the latest message with a status and of the latest delivered one
        -- ('infinity': one without a send_time, which comes after every sent one)
        case
            when unsent_with_status > 0 then cast('infinity' as timestamp with time zone)
            else last_status_sent_at
        end as last_status_time,
        case
            when unsent_delivered > 0 then cast('infinity' as timestamp with time zone)
            else last_delivered_sent_at
        end as last_delivered_time
    from intermediate.int_sms_supporter_totals
),

messages as (
    -- a supporter's messages are ordered by send_time (those without one last), then by id
    select
        supporter_id,
        sendsms_id,
        status,
        status_category,
        coalesce(send_time, cast('infinity' as timestamp with time zone)) as order_time
    from analytics.fct_sms_message
    where is_message and not archived and supporter_id is not null
),

tail as (
    -- the messages at the latest status time and from the latest delivered one on
    select
        messages.supporter_id,
        messages.sendsms_id,
        messages.status,
        messages.status_category,
        messages.order_time,
        totals.last_status_time,
        totals.last_delivered_time
    from messages
    inner join totals on totals.supporter_id = messages.supporter_id
    where messages.order_time = totals.last_status_time
        or messages.order_time >= totals.last_delivered_time
),

latest as (
    -- the latest message with a status and the latest delivered one; at one time, the highest id
    select
        supporter_id,
        max(sendsms_id) filter (
            where status is not null and order_time = last_status_time
        ) as last_status_id,
        max(sendsms_id) filter (
            where status_category = 'delivered' and order_time = last_delivered_time
        ) as last_delivered_id
    from tail
    group by supporter_id
),

streaks as (
    select
        tail.supporter_id,
        max(tail.status) filter (where tail.sendsms_id = latest.last_status_id) as last_status,
        -- failures_since_delivery = failed-category messages after the latest delivered one
        count(*) filter (
            where tail.status_category = 'failed'
                and (
                    tail.order_time > tail.last_delivered_time
                    or (tail.order_time = tail.last_delivered_time
                        and tail.sendsms_id > latest.last_delivered_id)
                )
        ) as failures_since_delivery
    from tail
    inner join latest on latest.supporter_id = tail.supporter_id
    group by tail.supporter_id
),

final as (
    select
        totals.supporter_id,
        totals.messages_received,
        totals.delivered,
        totals.failures,
        totals.opens,
        totals.messages_opened,
        totals.conversions,
        totals.inbound_texts,
        -- last_status = status of the latest message (by send_time, then id)
        streaks.last_status,
        -- consecutive_failed_deliveries = failed-category messages after the latest delivered
        -- one (all of them if none was delivered); queued/sent messages neither count nor
        -- break the streak, since their outcome is not known yet
        case
            when totals.last_delivered_time is null then totals.failures
            else coalesce(streaks.failures_since_delivery, 0)
        end as consecutive_failed_deliveries,
        totals.first_message_at,
        totals.last_message_at,
        totals.last_inbound_at
    from totals
    left join streaks on streaks.supporter_id = totals.supporter_id
)

select * from final
order by supporter_id

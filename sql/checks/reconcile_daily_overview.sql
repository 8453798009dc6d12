-- depends_on: analytics.sms_daily_overview, analytics.fct_sms_message
-- The daily messages and inbound texts add up to fct_sms_message's, counted by send_date.
with counts as (
    select
        (select coalesce(sum(messages), 0) from analytics.sms_daily_overview) as daily_messages,
        (
            select count(*) from analytics.fct_sms_message
            where is_message and send_date is not null
        ) as fct_messages,
        (select coalesce(sum(inbound), 0) from analytics.sms_daily_overview) as daily_inbound,
        (
            select count(*) from analytics.fct_sms_message
            where direction = 'inbound' and not archived and send_date is not null
        ) as fct_inbound
),

final as (
    select daily_messages, fct_messages, daily_inbound, fct_inbound
    from counts
    where daily_messages <> fct_messages or daily_inbound <> fct_inbound
)

select * from final

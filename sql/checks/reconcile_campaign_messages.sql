-- depends_on: analytics.sms_campaign_performance, analytics.fct_sms_message
-- Campaign messages plus individual messages make up every message of fct_sms_message.
with counts as (
    select
        (select coalesce(sum(messages), 0) from analytics.sms_campaign_performance)
            as campaign_messages,
        (select count(*) from analytics.fct_sms_message where is_message and bulk_sms_id is null)
            as individual_messages,
        (select count(*) from analytics.fct_sms_message where is_message) as fct_messages
),

final as (
    select campaign_messages, individual_messages, fct_messages
    from counts
    where campaign_messages + individual_messages <> fct_messages
)

select * from final

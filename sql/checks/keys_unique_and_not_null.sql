-- depends_on: seeds.text_delivery_status, seeds.message_direction, analytics.fct_sms_message,
-- depends_on: analytics.sms_campaign_performance, analytics.sms_campaign_funnel,
-- depends_on: analytics.sms_daily_overview, analytics.sms_sender_number_health,
-- depends_on: analytics.sms_supporter_engagement
-- incremental_scope: changed_keys
-- Every table's key identifies one row and is never NULL: offending rows are the key values
-- that are NULL or found more than once.
with status_keys as (
    select 'seeds.text_delivery_status' as relation, cast(status_code as varchar) as key_value,
        count(*) as rows_with_key
    from seeds.text_delivery_status
    group by status_code
    having count(*) > 1 or status_code is null
),

direction_keys as (
    select 'seeds.message_direction' as relation, cast(direction_code as varchar) as key_value,
        count(*) as rows_with_key
    from seeds.message_direction
    group by direction_code
    having count(*) > 1 or direction_code is null
),

message_keys as (
    select 'analytics.fct_sms_message' as relation, cast(sendsms_id as varchar) as key_value,
        count(*) as rows_with_key
    from analytics.fct_sms_message
    group by sendsms_id
    having count(*) > 1 or sendsms_id is null
),

campaign_keys as (
    select 'analytics.sms_campaign_performance' as relation,
        cast(bulk_sms_id as varchar) as key_value, count(*) as rows_with_key
    from analytics.sms_campaign_performance
    group by bulk_sms_id
    having count(*) > 1 or bulk_sms_id is null
),

funnel_keys as (
    select 'analytics.sms_campaign_funnel' as relation,
        cast(bulk_sms_id as varchar) || '/' || cast(stage_order as varchar) as key_value,
        count(*) as rows_with_key
    from analytics.sms_campaign_funnel
    group by bulk_sms_id, stage_order
    having count(*) > 1 or bulk_sms_id is null or stage_order is null
),

day_keys as (
    select 'analytics.sms_daily_overview' as relation, cast(send_date as varchar) as key_value,
        count(*) as rows_with_key
    from analytics.sms_daily_overview
    group by send_date
    having count(*) > 1 or send_date is null
),

sender_keys as (
    select 'analytics.sms_sender_number_health' as relation,
        cast(associated_number as varchar) as key_value, count(*) as rows_with_key
    from analytics.sms_sender_number_health
    group by associated_number
    having count(*) > 1 or associated_number is null
),

supporter_keys as (
    select 'analytics.sms_supporter_engagement' as relation,
        cast(supporter_id as varchar) as key_value, count(*) as rows_with_key
    from analytics.sms_supporter_engagement
    group by supporter_id
    having count(*) > 1 or supporter_id is null
),

final as (
    select * from status_keys
    union all select * from direction_keys
    union all select * from message_keys
    union all select * from campaign_keys
    union all select * from funnel_keys
    union all select * from day_keys
    union all select * from sender_keys
    union all select * from supporter_keys
)

select * from final

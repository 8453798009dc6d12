-- depends_on: analytics.sms_campaign_performance, analytics.sms_campaign_funnel,
-- depends_on: analytics.sms_daily_overview, analytics.sms_sender_number_health,
-- depends_on: analytics.sms_delivery_errors
-- incremental_scope: changed_keys
-- Every rate is a fraction between 0 and 1 (or NULL): offending rows name the mart, the
-- row's key, the rate and its value.
with final as (
    select
        'analytics.sms_campaign_performance' as relation,
        cast(bulk_sms_id as varchar) as key_value,
        'delivery_rate' as rate,
        delivery_rate as value
    from analytics.sms_campaign_performance
    where delivery_rate < 0 or delivery_rate > 1
    union all
    select
        'analytics.sms_campaign_performance' as relation,
        cast(bulk_sms_id as varchar) as key_value,
        'failure_rate' as rate,
        failure_rate as value
    from analytics.sms_campaign_performance
    where failure_rate < 0 or failure_rate > 1
    union all
    select
        'analytics.sms_campaign_performance' as relation,
        cast(bulk_sms_id as varchar) as key_value,
        'open_rate' as rate,
        open_rate as value
    from analytics.sms_campaign_performance
    where open_rate < 0 or open_rate > 1
    union all
    select
        'analytics.sms_campaign_performance' as relation,
        cast(bulk_sms_id as varchar) as key_value,
        'conversion_rate' as rate,
        conversion_rate as value
    from analytics.sms_campaign_performance
    where conversion_rate < 0 or conversion_rate > 1
    union all
    select
        'analytics.sms_campaign_funnel' as relation,
        cast(bulk_sms_id as varchar) as key_value,
        'pct_of_messages' as rate,
        pct_of_messages as value
    from analytics.sms_campaign_funnel
    where pct_of_messages < 0 or pct_of_messages > 1
    union all
    select
        'analytics.sms_campaign_funnel' as relation,
        cast(bulk_sms_id as varchar) as key_value,
        'pct_of_previous_stage' as rate,
        pct_of_previous_stage as value
    from analytics.sms_campaign_funnel
    where pct_of_previous_stage < 0 or pct_of_previous_stage > 1
    union all
    select
        'analytics.sms_daily_overview' as relation,
        cast(send_date as varchar) as key_value,
        'delivery_rate' as rate,
        delivery_rate as value
    from analytics.sms_daily_overview
    where delivery_rate < 0 or delivery_rate > 1
    union all
    select
        'analytics.sms_daily_overview' as relation,
        cast(send_date as varchar) as key_value,
        'failure_rate' as rate,
        failure_rate as value
    from analytics.sms_daily_overview
    where failure_rate < 0 or failure_rate > 1
    union all
    select
        'analytics.sms_daily_overview' as relation,
        cast(send_date as varchar) as key_value,
        'open_rate' as rate,
        open_rate as value
    from analytics.sms_daily_overview
    where open_rate < 0 or open_rate > 1
    union all
    select
        'analytics.sms_daily_overview' as relation,
        cast(send_date as varchar) as key_value,
        'conversion_rate' as rate,
        conversion_rate as value
    from analytics.sms_daily_overview
    where conversion_rate < 0 or conversion_rate > 1
    union all
    select
        'analytics.sms_sender_number_health' as relation,
        cast(associated_number as varchar) as key_value,
        'delivery_rate' as rate,
        delivery_rate as value
    from analytics.sms_sender_number_health
    where delivery_rate < 0 or delivery_rate > 1
    union all
    select
        'analytics.sms_sender_number_health' as relation,
        cast(associated_number as varchar) as key_value,
        'failure_rate' as rate,
        failure_rate as value
    from analytics.sms_sender_number_health
    where failure_rate < 0 or failure_rate > 1
    union all
    select
        'analytics.sms_sender_number_health' as relation,
        cast(associated_number as varchar) as key_value,
        'rejection_rate' as rate,
        rejection_rate as value
    from analytics.sms_sender_number_health
    where rejection_rate < 0 or rejection_rate > 1
    union all
    select
        'analytics.sms_sender_number_health' as relation,
        cast(associated_number as varchar) as key_value,
        'recent_failure_rate' as rate,
        recent_failure_rate as value
    from analytics.sms_sender_number_health
    where recent_failure_rate < 0 or recent_failure_rate > 1
    union all
    select
        'analytics.sms_delivery_errors' as relation,
        cast(error_code as varchar) as key_value,
        'share_of_failures' as rate,
        share_of_failures as value
    from analytics.sms_delivery_errors
    where share_of_failures < 0 or share_of_failures > 1
)

select * from final

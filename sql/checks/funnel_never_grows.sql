-- depends_on: analytics.sms_campaign_funnel
-- incremental_scope: changed_keys
-- A funnel stage never counts more than the stage before it.
with stages as (
    select
        bulk_sms_id,
        stage,
        "count",
        lag("count") over (partition by bulk_sms_id order by stage_order) as previous
    from analytics.sms_campaign_funnel
),

final as (
    select bulk_sms_id, stage, "count", previous
    from stages
    where "count" > previous
)

select * from final

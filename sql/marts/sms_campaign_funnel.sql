-- depends_on: analytics.sms_campaign_performance, intermediate.int_sms_outcome_counts
-- unique_key: bulk_sms_id
-- One row per campaign and funnel stage. Each stage is a subset of the one before, so the
-- counts never grow down the funnel:
--   1 messages  : outbound, not archived texts of the campaign
--   2 sent      : of those, status sent, delivered, undelivered or failed (left the queue
--                 for the carrier; rejected and queued texts did not)
--   3 delivered : status delivered
--   4 opened    : delivered and opens > 0
--   5 converted : opened and converted
with campaigns as (
    select bulk_sms_id
    from analytics.sms_campaign_performance
),

stage_counts as (
    -- the campaign's counts per stage, kept by int_sms_outcome_counts
    select
        bulk_sms_id,
        messages,
        funnel_sent as sent,
        delivered,
        funnel_opened as opened,
        funnel_converted as converted
    from intermediate.int_sms_outcome_counts
    where grain = 'campaign' and bulk_sms_id is not null
),

stages as (
    select stage_order, stage
    from (
        values (1, 'messages'), (2, 'sent'), (3, 'delivered'), (4, 'opened'), (5, 'converted')
    ) as stage_list (stage_order, stage)
),

long as (
    select
        campaigns.bulk_sms_id,
        stages.stage_order,
        stages.stage,
        coalesce(case stages.stage
            when 'messages' then stage_counts.messages
            when 'sent' then stage_counts.sent
            when 'delivered' then stage_counts.delivered
            when 'opened' then stage_counts.opened
            when 'converted' then stage_counts.converted
        end, 0) as stage_count,
        coalesce(stage_counts.messages, 0) as messages
    from campaigns
    cross join stages
    left join stage_counts on stage_counts.bulk_sms_id = campaigns.bulk_sms_id
),

final as (
    select
        bulk_sms_id,
        stage_order,
        stage,
        stage_count as "count",
        -- pct_of_messages = count / messages of the campaign
        cast(stage_count as double) / nullif(messages, 0) as pct_of_messages,
        -- pct_of_previous_stage = count / count of the stage before (NULL for stage 1)
        cast(stage_count as double) / nullif(
            lag(stage_count) over (partition by bulk_sms_id order by stage_order), 0
        ) as pct_of_previous_stage
    from long
)

select * from final
order by bulk_sms_id, stage_order

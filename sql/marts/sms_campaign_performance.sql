-- depends_on: analytics.fct_sms_message, intermediate.int_sms_outcome_counts
-- unique_key: bulk_sms_id
-- One row per campaign (bulk_sms_id) that has at least one record, even if all its texts are
-- archived (then messages = 0 and every rate is NULL). The outcome counts and rates come
-- from int_sms_outcome_counts; the campaign's own details are worked out here.
with outcomes as (
    select * from intermediate.int_sms_outcome_counts
    where grain = 'campaign' and bulk_sms_id is not null
),

campaign_records as (
    select
        sendsms_id,
        bulk_sms_id,
        campaign_description,
        campaign_scheduled_at,
        is_message,
        status,
        seconds_to_deliver,
        replies
    from analytics.fct_sms_message
    where bulk_sms_id is not null
),

details as (
    select
        bulk_sms_id,
        -- the description on the campaign's newest record (highest id) that has one
        arg_max(campaign_description, sendsms_id) filter (where campaign_description is not null)
            as campaign_description,
        max(campaign_scheduled_at) as scheduled_send_time,
        -- median / p90 of seconds_to_deliver over delivered messages with both times known,
        -- linear interpolation between order statistics (numpy.percentile's default)
        quantile_cont(seconds_to_deliver, 0.5) filter (where is_message and status = 'delivered')
            as median_seconds_to_deliver,
        quantile_cont(seconds_to_deliver, 0.9) filter (where is_message and status = 'delivered')
            as p90_seconds_to_deliver,
        -- replies = inbound texts answering one of the campaign's messages within 72 hours
        cast(coalesce(sum(replies) filter (where is_message), 0) as bigint) as replies
    from campaign_records
    group by bulk_sms_id
),

final as (
    select
        outcomes.bulk_sms_id,
        details.campaign_description,
        details.scheduled_send_time,
        outcomes.first_send_time,
        outcomes.last_send_time,
        outcomes.messages,
        outcomes.queued,
        outcomes.sent,
        outcomes.delivered,
        outcomes.undelivered,
        outcomes.failed,
        outcomes.rejected,
        outcomes.failures,
        outcomes.delivery_rate,
        outcomes.failure_rate,
        outcomes.segments,
        outcomes.unique_opens,
        outcomes.total_opens,
        outcomes.open_rate,
        outcomes.conversions,
        outcomes.conversion_rate,
        details.median_seconds_to_deliver,
        details.p90_seconds_to_deliver,
        details.replies
    from outcomes
    inner join details on details.bulk_sms_id = outcomes.bulk_sms_id
)

select * from final
order by bulk_sms_id

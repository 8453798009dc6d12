-- depends_on: intermediate.int_sms_outcome_counts, intermediate.int_sms_campaign_details
-- unique_key: bulk_sms_id
-- One row per campaign (bulk_sms_id) that has at least one record, even if all its texts are
-- archived (then messages = 0 and every rate is NULL). The outcome counts and rates come
-- from int_sms_outcome_counts, the campaign's own details from int_sms_campaign_details.
with outcomes as (
    select * from intermediate.int_sms_outcome_counts
    where grain = 'campaign' and bulk_sms_id is not null
),

details as (
    select
        bulk_sms_id,
        campaign_description,
        scheduled_send_time,
        median_seconds_to_deliver,
        p90_seconds_to_deliver
    from intermediate.int_sms_campaign_details
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
        outcomes.replies
    from outcomes
    inner join details on details.bulk_sms_id = outcomes.bulk_sms_id
)

select * from final
order by bulk_sms_id

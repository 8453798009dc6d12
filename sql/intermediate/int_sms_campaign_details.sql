-- depends_on: intermediate.int_sms_campaign_detail_inputs
-- unique_key: bulk_sms_id
-- One row per campaign: what sms_campaign_performance shows besides the outcome counts,
-- worked out from the records' detail columns (int_sms_campaign_detail_inputs).
with detail_inputs as (
    select
        sendsms_id,
        bulk_sms_id,
        campaign_description,
        campaign_scheduled_at,
        delivered_seconds
    from intermediate.int_sms_campaign_detail_inputs
),

aggregated as (
    select
        bulk_sms_id,
        -- campaign_description = the description of the campaign's record with the highest id
        -- that has one
        arg_max(campaign_description, sendsms_id) filter (where campaign_description is not null)
            as campaign_description,
        max(campaign_scheduled_at) as scheduled_send_time,
        -- delivery_percentiles = percentiles 0.5 and 0.9 (linear interpolation) of the
        -- delivered messages' seconds_to_deliver, in one aggregate: it keeps every value of
        -- the campaign, so two would keep them twice
        quantile_cont(delivered_seconds, [0.5, 0.9]) as delivery_percentiles
    from detail_inputs
    group by bulk_sms_id
),

final as (
    select
        bulk_sms_id,
        campaign_description,
        scheduled_send_time,
        -- median_seconds_to_deliver = percentile 0.5 of the delivered messages' seconds
        delivery_percentiles[1] as median_seconds_to_deliver,
        -- p90_seconds_to_deliver = percentile 0.9 of the same
        delivery_percentiles[2] as p90_seconds_to_deliver
    from aggregated
)

select * from final

-- depends_on: intermediate.int_sms_outcome_totals
-- unique_key: grain(campaign=bulk_sms_id, day=send_date, sender=associated_number)
-- The outcome counts and rates that the campaign, daily and sender-number marts share: one
-- row per campaign (grain 'campaign'), per send_date (grain 'day') and per associated_number
-- (grain 'sender'), the totals of int_sms_outcome_totals with their rates. A mart keeps its
-- grain's rows with a non-NULL key; the day and sender marts also need live_texts > 0 (a key
-- seen on a non-archived text), the campaign mart keeps campaigns whose texts are all archived.
with aggregated as (
    select * from intermediate.int_sms_outcome_totals
),

final as (
    select
        grain,
        bulk_sms_id,
        send_date,
        associated_number,
        live_texts,
        messages,
        inbound,
        queued,
        sent,
        delivered,
        undelivered,
        failed,
        rejected,
        failures,
        -- delivery_rate = delivered / messages
        cast(delivered as double) / nullif(messages, 0) as delivery_rate,
        -- failure_rate = (failed + undelivered + rejected) / messages
        cast(failures as double) / nullif(messages, 0) as failure_rate,
        -- rejection_rate = rejected / messages
        cast(rejected as double) / nullif(messages, 0) as rejection_rate,
        segments,
        unique_opens,
        total_opens,
        -- open_rate = unique_opens / delivered
        cast(unique_opens as double) / nullif(delivered, 0) as open_rate,
        conversions,
        -- conversion_rate = conversions / delivered
        cast(conversions as double) / nullif(delivered, 0) as conversion_rate,
        replies,
        funnel_sent,
        funnel_opened,
        funnel_converted,
        first_send_time,
        last_send_time
    from aggregated
)

select * from final

-- depends_on: intermediate.int_sms_outcome_counts
-- unique_key: send_date
-- One row per send_date (UTC) on which at least one non-archived text, outbound or
-- inbound, was sent. Outbound figures count messages (outbound, not archived) by the date
-- they were sent; inbound counts non-archived inbound texts by the date they arrived.
-- Counts and rates come from int_sms_outcome_counts.
with outcomes as (
    select * from intermediate.int_sms_outcome_counts
    where grain = 'day' and send_date is not null and live_texts > 0
),

final as (
    select
        send_date,
        messages,
        inbound,
        queued,
        sent,
        delivered,
        undelivered,
        failed,
        rejected,
        failures,
        delivery_rate,
        failure_rate,
        segments,
        unique_opens,
        -- opens = total opens of the day's messages
        total_opens as opens,
        open_rate,
        conversions,
        conversion_rate
    from outcomes
)

select * from final
order by send_date

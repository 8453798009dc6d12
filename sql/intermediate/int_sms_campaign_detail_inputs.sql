-- depends_on: analytics.fct_sms_message
-- unique_key: sendsms_id
-- stored_order: sendsms_id
-- The few columns of a campaign's records that its details (description, scheduled time,
-- delivery time percentiles) read: one row per record with a campaign. Kept as a table of
-- its own so that a night changing opens or statuses only (most changes) leaves these rows,
-- and so the campaigns' details, as they were.
with records as (
    select
        sendsms_id,
        bulk_sms_id,
        campaign_description,
        campaign_scheduled_at,
        is_message,
        status,
        seconds_to_deliver
    from analytics.fct_sms_message
    where bulk_sms_id is not null
),

final as (
    select
        sendsms_id,
        bulk_sms_id,
        campaign_description,
        campaign_scheduled_at,
        -- delivered_seconds = seconds_to_deliver of a delivered message, else NULL
        case when is_message and status = 'delivered' then seconds_to_deliver end
            as delivered_seconds
    from records
)

select * from final

-- depends_on: quorum_raw.sendsms_events
-- One row per delivery event of a SendSMS record (queued, sent, delivered, failed,
-- undelivered, rejected), typed. Events of deleted records drop out where the marts join
-- them to stg_quorum__sendsms.
with source as (
    select
        sendsms_id,
        event_type,
        occurred_at,
        error_code,
        error_message,
        carrier
    from quorum_raw.sendsms_events
),

final as (
    select
        cast(sendsms_id as bigint) as sendsms_id,
        cast(event_type as varchar) as event_type,
        cast(occurred_at as timestamptz) as occurred_at,
        -- codes arrive as strings or numbers depending on the provider; keep them as text
        nullif(cast(error_code as varchar), '') as error_code,
        cast(error_message as varchar) as error_message,
        cast(carrier as varchar) as carrier
    from source
)

select * from final

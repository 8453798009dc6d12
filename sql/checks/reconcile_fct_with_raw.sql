-- depends_on: quorum_raw.sendsms, analytics.fct_sms_message
-- fct_sms_message has one row per raw record not deleted at the source.
with counts as (
    select
        (select count(*) from quorum_raw.sendsms where source_deleted_at is null) as raw_rows,
        (select count(*) from analytics.fct_sms_message) as fct_rows
),

final as (
    select raw_rows, fct_rows
    from counts
    where raw_rows <> fct_rows
)

select * from final

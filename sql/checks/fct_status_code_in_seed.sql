-- depends_on: analytics.fct_sms_message
-- incremental_scope: changed_keys
-- hint: Add the missing code to sql/seeds/text_delivery_status.csv (Quorum's
-- hint: Quorum_API_Enumeration_Values.csv has the official values) and run
-- hint: `quorum-sms models` again.
-- Every record's current_status is a code the seed knows (status is NULL otherwise).
with messages as (
    select * from analytics.fct_sms_message
),

final as (
    select sendsms_id, status_code
    from messages
    where status is null
)

select * from final

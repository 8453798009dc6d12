-- depends_on: analytics.fct_sms_message
-- incremental_scope: changed_keys
-- hint: Add the missing code to sql/seeds/message_direction.csv (Quorum's
-- hint: Quorum_API_Enumeration_Values.csv has the official values) and run
-- hint: `quorum-sms models` again.
-- Every record's message_direction is a code the seed knows (direction is NULL otherwise).
with messages as (
    select * from analytics.fct_sms_message
),

final as (
    select sendsms_id, direction_code
    from messages
    where direction is null
)

select * from final

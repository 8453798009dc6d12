-- depends_on: analytics.fct_sms_message, intermediate.int_sms_outcome_counts
-- depends_on: intermediate.int_sms_sender_error_counts
-- One row per associated_number (the organisation's number) seen on a non-archived text.
-- Rates are over the number's messages (outbound, not archived); the "recent" columns cover
-- the 7 days up to the newest send in the whole data set, so a number that carriers have
-- started to filter stands out even when its lifetime rates still look fine.
-- Lifetime counts and rates come from int_sms_outcome_counts, the error counts from
-- int_sms_sender_error_counts; only the recent window reads fct_sms_message.
with outcomes as (
    select * from intermediate.int_sms_outcome_counts
    where grain = 'sender' and associated_number is not null and live_texts > 0
),

newest as (
    -- the newest send time of any message (every message has a sender-grain row)
    select max(last_send_time) as newest_send_time
    from intermediate.int_sms_outcome_counts
    where grain = 'sender'
),

error_counts as (
    select
        associated_number,
        error_code,
        failures as error_count
    from intermediate.int_sms_sender_error_counts
),

top_errors as (
    -- the most frequent error code among the number's failures; ties go to the smallest code
    select
        associated_number,
        error_code as top_error_code,
        error_count as top_error_code_count
    from error_counts
    qualify row_number() over (
        partition by associated_number order by error_count desc, error_code
    ) = 1
),

recent_messages as (
    -- recent = sent in the 7 days (168 hours) up to the newest send in the data
    select
        fct_sms_message.associated_number,
        fct_sms_message.status_category
    from analytics.fct_sms_message
    cross join newest
    where fct_sms_message.is_message and fct_sms_message.associated_number is not null
        and fct_sms_message.send_time > newest.newest_send_time - interval 7 day
),

recent as (
    select
        associated_number,
        count(*) as recent_messages,
        count(*) filter (where status_category = 'failed') as recent_failures
    from recent_messages
    group by associated_number
),

final as (
    select
        outcomes.associated_number,
        outcomes.messages,
        outcomes.inbound,
        outcomes.delivered,
        outcomes.failures,
        outcomes.rejected,
        outcomes.delivery_rate,
        outcomes.failure_rate,
        outcomes.rejection_rate,
        coalesce(recent.recent_messages, 0) as recent_messages,
        -- recent_failure_rate = recent failures / recent messages
        cast(recent.recent_failures as double) / nullif(recent.recent_messages, 0)
            as recent_failure_rate,
        top_errors.top_error_code,
        coalesce(top_errors.top_error_code_count, 0) as top_error_code_count,
        outcomes.first_send_time,
        outcomes.last_send_time
    from outcomes
    left join recent on recent.associated_number = outcomes.associated_number
    left join top_errors on top_errors.associated_number = outcomes.associated_number
)

select * from final
order by associated_number

-- depends_on: staging.stg_quorum__sendsms, staging.stg_quorum__sendsms_events
-- unique_key: sendsms_id
-- stored_order: sendsms_id
-- recompute_together_by: supporter_id
-- together_reads: direction, archived, send_time
-- together_writes: reply_to_sendsms_id, replies
-- together_within: send_time 72 hours
-- One row per SendSMS record (outbound and inbound, archived or not; deleted ones are gone
-- in staging). current_status decides the status; the events only give the times.
with records as (
    select
        sendsms_id,
        bulk_sms_id,
        campaign_description,
        campaign_scheduled_at,
        supporter_id,
        associated_number,
        direction_code,
        direction,
        status_code,
        status,
        status_category,
        segments,
        opens,
        converted,
        archived,
        created_at,
        updated_at,
        send_time
    from staging.stg_quorum__sendsms
),

events as (
    select * from staging.stg_quorum__sendsms_events
),

event_times as (
    -- the first time each event happened (a record normally has one row per event type)
    select
        sendsms_id,
        min(case when event_type = 'queued' then occurred_at end) as queued_at,
        min(case when event_type = 'sent' then occurred_at end) as sent_at,
        min(case when event_type = 'delivered' then occurred_at end) as delivered_at,
        min(case when event_type = 'failed' then occurred_at end) as failed_at,
        min(case when event_type = 'undelivered' then occurred_at end) as undelivered_at,
        min(case when event_type = 'rejected' then occurred_at end) as rejected_at
    from events
    group by sendsms_id
),

failure_events as (
    -- the provider's details of each failure event (the first one of its type per record)
    select
        sendsms_id,
        event_type,
        error_code,
        error_message,
        carrier
    from events
    where event_type in ('failed', 'undelivered', 'rejected')
    qualify row_number() over (
        partition by sendsms_id, event_type order by occurred_at, error_code
    ) = 1
),

joined as (
    select
        records.sendsms_id,
        records.bulk_sms_id,
        records.campaign_description,
        records.campaign_scheduled_at,
        records.supporter_id,
        records.associated_number,
        records.direction_code,
        records.direction,
        records.archived,
        -- a "message" in every mart: an outbound text that is not archived
        (records.direction = 'outbound' and not records.archived) as is_message,
        records.status_code,
        records.status,
        records.status_category,
        records.created_at,
        records.updated_at,
        -- send time: the record's send_time, else its sent event, queued event, creation
        coalesce(
            records.send_time, event_times.sent_at, event_times.queued_at, records.created_at
        ) as send_time,
        event_times.queued_at,
        event_times.sent_at,
        event_times.delivered_at,
        event_times.failed_at,
        event_times.undelivered_at,
        event_times.rejected_at,
        -- error code, message and carrier of the event that matches the current status
        -- (failed, undelivered or rejected); NULL for other statuses
        failure_events.error_code,
        failure_events.error_message,
        failure_events.carrier,
        records.segments,
        records.opens,
        records.converted
    from records
    left join event_times on event_times.sendsms_id = records.sendsms_id
    left join failure_events
        on failure_events.sendsms_id = records.sendsms_id
        and failure_events.event_type = records.status
),

inbound_texts as (
    select
        sendsms_id,
        supporter_id,
        send_time
    from joined
    where direction = 'inbound' and not archived
        and supporter_id is not null and send_time is not null
),

outbound_candidates as (
    -- the messages an inbound text can answer: those to supporters who wrote back at all,
    -- one per supporter and instant (the highest id, so ties resolve the same every build)
    select
        supporter_id,
        send_time,
        max(sendsms_id) as sendsms_id
    from joined
    where is_message and send_time is not null
        and supporter_id in (select inbound_texts.supporter_id from inbound_texts)
    group by supporter_id, send_time
),

reply_timeline as (
    -- each supporter's candidate messages and inbound texts on one time line; at the same
    -- instant the message sorts first, so a text sent at that instant can answer it
    select
        supporter_id,
        send_time,
        0 as is_inbound,
        cast(null as bigint) as sendsms_id
    from outbound_candidates
    union all
    select
        supporter_id,
        send_time,
        1 as is_inbound,
        sendsms_id
    from inbound_texts
),

latest_message_before as (
    -- the send time of the supporter's latest message at or before each inbound text
    -- (an as-of lookup written as a running max, so every engine can run it)
    select
        sendsms_id,
        supporter_id,
        send_time,
        is_inbound,
        max(case when is_inbound = 0 then send_time end) over (
            partition by supporter_id
            order by send_time, is_inbound
            rows between unbounded preceding and current row
        ) as message_send_time
    from reply_timeline
),

reply_links as (
    -- an inbound text replies to the supporter's latest message sent at or before it,
    -- if that message was sent at most 72 hours earlier
    select
        latest_message_before.sendsms_id,
        outbound_candidates.sendsms_id as reply_to_sendsms_id
    from latest_message_before
    inner join outbound_candidates
        on outbound_candidates.supporter_id = latest_message_before.supporter_id
        and outbound_candidates.send_time = latest_message_before.message_send_time
    where latest_message_before.is_inbound = 1
        and latest_message_before.send_time
            <= latest_message_before.message_send_time + interval 72 hour
),

reply_counts as (
    select
        reply_to_sendsms_id as sendsms_id,
        count(*) as replies
    from reply_links
    group by reply_to_sendsms_id
),

final as (
    select
        joined.sendsms_id,
        joined.bulk_sms_id,
        joined.campaign_description,
        joined.campaign_scheduled_at,
        joined.supporter_id,
        joined.associated_number,
        joined.direction_code,
        joined.direction,
        joined.archived,
        joined.is_message,
        joined.status_code,
        joined.status,
        joined.status_category,
        joined.created_at,
        joined.updated_at,
        joined.send_time,
        -- send_date: the UTC calendar date of send_time
        cast(timezone('UTC', joined.send_time) as date) as send_date,
        joined.queued_at,
        joined.sent_at,
        joined.delivered_at,
        joined.failed_at,
        joined.undelivered_at,
        joined.rejected_at,
        -- seconds_to_send = sent_at - queued_at (NULL when either event is missing); the
        -- interval's seconds, exact to the microsecond (epoch() of each time is not: a double
        -- near 1.8e9 s keeps 2.4e-7 s, and DuckDB and PostgreSQL round it differently)
        epoch(joined.sent_at - joined.queued_at) as seconds_to_send,
        -- seconds_to_deliver = delivered_at - queued_at (NULL when either event is missing)
        epoch(joined.delivered_at - joined.queued_at) as seconds_to_deliver,
        joined.error_code,
        joined.error_message,
        joined.carrier,
        joined.segments,
        joined.opens,
        -- is_opened = opens > 0
        joined.opens > 0 as is_opened,
        joined.converted,
        reply_links.reply_to_sendsms_id,
        -- replies = inbound texts whose reply_to_sendsms_id is this record
        coalesce(reply_counts.replies, 0) as replies
    from joined
    left join reply_links on reply_links.sendsms_id = joined.sendsms_id
    left join reply_counts on reply_counts.sendsms_id = joined.sendsms_id
)

select * from final

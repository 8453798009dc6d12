-- depends_on: quorum_raw.sendsms, seeds.text_delivery_status, seeds.message_direction
-- One row per SendSMS record still present at the source: records that vanished upstream
-- (source_deleted_at set by `quorum-sms reconcile`) are left out here, so no mart sees them.
-- Renames, types and decodes the enumerations through the seed files.
with source as (
    select
        id,
        created,
        updated,
        "timestamp",
        send_time,
        bulk_sms,
        bulk_sms_id,
        bulk_sms_description,
        bulk_sms_send_time,
        supporter_uri,
        supporter_id,
        supporter_name,
        supporter_email,
        supporter_title,
        supporter_public_organization,
        associated_number,
        message_content,
        message_uuid,
        message_direction,
        current_status,
        effective_message_count,
        opens,
        converted,
        archived
    from quorum_raw.sendsms
    where source_deleted_at is null
),

statuses as (
    select status_code, status, status_category
    from seeds.text_delivery_status
),

directions as (
    select direction_code, direction
    from seeds.message_direction
),

renamed as (
    select
        cast(source.id as bigint) as sendsms_id,
        -- the parsed id, or parsed here from the resource URI when the loader left it empty
        cast(coalesce(
            source.bulk_sms_id,
            cast(nullif(regexp_extract(source.bulk_sms, '/bulksms/([0-9]+)', 1), '') as bigint)
        ) as bigint) as bulk_sms_id,
        cast(source.bulk_sms_description as varchar) as campaign_description,
        cast(source.bulk_sms_send_time as timestamptz) as campaign_scheduled_at,
        cast(coalesce(
            source.supporter_id,
            cast(nullif(
                regexp_extract(source.supporter_uri, '/newsupporter/([0-9]+)', 1), ''
            ) as bigint)
        ) as bigint) as supporter_id,
        cast(source.supporter_name as varchar) as supporter_name,
        cast(source.supporter_email as varchar) as supporter_email,
        cast(source.supporter_title as varchar) as supporter_title,
        cast(source.supporter_public_organization as varchar) as supporter_organization,
        cast(source.associated_number as varchar) as associated_number,
        cast(source.message_content as varchar) as message_content,
        cast(source.message_uuid as varchar) as message_uuid,
        cast(source.message_direction as bigint) as direction_code,
        cast(source.current_status as bigint) as status_code,
        cast(source.effective_message_count as bigint) as segments,
        cast(coalesce(source.opens, 0) as bigint) as opens,
        coalesce(cast(source.converted as boolean), false) as converted,
        coalesce(cast(source.archived as boolean), false) as archived,
        cast(source.created as timestamptz) as created_at,
        cast(source.updated as timestamptz) as updated_at,
        cast(source."timestamp" as timestamptz) as record_timestamp,
        cast(source.send_time as timestamptz) as send_time
    from source
),

final as (
    select
        renamed.sendsms_id,
        renamed.bulk_sms_id,
        renamed.campaign_description,
        renamed.campaign_scheduled_at,
        renamed.supporter_id,
        renamed.supporter_name,
        renamed.supporter_email,
        renamed.supporter_title,
        renamed.supporter_organization,
        renamed.associated_number,
        renamed.message_content,
        renamed.message_uuid,
        renamed.direction_code,
        directions.direction,
        renamed.status_code,
        statuses.status,
        statuses.status_category,
        renamed.segments,
        renamed.opens,
        renamed.converted,
        renamed.archived,
        renamed.created_at,
        renamed.updated_at,
        renamed.record_timestamp,
        renamed.send_time
    from renamed
    left join statuses on statuses.status_code = renamed.status_code
    left join directions on directions.direction_code = renamed.direction_code
)

select * from final

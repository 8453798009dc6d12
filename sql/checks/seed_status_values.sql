-- depends_on: seeds.text_delivery_status
-- hint: Every status needs a name and a status_category of in_flight, delivered, failed or
-- hint: inbound; fix sql/seeds/text_delivery_status.csv.
with statuses as (
    select * from seeds.text_delivery_status
),

final as (
    select status_code, status, status_category
    from statuses
    where status is null
        or status_category not in ('in_flight', 'delivered', 'failed', 'inbound')
)

select * from final

-- depends_on: seeds.message_direction
-- hint: The marts know the directions inbound and outbound only; fix
-- hint: sql/seeds/message_direction.csv.
with directions as (
    select * from seeds.message_direction
),

final as (
    select direction_code, direction
    from directions
    where direction is null or direction not in ('inbound', 'outbound')
)

select * from final

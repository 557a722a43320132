-- in_flight: orders per state and current step, with the oldest and how many are in jeopardy.
-- grain: state, current_step   key: state, current_step
-- inputs: orders (gold/oss/orders)
with orders as (select * from orders),

by_state as (
    select state,
           case when state in ('completed', 'failed', 'cancelled') then null else current_step end as current_step,
           count(*) as count_orders,
           count(*) filter (where jeopardy_id is not null) as count_in_jeopardy,
           min(requested_at) as oldest_requested_at,
           state not in ('completed', 'failed', 'cancelled') as is_open
    from orders
    group by all
)

select * from by_state order by is_open desc, state, current_step

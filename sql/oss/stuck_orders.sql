-- stuck_orders: orders that need a look: held for a human, or with a step in jeopardy now.
-- grain: order_id   key: order_id
-- inputs: orders (gold/oss/orders)
with orders as (select * from orders),

stuck as (
    select order_id, order_type, channel, state, current_step, current_target, attempt, retries,
           failure_reason, jeopardy_since, requested_at, updated_at,
           case when state = 'held' then 'held' else 'jeopardy' end as why
    from orders
    where state = 'held' or (jeopardy_id is not null and state not in ('completed', 'failed', 'cancelled'))
)

select * from stuck order by requested_at, order_id

-- jeopardy_rate: share of orders with at least one step in jeopardy (past its SLA share), by product.
-- grain: order_type   key: order_type
-- inputs: orders (gold/oss/orders), jeopardy (gold/oss/jeopardy)
with orders as (select * from orders),
     jeopardy as (select * from jeopardy),

alerts as (
    select order_id, count(*) as count_alerts, count(*) filter (where status = 'open') as count_open
    from jeopardy
    group by order_id
),

by_product as (
    select o.order_type,
           count(*) as count_orders,
           count(a.order_id) as count_in_jeopardy,
           coalesce(sum(a.count_alerts), 0)::bigint as count_alerts,
           coalesce(sum(a.count_open), 0)::bigint as count_open_alerts,
           count(a.order_id) / count(*) as jeopardy_rate
    from orders o
    left join alerts a using (order_id)
    group by o.order_type
)

select * from by_product order by order_type

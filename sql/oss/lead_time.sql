-- lead_time: order-to-activation lead time of completed orders, by product and channel.
-- grain: order_type, channel   key: order_type, channel
-- inputs: orders (gold/oss/orders)
with orders as (select * from orders),

completed as (
    select order_type, channel, lead_time_s
    from orders
    where state = 'completed'
),

by_product_channel as (
    select order_type, channel,
           count(*) as count_completed,
           quantile_cont(lead_time_s, 0.5) as lead_time_p50_s,
           quantile_cont(lead_time_s, 0.95) as lead_time_p95_s,
           max(lead_time_s) as lead_time_max_s
    from completed
    group by order_type, channel
)

select * from by_product_channel order by order_type, channel

-- fallout: orders that fell out (failed, or held for a human) at a step, of the orders that reached it.
-- grain: step, target   key: step, target
-- inputs: orders (gold/oss/orders), transitions (gold/oss/order_transitions)
with orders as (select * from orders),
     transitions as (select * from transitions),

reached as (
    select step, target, count(distinct order_id) as count_reached
    from transitions
    where kind = 'step_sent'
    group by step, target
),

fell_out as (
    -- the step an order was held at, or whose permanent failure made it compensate
    select t.step, t.target, count(distinct t.order_id) as count_fallout
    from transitions t
    join orders o using (order_id)
    where (o.state = 'failed' and t.kind = 'step_failed' and o.failed_step = t.step)
       or (o.state = 'held' and t.kind = 'held' and o.failed_step = t.step)
    group by t.step, t.target
),

rates as (
    select r.step, r.target, r.count_reached,
           coalesce(f.count_fallout, 0) as count_fallout,
           coalesce(f.count_fallout, 0) / r.count_reached as fallout_rate
    from reached r
    left join fell_out f using (step, target)
)

select * from rates order by fallout_rate desc, step, target

-- allowance_prior: one row per (subscriber_id, cycle, pool_id) with the quantity already consumed
-- by records rated outside this run (key: all three). Pools are allowances ('<plan>.<type>') and
-- data tiers ('tier:<tiers_id>'). A rerate starts from zero: it rates the whole cycle again.
with params as (
    select * from run_params
),
late_pools as (
    -- only subscribers with late records in scope can have earlier consumption in their cycle
    select distinct u.subscriber_id, strftime(u.started_at, '%Y-%m') as cycle
    from usage_scope u
    join params p on u.started_at < p.cycle_start
),
outside as (
    select e.*
    from effective_rated_usage e
    join params p on p.mode = 'bill' and e.billed_cycle <> p.cycle and e.cycle <= p.cycle
    semi join late_pools l on l.subscriber_id = e.subscriber_id and l.cycle = e.cycle
),
pools as (
    select subscriber_id, cycle, allowance_id as pool_id, sum(included_base)::bigint as used_base
    from outside where allowance_id is not null
    group by all
    union all
    select subscriber_id, cycle, 'tier:' || tiers_id as pool_id, sum(tier_billed_base)::bigint as used_base
    from outside where tiers_id is not null
    group by all
)
select * from pools

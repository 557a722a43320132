-- allowance_prior: one row per (subscriber_id, cycle, pool_id) with the quantity already consumed
-- by records rated outside this run (key: all three). Pools are allowances ('<plan>.<type>') and
-- data tiers ('tier:<tiers_id>'). Only late records can find earlier consumption in their cycle;
-- a rerate starts from zero: it rates the whole cycle again.
with late_pools as (
    select distinct u.subscriber_id, c.cycle
    from late_usage u
    join minute_calendar c using (minute_no)
),
outside as (
    select e.*
    from effective_rated_usage e
    semi join late_pools l on l.subscriber_id = e.subscriber_id and l.cycle = e.cycle
    where e.billed_cycle <> run_cycle()
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

-- prior_use: one row per record in scope whose allowance or tier table records rated outside
-- this run already drew on (key: rid, kind), with that quantity (allowance_prior). Only late
-- records can have any.
with context as (
    select * from usage_context where reason is null
),
keyed as (
    select c.rid, s.subscriber_id, k.cycle, k.allowance_id, k.tiers_id
    from context c
    join rating_keys k using (rk_id)
    join subscriber_timeline s using (st_no)
),
used as (
    select k.rid, 'allowance' as kind, p.used_base
    from keyed k
    join allowance_prior p on p.subscriber_id = k.subscriber_id and p.cycle = k.cycle and p.pool_id = k.allowance_id
    union all
    select k.rid, 'tier', p.used_base
    from keyed k
    join allowance_prior p on p.subscriber_id = k.subscriber_id and p.cycle = k.cycle and p.pool_id = 'tier:' || k.tiers_id
)
select * from used

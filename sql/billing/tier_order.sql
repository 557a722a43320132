-- tier_order: the rated records priced by a tier table, in volume order (one row per record,
-- key: rid): per subscriber, cycle and tier table, by started_at, with the volume each puts on
-- the tiers: its charged part (after the allowance: usage_context.included_base) rounded up to
-- whole increments. See allowance_order.
with context as (
    select * from usage_context where reason is null
),
keys as (
    select * from rating_keys where tiers_code is not null
),
ordered as (
    -- one integer names the pool (subscriber, cycle yyyymm, pool code): sorting two integer keys is cheap
    select c.rid, (c.sub_no::bigint * 1000000 + k.cycle_no) * 1000 + k.tiers_code as pool_key, epoch_us(c.started_at) as started_us,
           ceil_div(c.quantity_base - c.included_base, k.increment) * k.increment as tier_billed_base
    from context c
    join keys k using (rk_id)
)
select * from ordered
order by pool_key, started_us

-- allowance_order: the rated records that draw on an allowance, in consumption order (one row
-- per record, key: rid): per subscriber, cycle and allowance, by started_at, with what
-- pipelines/billing/running.py needs to walk it (it orders records of one pool starting in the
-- same microsecond by record_id). Sorting only these narrow rows is what keeps rating cheap.
with context as (
    select * from usage_context where reason is null
),
keys as (
    select * from rating_keys where allowance_code is not null
),
ordered as (
    -- one integer names the pool (subscriber, cycle yyyymm, pool code): sorting two integer keys is cheap
    select c.rid, (c.sub_no::bigint * 1000000 + k.cycle_no) * 1000 + k.allowance_code as pool_key, epoch_us(c.started_at) as started_us,
           c.quantity_base, c.allowance_base
    from context c
    join keys k using (rk_id)
)
select * from ordered
order by pool_key, started_us

-- rerated_usage: one row per record of the rerated cycle whose rating changed (key: record_id,
-- rerate_seq): the new values next to the charge that was in force before this rerate.
with params as (
    select * from run_params
),
fresh as (
    select * from rated_usage
),
current as (
    select * from effective_rated_usage
),
changed as (
    select f.record_id, f.subscriber_id, f.account_id, f.cycle, f.event_type, f.tariff_version, f.rate_id,
           f.allowance_id, f.included_base, f.charged_base, f.tiers_id, f.tier_billed_base, f.charge,
           c.charge as previous_charge, c.tariff_version as previous_tariff_version, f.currency,
           p.target_cycle as billed_cycle, p.rerate_seq, p.run_id
    from fresh f
    join current c using (record_id)
    cross join params p
    where f.charge <> c.charge
       or f.included_base <> c.included_base
       or coalesce(f.tier_billed_base, -1) <> coalesce(c.tier_billed_base, -1)
       or f.tariff_version <> c.tariff_version
)
select * from changed

-- rated_usage: one row per usage record rated in this run (key: record_id).
-- usage_context gives each record its rating key (rate, allowance, tiers); the allowance was
-- consumed in event-time order (started_at, record_id) per subscriber, cycle and allowance, and
-- the tier volume accumulated per subscriber, cycle and tier table (pipelines/billing/running.py:
-- included_base, tier_billed_base). An event that straddles the end of an allowance is split
-- into an included and a charged part; the charged part's increments (rated_base) and its
-- rounded, capped charge (charge_e4) are rated_charges' (see there for the pricing rules).
-- Mobile-terminated events are rated at zero.
with params as (
    select * from run_params
),
context as (
    select * exclude (type_code, unknown_subscriber_id) from usage_context where reason is null
),
keyed as (
    select c.*, s.subscriber_id, s.account_id, case when k.is_mo then c.quantity_base - c.included_base else 0 end as charged_base,
           k.cycle, k.version as tariff_version, k.event_type, k.zone, k.band, k.roaming_zone, k.plan_id, k.rate_id,
           k.allowance_id, k.tiers_id, k.currency
    from context c
    join rating_keys k using (rk_id)
    join subscriber_timeline s using (st_no)
),
final as (
    select c.record_id, c.subscriber_id, c.account_id, c.cycle, p.target_cycle as billed_cycle,
           c.cycle < p.target_cycle and p.mode = 'bill' as is_late,
           c.event_type, c.started_at, c.tariff_version, c.rate_id, c.plan_id, c.zone, c.band, c.roaming_zone,
           c.allowance_id, c.tiers_id, c.quantity_base, c.included_base, c.charged_base,
           c.rated_base,
           c.tier_billed_base,
           e4_to_money(c.charge_e4) as charge,
           c.currency,
           case when c.included_base > 0 and c.charged_base = 0 then 'included'::billing_rating_tag
                else 'non-included'::billing_rating_tag end as rating_tag,
           p.run_id::billing_run as rating_run
    from keyed c
    cross join params p
)
select * from final

-- rated_usage: one row per usage record rated in this run (key: record_id).
-- Allowances are consumed in event-time order (started_at, record_id) per subscriber, cycle and
-- allowance; an event that straddles the end of an allowance is split into an included and a
-- charged part. The charged part is priced CGRateS-style: connect fee + price per rate_unit with
-- the quantity rounded up to the increment, switching to price2/increment2 after group2_start
-- (the second interval prices what the first interval's whole increments do not cover);
-- data rates may instead use graduated or volume tiers over the cycle's charged volume. The
-- event charge is rounded once (rounding method + decimals of the rate), then min_charge and
-- max_cost apply (max_cost last). Mobile-terminated events are rated at zero.
with params as (
    select * from run_params
),
context as (
    -- usage_context is materialised by the runner: its rowid is a cheap row key for the windows
    select rowid as rid, * from usage_context where unrated_reason is null
),
rates as (
    select * from reference_tariff_rates
),
tiers as (
    select * from reference_tariff_tiers
),
prior as (
    select * from allowance_prior
),
allowance_events as (
    -- windows run on narrow rows: only what ordering and consumption need
    select rid, subscriber_id, cycle, allowance_id, started_at, record_id, quantity_base, allowance_base
    from context
    where allowance_id is not null
),
allowance_running as (
    select a.rid, a.quantity_base, a.allowance_base,
           coalesce(pa.used_base, 0)
             + coalesce(sum(a.quantity_base) over (
                   partition by a.subscriber_id, a.cycle, a.allowance_id order by a.started_at, a.record_id
                   rows between unbounded preceding and 1 preceding), 0) as used_before
    from allowance_events a
    left join prior pa on pa.subscriber_id = a.subscriber_id and pa.cycle = a.cycle and pa.pool_id = a.allowance_id
),
allowance_split as (
    select rid, greatest(0, least(quantity_base, allowance_base - used_before))::bigint as included_base
    from allowance_running
),
charged as (
    select c.*, coalesce(s.included_base, 0) as included_base,
           case when c.is_mo then c.quantity_base - coalesce(s.included_base, 0) else 0 end as charged_base,
           r.unit, r.connect_fee, r.price, r.rate_unit, r.increment, r.group2_start, r.price2, r.rate_unit2,
           r.increment2, r.tiers_id, r.min_charge, r.max_cost, r.rounding, r.decimals
    from context c
    left join allowance_split s using (rid)
    left join rates r on r.version = c.tariff_version and r.rate_id = c.rate_id
),
intervals as (
    select *,
           case when group2_start is null then charged_base else least(charged_base, group2_start) end as part1_base
    from charged
),
first_interval as (
    select *, ceil_div(part1_base, increment) * increment as billed1_base
    from intervals
),
billed as (
    select *,
           case when charged_base > billed1_base
                then ceil_div(charged_base - billed1_base, increment2) * increment2 else 0 end as billed2_base,
           case when tiers_id is not null then ceil_div(charged_base, increment) * increment end as tier_billed_base
    from first_interval
),
tier_events as (
    select rid, subscriber_id, cycle, tiers_id, started_at, record_id, tier_billed_base
    from billed
    where tiers_id is not null
),
tier_running as (
    select t.rid,
           coalesce(pt.used_base, 0)
             + coalesce(sum(t.tier_billed_base) over (
                   partition by t.subscriber_id, t.cycle, t.tiers_id order by t.started_at, t.record_id
                   rows between unbounded preceding and 1 preceding), 0) as tier_before_base,
           coalesce(pt.used_base, 0)
             + sum(t.tier_billed_base) over (partition by t.subscriber_id, t.cycle, t.tiers_id) as tier_total_base
    from tier_events t
    left join prior pt on pt.subscriber_id = t.subscriber_id and pt.cycle = t.cycle and pt.pool_id = 'tier:' || t.tiers_id
),
tier_position as (
    select b.*, r.tier_before_base, r.tier_total_base
    from billed b
    left join tier_running r using (rid)
),
tier_lists as (
    select version, tiers_id, any_value(mode) as mode,
           list(struct_pack(from_units := from_units, upto_units := upto_units, price_micro := to_micro(price)) order by seq) as bands
    from tiers
    group by version, tiers_id
),
tier_cost as (
    -- numerator in micro-units x base units, over rate_unit; graduated: each slice of the
    -- cycle's running volume at its tier; volume: the whole quantity at the tier the cycle
    -- total reaches (tier bounds are in rate units)
    select t.*,
           case
               when t.tier_billed_base is null or t.tier_billed_base = 0 then null
               when x.mode = 'graduated' then list_sum(list_transform(x.bands, lambda b:
                   greatest(0::hugeint,
                            least(t.tier_before_base + t.tier_billed_base, coalesce(b.upto_units * t.rate_unit, t.tier_before_base + t.tier_billed_base))
                            - greatest(t.tier_before_base, b.from_units * t.rate_unit)) * b.price_micro))
               else list_sum(list_transform(x.bands, lambda b:
                   case when (t.tier_total_base > b.from_units * t.rate_unit or b.from_units = 0)
                             and (b.upto_units is null or t.tier_total_base <= b.upto_units * t.rate_unit)
                        then t.tier_billed_base::hugeint * b.price_micro else 0::hugeint end))
           end as tier_num
    from tier_position t
    left join tier_lists x on x.version = t.tariff_version and x.tiers_id = t.tiers_id
),
priced as (
    select t.*,
           case
               when t.charged_base = 0 then 0::hugeint
               when t.tiers_id is not null then
                   round_div((to_micro(t.connect_fee) * t.rate_unit + coalesce(t.tier_num, 0)) * pow(10, t.decimals)::hugeint,
                             1000000::hugeint * t.rate_unit, t.rounding)
               else
                   round_div((to_micro(t.connect_fee) * t.rate_unit * coalesce(t.rate_unit2, 1)
                              + to_micro(t.price) * t.billed1_base * coalesce(t.rate_unit2, 1)
                              + coalesce(to_micro(t.price2), 0) * t.billed2_base * t.rate_unit) * pow(10, t.decimals)::hugeint,
                             1000000::hugeint * t.rate_unit * coalesce(t.rate_unit2, 1), t.rounding)
           end * pow(10, 4 - coalesce(t.decimals, 4))::hugeint as rounded_e4
    from tier_cost t
),
capped as (
    select *,
           case when charged_base = 0 then 0::hugeint
                else least(greatest(rounded_e4, to_e4(min_charge)), coalesce(to_e4(max_cost), greatest(rounded_e4, to_e4(min_charge))))
           end as charge_e4
    from priced
),
final as (
    select c.record_id, c.subscriber_id, c.account_id, c.cycle, p.target_cycle as billed_cycle,
           c.cycle < p.target_cycle and p.mode = 'bill' as is_late,
           c.event_type, c.started_at, c.event_date, c.is_mo, c.tariff_version, c.rate_id, c.plan_id, c.zone, c.band,
           c.roaming_zone, c.visited_plmn, c.ott_partner_id, c.allowance_id, c.tiers_id, c.unit_base, c.quantity_base,
           c.included_base, c.charged_base,
           (c.billed1_base + c.billed2_base)::bigint as rated_base,
           c.tier_billed_base::bigint as tier_billed_base,
           e4_to_money(c.charge_e4) as charge,
           c.currency,
           case when c.included_base > 0 and c.charged_base = 0 then 'included' else 'non-included' end as rating_tag,
           p.run_id as rating_run
    from capped c
    cross join params p
)
select * from final

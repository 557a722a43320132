-- rating_keys: one row per combination a record can be rated with (key: rk_id; unique on
-- calendar_code, type_code, zone_code, roaming_code, plan_code, is_mo): its cycle, tariff version
-- and band (minute_calendar), rate (the most specific, from rate_lookup; none: no_tariff),
-- allowance, tier table and the rate's parameters. Every plan of the version appears, with
-- unknown destination and visited network codes, so a record without a row is on a plan its
-- version does not have. Mobile-terminated rows (zone_code 0) have no rate: such events are
-- rated at zero. A record carries only rk_id through rating; what it shares with other records
-- lives here, once.
with calendar as (
    select distinct calendar_code, cycle, tariff_version as version, band from minute_calendar where tariff_version is not null
),
codes as (
    select * from rating_codes
),
event_zones as (
    -- voice and SMS go to a destination zone (or an unknown one) or are mobile-terminated ('');
    -- data has no destination ('any')
    select distinct d.version, t.event_type, d.zone, true as is_mo
    from reference_tariff_destinations d
    cross join (select unnest(['voice', 'sms']) as event_type) t
    union all
    select version, unnest(['voice', 'sms']), '?', true from reference_tariff_versions
    union all
    select version, unnest(['voice', 'sms']), '', false from reference_tariff_versions
    union all
    select version, 'data', 'any', true from reference_tariff_versions
),
roaming as (
    select distinct version, roaming_zone from reference_tariff_roaming_zones
    union all
    select version, unnest(['home', '?']) from reference_tariff_versions
),
combos as (
    select c.calendar_code, c.cycle, c.version, c.band, e.event_type, e.zone, r.roaming_zone, p.plan_id, e.is_mo
    from calendar c
    join event_zones e on e.version = c.version
    join roaming r on r.version = c.version
    join reference_tariff_plans p on p.version = c.version
),
with_rate as (
    select k.calendar_code, case k.event_type when 'voice' then 0 when 'sms' then 1 else 2 end::tinyint as type_code,
           zc.code as zone_code, rc.code as roaming_code, pc.code as plan_code, k.is_mo,
           k.cycle::billing_cycle as cycle, replace(k.cycle, '-', '')::integer as cycle_no, k.version, k.band::billing_band as band,
           k.event_type::billing_event_type as event_type,
           case when k.zone not in ('', '?') then k.zone end::billing_zone as zone,
           case when k.roaming_zone <> '?' then k.roaming_zone end::billing_roaming_zone as roaming_zone,
           k.plan_id::billing_plan as plan_id, lk.rate_id::billing_rate as rate_id,
           r.connect_fee, r.price, r.rate_unit, r.increment, r.group2_start, r.price2, r.rate_unit2, r.increment2,
           r.tiers_id::billing_tiers as tiers_id, r.min_charge, r.max_cost, r.rounding, r.decimals, v.currency::billing_currency as currency,
           al.allowance_id::billing_allowance as allowance_id, al.quantity_base as allowance_quantity, t.mode as tier_mode
    from combos k
    join reference_tariff_versions v on v.version = k.version
    join codes zc on zc.kind = 'zone' and zc.value = k.zone
    join codes rc on rc.kind = 'roaming' and rc.value = k.roaming_zone
    join codes pc on pc.kind = 'plan' and pc.value = k.plan_id
    left join rate_lookup lk
      on k.is_mo and lk.version = k.version and lk.event_type = k.event_type and lk.zone = k.zone
     and lk.band = k.band and lk.roaming_zone = k.roaming_zone
    left join reference_tariff_rates r on r.version = k.version and r.rate_id = lk.rate_id
    left join reference_tariff_allowances al
      on lk.rate_id is not null and al.version = k.version and al.plan_id = k.plan_id and al.event_type = k.event_type
     and (al.zones is null or list_contains(al.zones, k.zone))
     and (al.roaming is null or list_contains(al.roaming, k.roaming_zone))
    left join (select distinct version, tiers_id, mode from reference_tariff_tiers) t on t.version = k.version and t.tiers_id = r.tiers_id
),
tier_bands as (
    -- the tier table's bands with bounds in base units of the referring rate
    select version, tiers_id, list(struct_pack(lo := from_units, hi := upto_units, price_micro := to_micro(price)) order by seq) as bands
    from reference_tariff_tiers
    group by version, tiers_id
),
pricing as (
    -- each charge's constant parts, in integers: a charge is round(numerator / denominator) x e4_scale
    -- 1e-4 units, numerator = base_numerator + price1_factor x billed1 + price2_factor x billed2 (+ the
    -- tier cost x tier_factor), so a record needs a few multiplications, not the rate's arithmetic
    select w.*,
           case w.rounding when 'up' then 0 when 'down' then 1 else 2 end::tinyint as rounding_code,
           pow(10, w.decimals)::hugeint as scale,
           pow(10, 4 - w.decimals)::bigint as e4_scale,
           to_e4(w.min_charge)::bigint as min_e4, to_e4(w.max_cost)::bigint as max_e4,
           list_transform(b.bands, lambda x: struct_pack(lo := x.lo * w.rate_unit, hi := x.hi * w.rate_unit, price_micro := x.price_micro))
               as tier_bands
    from with_rate w
    left join tier_bands b on b.version = w.version and b.tiers_id = w.tiers_id
),
factors as (
    select *,
           case when tiers_id is null then to_micro(connect_fee) * rate_unit * coalesce(rate_unit2, 1) * scale
                else to_micro(connect_fee) * rate_unit * scale end as base_numerator,
           coalesce(to_micro(price), 0) * coalesce(rate_unit2, 1) * scale as price1_factor,
           coalesce(to_micro(price2), 0) * rate_unit * scale as price2_factor,
           scale as tier_factor,
           case when tiers_id is null then 1000000::hugeint * rate_unit * coalesce(rate_unit2, 1)
                else 1000000::hugeint * rate_unit end as denominator
    from pricing
),
final as (
    select row_number() over (order by calendar_code, type_code, zone_code, roaming_code, plan_code, is_mo)::integer as rk_id,
           *,
           case when allowance_id is not null then (dense_rank() over (order by allowance_id))::integer end as allowance_code,
           case when tiers_id is not null then (dense_rank() over (order by tiers_id))::integer end as tiers_code,
           -- what usage_charges sums by besides the account: one small integer
           (dense_rank() over (order by cycle, event_type, version, currency))::integer as charge_code
    from factors
)
select * from final

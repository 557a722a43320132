-- rate_lookup: one row per (version, event_type, zone, band, roaming_zone) naming the rate that
-- applies (key: all five). The most specific rate wins: an exact zone beats 'any' (4), then an
-- exact roaming zone (2), then an exact band (1); the catalog loader refuses exact ties.
with rates as (
    select * from reference_tariff_rates
),
zones as (
    select distinct version, zone from reference_tariff_destinations
    union
    select version, 'any' from reference_tariff_versions
),
bands as (
    select unnest(['peak', 'offpeak', 'weekend']) as band
),
roaming as (
    select distinct version, roaming_zone from reference_tariff_roaming_zones
    union
    select version, 'home' from reference_tariff_versions
),
combos as (
    select z.version, z.zone, b.band, r.roaming_zone
    from zones z
    cross join bands b
    join roaming r using (version)
),
candidates as (
    select c.*, x.event_type, x.rate_id,
           (x.zone <> 'any')::int * 4 + (x.roaming <> 'any')::int * 2 + (x.band <> 'any')::int as specificity
    from combos c
    join rates x
      on x.version = c.version
     and (x.zone = c.zone or x.zone = 'any')
     and (x.band = c.band or x.band = 'any')
     and (x.roaming = c.roaming_zone or x.roaming = 'any')
),
best as (
    select version, event_type, zone, band, roaming_zone, arg_max(rate_id, specificity) as rate_id
    from candidates
    group by all
)
select * from best

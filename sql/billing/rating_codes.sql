-- rating_codes: one row per (kind, value) with the small integer that stands for it while
-- records are joined to their rating key (key: kind, value). Kinds: 'zone' ('' = mobile-
-- terminated: no destination, code 0; '?' = no matching prefix, 1; 'any' = data, 2; then the
-- catalog's zones), 'roaming' ('?' = unknown visited network, 0; 'home', 1; then the roaming
-- zones), 'plan' (the catalog's plans). Integers hash and compare far faster than strings.
with zones as (
    select distinct zone as value from reference_tariff_destinations
),
roaming as (
    select distinct roaming_zone as value from reference_tariff_roaming_zones
),
plans as (
    select distinct plan_id as value from reference_tariff_plans
),
codes as (
    select 'zone' as kind, value, (2 + row_number() over (order by value))::integer as code from zones
    union all select 'zone', '', 0
    union all select 'zone', '?', 1
    union all select 'zone', 'any', 2
    union all select 'roaming', value, (1 + row_number() over (order by value))::integer from roaming
    union all select 'roaming', '?', 0
    union all select 'roaming', 'home', 1
    union all select 'plan', value, (row_number() over (order by value))::integer from plans
)
select * from codes

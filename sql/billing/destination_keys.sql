-- destination_keys: one row per (tariff version, number key) of the mobile-originated voice and
-- SMS in scope (key: both): the zone (and its rating_codes code) of the longest destination
-- prefix matching the key. Every prefix is at most `width` digits, so a called number's first
-- `width` characters (its number key) decide its zone: the zone is looked up once per distinct
-- key, not once per record.
with scope as (
    select * from usage_scope
),
width as (
    select max(prefix_len) as width from reference_tariff_destinations
),
number_keys as (
    select distinct left(u.called_number, w.width) as number_key
    from scope u
    cross join width w
    where u.event_type <> 'data' and u.is_mo and u.called_number is not null
),
key_zones as (
    select d.version, k.number_key, arg_max(d.zone, d.prefix_len) as zone
    from number_keys k
    join reference_tariff_destinations d on starts_with(k.number_key, d.prefix)
    group by d.version, k.number_key
)
select z.*, c.code as zone_code
from key_zones z
join rating_codes c on c.kind = 'zone' and c.value = z.zone

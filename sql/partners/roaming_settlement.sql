-- roaming_settlement: one row per usage day and visited network of our subscribers' usage on a
-- roaming partner's networks, charged at the wholesale (inter-operator) rates of the catalog
-- version in force at each event.
-- grain: (usage_date, visited_plmn)   key: usage_date, visited_plmn
-- balancing: total_charge = voice_charge + sms_charge + data_charge
-- inputs: silver_usage, partner_plmns (visited_plmn), wholesale_rates (catalog versions)
with usage as (select * from silver_usage),
     plmns as (select * from partner_plmns),
     rates as (select * from wholesale_rates),

on_partner_network as (
    select u.*, cast(u.started_at as date) as usage_date
    from usage u
    join plmns p on u.visited_plmn = p.visited_plmn
),

rated as (
    -- each event takes the wholesale rate of the catalog version valid at its start
    select e.*, r.version as tariff_version, r.partner as partner_name, r.currency,
           cast(r.per_minute * 1000000 as bigint) as per_minute_e6,
           r.per_sms, r.per_mb
    from on_partner_network e
    asof left join rates r on e.visited_plmn = r.visited_plmn and e.started_at >= r.valid_from
),

per_version as (
    select usage_date, visited_plmn, tariff_version,
           any_value(partner_name) as partner_name, any_value(currency) as currency,
           count(*) as count_events,
           count(*) filter (where event_type = 'voice') as count_calls,
           coalesce(sum(duration_s) filter (where event_type = 'voice'), 0) as voice_s,
           count(*) filter (where event_type = 'sms') as count_sms,
           coalesce(sum(bytes_up + bytes_down) filter (where event_type = 'data'), 0) as data_bytes,
           any_value(per_minute_e6) as per_minute_e6, any_value(per_sms) as per_sms, any_value(per_mb) as per_mb
    from rated
    group by all
),

charged as (
    -- money stays exact: voice in integer 1e-4 units rounded half up, SMS and MB as decimals
    select *,
           cast(cast((cast(voice_s as hugeint) * per_minute_e6 + 3000) // 6000 as decimal(18, 0)) * 0.0001 as decimal(18, 4)) as voice_charge,
           cast(count_sms * per_sms as decimal(18, 4)) as sms_charge,
           cast(cast(data_bytes as decimal(38, 0)) * per_mb * 0.000001 as decimal(18, 4)) as data_charge
    from per_version
),

subscribers_per_day as (
    select usage_date, visited_plmn, count(distinct subscriber_id) as count_subscribers
    from on_partner_network
    group by all
),

settlement as (
    select c.usage_date, c.visited_plmn,
           any_value(c.partner_name) as partner_name,
           sum(c.count_events)::bigint as count_events,
           any_value(s.count_subscribers)::bigint as count_subscribers,
           sum(c.count_calls)::bigint as count_calls,
           sum(c.voice_s)::bigint as voice_s,
           cast(cast((sum(c.voice_s)::hugeint * 10000 + 30) // 60 as decimal(18, 0)) * 0.0001 as decimal(18, 4)) as voice_minutes,
           sum(c.count_sms)::bigint as count_sms,
           cast(cast(sum(c.data_bytes) as decimal(38, 0)) * 0.000001 as decimal(18, 4)) as data_mb,
           cast(sum(c.voice_charge) as decimal(18, 4)) as voice_charge,
           cast(sum(c.sms_charge) as decimal(18, 4)) as sms_charge,
           cast(sum(c.data_charge) as decimal(18, 4)) as data_charge,
           cast(sum(c.voice_charge) + sum(c.sms_charge) + sum(c.data_charge) as decimal(18, 4)) as total_charge,
           any_value(c.currency) as currency,
           max(c.tariff_version)::bigint as tariff_version
    from charged c
    join subscribers_per_day s using (usage_date, visited_plmn)
    group by c.usage_date, c.visited_plmn
)

select * from settlement

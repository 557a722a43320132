-- usage_context: one row per record in scope (key: record_id) with its cycle, subscriber
-- interval, tariff version, time band, destination zone (longest prefix), roaming zone, rate
-- and allowance (prorated by the days of the cycle billed at the plan), or the reason it cannot
-- be rated: the first of unknown_subscriber, before_activation, no_subscriber_state,
-- after_termination, no_tariff (no version at its time), then for mobile-originated events
-- unknown_plan, unknown_destination, unknown_roaming_zone, no_tariff (no matching rate).
-- Mobile-terminated events need no plan, destination or rate: they are rated at zero. Records
-- of an account in account_problems are 'held': neither rated nor unrated by this run.
with scope as (
    select * from usage_scope
),
subscribers as (
    select * from silver_subscribers
),
first_seen as (
    select subscriber_id, min(valid_from) as first_valid_from
    from subscribers
    group by subscriber_id
),
timed as (
    select u.*, c.cycle, c.tariff_version, c.band
    from scope u
    join minute_calendar c using (started_minute)
),
prefix_width as (
    select version, max(prefix_len) as width from reference_tariff_destinations group by version
),
number_keys as (
    -- every destination prefix is at most `width` digits, so the first `width` digits decide the zone
    select distinct t.tariff_version as version, w.width, left(t.called_number, w.width) as number_key
    from timed t
    join prefix_width w on w.version = t.tariff_version
    where t.event_type <> 'data' and t.is_mo and t.called_number is not null
),
key_zones as (
    select k.version, k.number_key, arg_max(d.zone, d.prefix_len) as zone
    from number_keys k
    join reference_tariff_destinations d on d.version = k.version and starts_with(k.number_key, d.prefix)
    group by k.version, k.number_key
),
zoned as (
    select t.*,
           case when t.event_type = 'data' then 'any' else kz.zone end as zone,
           case when t.visited_plmn is null then 'home' else rz.roaming_zone end as roaming_zone
    from timed t
    left join prefix_width w on w.version = t.tariff_version
    left join key_zones kz on kz.version = t.tariff_version and kz.number_key = left(t.called_number, w.width)
    left join reference_tariff_roaming_zones rz on rz.version = t.tariff_version and rz.visited_plmn = t.visited_plmn
),
with_subscriber as (
    select z.*, s.account_id, s.plan_id, s.status, s.currency, f.subscriber_id is not null as is_known, f.first_valid_from,
           h.account_id is not null as is_held
    from zoned z
    left join first_seen f on f.subscriber_id = z.subscriber_id
    left join subscribers s
      on s.subscriber_id = z.subscriber_id and s.valid_from <= z.started_at
     and (s.valid_to is null or z.started_at < s.valid_to)
    left join account_problems h on h.account_id = s.account_id
),
matched as (
    select w.*, pl.plan_id is not null as is_plan_known, lk.rate_id, al.allowance_id,
           round_half_up_div(al.quantity_base::hugeint * coalesce(pd.days, 0), coalesce(pd.days_in_cycle, 1))::bigint as allowance_base
    from with_subscriber w
    left join reference_tariff_plans pl on pl.version = w.tariff_version and pl.plan_id = w.plan_id
    left join rate_lookup lk
      on w.is_mo and lk.version = w.tariff_version and lk.event_type = w.event_type and lk.zone = w.zone
     and lk.band = w.band and lk.roaming_zone = w.roaming_zone
    left join reference_tariff_allowances al
      on w.is_mo and al.version = w.tariff_version and al.plan_id = w.plan_id and al.event_type = w.event_type
     and (al.zones is null or list_contains(al.zones, w.zone))
     and (al.roaming is null or list_contains(al.roaming, w.roaming_zone))
    left join plan_days pd
      on al.allowance_id is not null and pd.subscriber_id = w.subscriber_id and pd.account_id = w.account_id
     and pd.cycle = w.cycle and pd.plan_id = w.plan_id
),
classified as (
    select record_id, event_type, subscriber_id, started_at, event_date, quantity_base, unit_base, is_mo,
           visited_plmn, ott_partner_id, cycle, tariff_version, band, zone, roaming_zone, account_id, plan_id,
           currency, rate_id, allowance_id, allowance_base,
           case
               when not is_known then 'unknown_subscriber'
               when started_at < first_valid_from then 'before_activation'
               when account_id is null then 'no_subscriber_state'
               when is_held then 'held'
               when status = 'terminated' then 'after_termination'
               when tariff_version is null then 'no_tariff'
               when not is_mo then null
               when not is_plan_known then 'unknown_plan'
               when zone is null then 'unknown_destination'
               when roaming_zone is null then 'unknown_roaming_zone'
               when rate_id is null then 'no_tariff'
           end as unrated_reason
    from matched
)
select * from classified

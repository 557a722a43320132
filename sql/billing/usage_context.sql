-- usage_context: one row per record in scope (key: record_id) with what rating needs: its stretch
-- of subscriber time (account, plan, days at the plan), its rating key (rk_id: cycle, tariff
-- version, band, destination zone by longest prefix, roaming zone, plan, direction -> rate,
-- allowance, tiers), the allowance prorated by the days of the cycle billed at the plan
-- (half-up to a whole base unit), or the code of the reason it cannot be rated, the first of:
--    1 unknown_subscriber   2 before_activation   3 no_subscriber_state
--    4 held (an account in account_problems: neither rated nor unrated by this run)
--    5 after_termination    6 no_tariff (no version at its time)    7 unknown_plan
-- then, for mobile-originated events only (mobile-terminated ones need no destination or rate:
-- they are rated at zero):
--    8 unknown_destination  9 unknown_roaming_zone  10 no_tariff (no rate)
-- Joins only, no window, and small integer keys: one streaming pass over the Parquet files.
-- Subscriber and account ids are not carried (the stretch st_no names both, in
-- subscriber_timeline), except the subscriber_id of an unknown subscriber (unknown_subscriber_id).
with scope as (
    select * from usage_scope
),
timed as (
    select u.*, c.calendar_code, c.tariff_version,
           case u.event_type when 'voice' then 0 when 'sms' then 1 else 2 end::tinyint as type_code
    from scope u
    join minute_calendar c using (minute_no)
),
width as (
    select max(prefix_len) as width from reference_tariff_destinations
),
roaming as (
    select r.version, r.visited_plmn, c.code as roaming_code
    from reference_tariff_roaming_zones r
    join rating_codes c on c.kind = 'roaming' and c.value = r.roaming_zone
),
zoned as (
    select t.*,
           case when t.event_type = 'data' then 2 when not t.is_mo then 0 else coalesce(kz.zone_code, 1) end as zone_code,
           case when t.visited_plmn is null then 1 else coalesce(rz.roaming_code, 0) end as roaming_code
    from timed t
    cross join width w
    left join destination_keys kz
      on kz.version = t.tariff_version
     and kz.number_key = case when t.is_mo and t.event_type <> 'data' then left(t.called_number, w.width) end
    left join roaming rz on rz.version = t.tariff_version and rz.visited_plmn = t.visited_plmn
),
with_subscriber as (
    select z.*, s.plan_code, s.stretch_reason, s.plan_days, s.days_in_cycle, s.sub_no, s.st_no,
           s.subscriber_id is not null as is_known
    from zoned z
    left join subscriber_timeline s
      on s.subscriber_id = z.subscriber_id and z.started_at >= s.valid_from and z.started_at < s.valid_until
),
keyed as (
    select w.*, k.rk_id, k.rate_id is not null as has_rate, k.allowance_quantity
    from with_subscriber w
    left join rating_keys k
      on k.calendar_code = w.calendar_code and k.type_code = w.type_code
     and k.zone_code = w.zone_code and k.roaming_code = w.roaming_code and k.plan_code = w.plan_code and k.is_mo = w.is_mo
),
classified as (
    select record_id, case when not is_known then subscriber_id end as unknown_subscriber_id, started_at, minute_no, type_code, quantity_base, sub_no, st_no, rk_id,
           -- half-up to whole base units; at most 50 GB x 31 days: bigint is enough
           (2 * allowance_quantity * plan_days + days_in_cycle) // (2 * days_in_cycle) as allowance_base,
           case
               when not is_known then 1
               when stretch_reason is not null then stretch_reason
               when tariff_version is null then 6
               when rk_id is null then 7
               when not is_mo then null
               when zone_code = 1 then 8
               when roaming_code = 0 then 9
               when not has_rate then 10
           end::tinyint as reason
    from keyed
)
select * from classified

-- unrated: one row per usage record in scope that cannot be rated (key: record_id), with the
-- reason; never dropped, so for every cycle unique usage = rated + unrated + records of held
-- accounts (which wait, neither rated nor unrated, for a later run).
with params as (
    select * from run_params
),
context as (
    select * from usage_context where reason is not null and reason <> 4  -- held: see usage_context
),
final as (
    select c.record_id, coalesce(s.subscriber_id, c.unknown_subscriber_id) as subscriber_id, m.cycle, p.target_cycle as billed_cycle,
           ['voice', 'sms', 'data'][c.type_code + 1] as event_type, c.started_at,
           (date '1970-01-01' + (c.minute_no // 1440)::integer) as event_date, c.quantity_base,
           case c.reason when 1 then 'unknown_subscriber' when 2 then 'before_activation' when 3 then 'no_subscriber_state'
                when 5 then 'after_termination' when 6 then 'no_tariff' when 7 then 'unknown_plan'
                when 8 then 'unknown_destination' when 9 then 'unknown_roaming_zone' when 10 then 'no_tariff' end as reason,
           m.tariff_version,
           p.run_id as rating_run
    from context c
    join minute_calendar m using (minute_no)
    left join subscriber_timeline s using (st_no)
    cross join params p
)
select * from final

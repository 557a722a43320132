-- plan_days: one row per (subscriber_id, account_id, cycle, plan_id) with the days of the cycle
-- billed at that plan (key: all four). Each day of a cycle (UTC) belongs to the plan the
-- subscriber holds at the end of that day when active or suspended: the activation day counts,
-- the termination day does not, a plan-change day counts for the new plan, and a change at
-- exactly midnight starts the new plan's first day. Recurring fees and allowances are prorated
-- by these days.
with subscribers as (
    select * from silver_subscribers
),
cycles as (
    select * from billing_cycles
),
billable as (
    select s.subscriber_id, s.account_id, s.plan_id, s.valid_from, s.valid_to, c.cycle, c.cycle_start, c.cycle_end, c.days_in_cycle
    from subscribers s
    join cycles c on s.valid_from < c.cycle_end and (s.valid_to is null or s.valid_to > c.cycle_start)
    where s.status in ('active', 'suspended')
),
day_counts as (
    -- day ends (midnights) inside (valid_from, valid_to], clipped to the cycle's day ends
    select *,
           greatest(date_trunc('day', valid_from) + interval 1 day, cycle_start + interval 1 day) as first_day_end,
           least(coalesce(date_trunc('day', valid_to), cycle_end), cycle_end) as last_day_end
    from billable
),
per_plan as (
    select subscriber_id, account_id, cycle, plan_id, any_value(days_in_cycle) as days_in_cycle,
           sum(greatest(0, datediff('day', first_day_end, last_day_end) + 1))::int as days
    from day_counts
    group by subscriber_id, account_id, cycle, plan_id
)
select * from per_plan

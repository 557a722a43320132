-- recurring_charges: one row per (subscriber_id, plan_id) billed for the run's cycle (key: both).
-- Each day of the cycle (UTC) is billed at the plan the subscriber holds at the end of that day
-- when active or suspended: the activation day is billed, the termination day is not, a
-- plan-change day is billed at the new plan. Amount = monthly_fee x days / days in the month,
-- rounded half-up to cents; the fee is the tariff version's in force at the end of the cycle.
with params as (
    select * from run_params
),
subscribers as (
    select * from silver_subscribers
),
fee_version as (
    select pr.version
    from version_periods pr
    join params p on pr.period_start < p.cycle_end and pr.period_end >= p.cycle_end
),
billable as (
    select s.subscriber_id, s.account_id, s.plan_id, s.valid_from, s.valid_to, p.cycle_start, p.cycle_end
    from subscribers s
    join params p on s.valid_from < p.cycle_end and (s.valid_to is null or s.valid_to > p.cycle_start)
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
    select subscriber_id, account_id, plan_id,
           sum(greatest(0, datediff('day', first_day_end, last_day_end) + 1))::int as days
    from day_counts
    group by all
),
priced as (
    select pp.*, pl.name as plan_name, pl.monthly_fee, fv.version as tariff_version, p.days_in_cycle,
           round_half_up_div(to_e4(pl.monthly_fee) * pp.days, 100::hugeint * p.days_in_cycle) * 100 as amount_e4
    from per_plan pp
    cross join params p
    cross join fee_version fv
    join reference_tariff_plans pl on pl.version = fv.version and pl.plan_id = pp.plan_id
    where pp.days > 0
)
select * from priced

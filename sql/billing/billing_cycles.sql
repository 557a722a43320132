-- billing_cycles: one row per cycle a run may bill something of (key: cycle): every calendar
-- month from the first billed cycle to the run's cycle. Late usage, late lifecycle events and
-- held accounts' periods all belong to one of them; a rerate covers only its own cycle.
with params as (
    select * from run_params
),
months as (
    select unnest(generate_series(p.billing_start, p.cycle_start, interval 1 month)) as cycle_start
    from params p
),
cycles as (
    select strftime(cycle_start, '%Y-%m') as cycle, cycle_start, cycle_start + interval 1 month as cycle_end,
           datediff('day', cycle_start, cycle_start + interval 1 month)::int as days_in_cycle
    from months
)
select * from cycles

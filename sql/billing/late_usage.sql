-- late_usage: one row per late record a bill run rates (key: record_id): usage of an earlier
-- cycle, from the first billed cycle on, that no other run has rated or marked unrated (it
-- arrived after its cycle closed, or its account was held). Usually few rows: it is
-- materialised once per run, and gives the minutes, number keys and allowance pools the late
-- records need. Records before the first billed cycle are history: never rated, never billed.
with usage as (
    select * from stg_usage
    where run_mode() = 'bill'
      and event_date >= run_billing_start_date() and event_date <= run_cycle_start_date()
      and started_at >= run_billing_start() and started_at < run_cycle_start()
),
handled_elsewhere as (
    select record_id from gold_billing_rated_usage where billed_cycle <> run_cycle()
    union all
    select record_id from gold_billing_unrated where billed_cycle <> run_cycle()
),
late as (
    select u.*
    from usage u
    anti join handled_elsewhere h on h.record_id = u.record_id
)
select * from late

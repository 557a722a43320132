-- usage_scope: one row per usage record this run rates (key: record_id).
-- bill run:  every record of the cycle, plus late records of earlier cycles, from the first
--            billed cycle on, that no earlier run has rated or marked unrated (billed as
--            adjustments on this cycle). Records before the first billed cycle are history from
--            before billing started: never rated, never billed.
-- rerate:    every already rated record of the cycle, rated again from scratch.
-- The run parameters are used here as constant macros (run_mode(), run_cycle_end(), ...) so
-- DuckDB pushes the time filters into the Delta scan and skips whole event_date partitions.
with usage as (
    select * from stg_usage
),
handled_elsewhere as (
    select record_id from gold_billing_rated_usage where billed_cycle <> run_cycle()
    union all
    select record_id from gold_billing_unrated where billed_cycle <> run_cycle()
),
bill_scope as (
    select u.*
    from usage u
    anti join handled_elsewhere h on h.record_id = u.record_id
    where run_mode() = 'bill'
      and u.event_date >= run_billing_start_date() and u.event_date < run_cycle_end_date()
      and u.started_at >= run_billing_start() and u.started_at < run_cycle_end()
),
rerate_scope as (
    select u.*
    from usage u
    semi join gold_billing_rated_usage r on r.record_id = u.record_id
    where run_mode() = 'rerate'
      and u.event_date >= run_cycle_start_date() and u.event_date < run_cycle_end_date()
      and u.started_at >= run_cycle_start() and u.started_at < run_cycle_end()
),
scope as (
    select * from bill_scope
    union all
    select * from rerate_scope
)
select * from scope

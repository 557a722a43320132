-- usage_scope: one row per usage record this run rates (key: record_id), in subscriber bucket
-- run_bucket() of run_buckets() (every window of rating is per subscriber, so buckets are
-- independent and bound the memory a run needs).
-- bill run:  every record of the cycle (no other run can have rated one: cycles are billed in
--            order), plus late_usage (records of earlier cycles not rated yet);
-- rerate:    every already rated record of the cycle, rated again from scratch.
-- The run parameters are constant macros (run_mode(), run_cycle_end(), ...) so DuckDB pushes the
-- time filters into the Parquet scan and skips whole event_date partitions.
with cycle_usage as (
    select *
    from stg_usage
    where run_mode() = 'bill'
      and event_date >= run_cycle_start_date() and event_date < run_cycle_end_date()
      and started_at >= run_cycle_start() and started_at < run_cycle_end()
),
rerate_usage as (
    select u.*
    from stg_usage u
    semi join gold_billing_rated_usage r on r.record_id = u.record_id and r.cycle = run_cycle()
    where run_mode() = 'rerate'
      and u.event_date >= run_cycle_start_date() and u.event_date < run_cycle_end_date()
      and u.started_at >= run_cycle_start() and u.started_at < run_cycle_end()
),
scope as (
    select * from cycle_usage
    union all
    select * from late_usage
    union all
    select * from rerate_usage
)
select * from scope
where run_buckets() = 1 or hash(subscriber_id) % run_buckets() = run_bucket()

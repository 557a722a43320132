-- stg_cell_rates: one row per (cell_id, event_date) (key: both): the dropped-call rate of the
-- cell-day from the KPI samples known by the end of that day, so late samples never rewrite
-- a rate some earlier as-of date already used.
with params as (
    select * from run_params
),
kpi as (
    select n.cell_id, cast(n.observed_at as date) as event_date, n.call_attempts, n.dropped_calls,
           coalesce(n._kafka_timestamp, n._delivered_at, n._ingested_at) as known_at
    from kpi_recent n, params p
    where n.kind = 'kpi' and n.event_date >= p.scan_from and n.event_date < p.range_to
),
on_time as (
    select * from kpi where cast(known_at as date) <= event_date
),
rates as (
    select cell_id, event_date,
           sum(dropped_calls)::double / nullif(sum(call_attempts), 0) as drop_rate
    from on_time
    group by cell_id, event_date
)
select * from rates where drop_rate is not null

-- stg_activity: one row per (subscriber_id, event_date, visible_from) with any usage in the
-- activity look-back (key: all three); only what days_since_last_activity needs, so the long
-- look-back reads three columns.
with params as (
    select * from run_params
),
usage as (
    select u.subscriber_id, u.event_date, coalesce(u._kafka_timestamp, u._ingested_at) as known_at
    from usage_activity u, params p
    where u.event_date >= p.activity_from and u.event_date < p.range_to
      and coalesce(u._kafka_timestamp, u._ingested_at) < p.range_to_at
),
known as (
    select distinct subscriber_id, event_date, greatest(event_date, cast(known_at as date)) + 1 as visible_from
    from usage
)
select * from known

-- stg_activity: one row per (subscriber_id, event_date, visible_from) with any usage in the
-- activity look-back (key: all three); only what days_since_last_activity needs. The scan
-- window (from scan_from) is already in stg_usage_daily with the same key and the same
-- known-time filter, so only the older days are read here, and only three columns of them.
-- cast(make_timestamp(epoch_us(t)) as date) is the UTC date of t, as cast(t as date) in the UTC
-- session, without a time-zone calendar lookup per row (an order of magnitude faster).
with params as (
    select * from run_params
),
recent as (
    select subscriber_id, event_date, visible_from from stg_usage_daily
),
older_usage as (
    select u.subscriber_id, u.event_date, coalesce(u._kafka_timestamp, u._delivered_at, u._ingested_at) as known_at
    from usage_activity u, params p
    where u.event_date >= p.activity_from and u.event_date < p.scan_from
      and coalesce(u._kafka_timestamp, u._delivered_at, u._ingested_at) < p.range_to_at
),
older as (
    select distinct subscriber_id, event_date, greatest(event_date, cast(make_timestamp(epoch_us(known_at)) as date)) + 1 as visible_from
    from older_usage
),
known as (
    select * from recent
    union all
    select * from older
)
select * from known

-- stg_called_numbers: one row per (subscriber_id, number_hash, event_date, visible_from) of the
-- other party of voice and SMS records (key: all four); number_hash = hash(called_number).
-- cast(make_timestamp(epoch_us(t)) as date) is the UTC date of t, as cast(t as date) in the UTC
-- session, without a time-zone calendar lookup per row (an order of magnitude faster).
with params as (
    select * from run_params
),
usage as (
    select u.subscriber_id, u.called_number, u.event_date,
           coalesce(u._kafka_timestamp, u._delivered_at, u._ingested_at) as known_at
    from usage_recent u, params p
    where u.event_date >= p.window_from and u.event_date < p.range_to
      and u.event_type in ('voice', 'sms') and u.called_number is not null
      and coalesce(u._kafka_timestamp, u._delivered_at, u._ingested_at) < p.range_to_at
),
known as (
    select subscriber_id, hash(called_number) as number_hash, event_date,
           greatest(event_date, cast(make_timestamp(epoch_us(known_at)) as date)) + 1 as visible_from
    from usage
),
distinct_days as (
    select distinct subscriber_id, number_hash, event_date, visible_from from known
)
select * from distinct_days

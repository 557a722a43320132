-- labels: one row per (subscriber_id, as_of_date) of features_daily whose next 30 days are known
-- (key: both). churned_within_30d: a `terminated` event in (as-of instant, +30 days]. The future is
-- known when the lake's knowledge horizon (latest known time of BSS and usage rows) has passed
-- the end of the label window.
with features as (
    select subscriber_id, as_of_date, cast(as_of_date as timestamptz) as as_of_at from features_daily
),
terminations as (
    select subscriber_id, occurred_at from bronze_bss_events where kind = 'terminated'
),
horizon as (
    select greatest(
        (select max(coalesce(_kafka_timestamp, _delivered_at, _ingested_at)) from bronze_bss_events),
        (select max(coalesce(_kafka_timestamp, _delivered_at, _ingested_at)) from silver_usage)
    ) as known_until
),
labelled as (
    select f.subscriber_id, f.as_of_date,
           exists (select 1 from terminations t
                   where t.subscriber_id = f.subscriber_id
                     and t.occurred_at > f.as_of_at and t.occurred_at <= f.as_of_at + interval 30 day) as churned_within_30d
    from features f, horizon h
    where f.as_of_at + interval 30 day <= h.known_until
)
select * from labelled

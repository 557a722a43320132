-- location_footfall: one row per hour and area with at least k distinct visitors (k-anonymity:
-- smaller buckets are suppressed); no subscriber-level row leaves this model.
-- grain: (hour_start, area_id)   key: hour_start, area_id
-- dwell: per visitor, from the first event's start to the last event's end in that area and
-- hour, capped at the end of the hour.
-- inputs: silver_usage (home network only), cells (cell_id -> area_id), partner (k_anonymity)
with usage as (select * from silver_usage),
     cells as (select * from cells),
     partner as (select * from partner),

located as (
    select u.subscriber_id, c.area_id, u.started_at, u.duration_s,
           date_trunc('hour', u.started_at) as hour_start
    from usage u
    join cells c on u.cell_id = c.cell_id
    where u.visited_plmn is null
),

visits as (
    select hour_start, area_id, subscriber_id,
           greatest(0, least(epoch(max(started_at + to_seconds(duration_s))), epoch(hour_start) + 3600)
                       - epoch(min(started_at)))::bigint as dwell_s
    from located
    group by hour_start, area_id, subscriber_id
),

buckets as (
    select hour_start, area_id,
           count(*)::bigint as count_visitors,
           sum(dwell_s)::bigint as total_dwell_s,
           round(avg(dwell_s))::bigint as avg_dwell_s
    from visits
    group by all
),

k_anonymous as (
    select b.*
    from buckets b
    where b.count_visitors >= (select k_anonymity from partner)
)

select * from k_anonymous

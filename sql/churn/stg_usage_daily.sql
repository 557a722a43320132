-- stg_usage_daily: one row per (subscriber_id, event_date, visible_from) of silver usage in the
-- scan window (key: all three); usage_recent is silver/usage pruned to that window by the runner.
-- visible_from is the first as-of date at which the rows are known: the day after both their
-- event time and their known time (coalesce(_kafka_timestamp, _delivered_at, _ingested_at)), so
-- `visible_from <= as_of_date` is the point-in-time rule. Voice calls are joined to the drop
-- rate of the cell-day they used. Flags are computed per record, then summed per day; the drop
-- rates are summed as DECIMAL(18, 12) (exact, so the sum is the same whatever order the threads
-- add the rows in: a float sum's last digits change from run to run).
-- cast(make_timestamp(epoch_us(t)) as date) is the UTC date of t, as cast(t as date) in the UTC
-- session, without a time-zone calendar lookup per row (an order of magnitude faster).
with params as (
    select * from run_params
),
usage as (
    select u.subscriber_id, u.event_type, u.duration_s, u.bytes_up, u.bytes_down, u.called_number,
           u.cell_id, u.visited_plmn, u.is_dropped, u.event_date,
           coalesce(u._kafka_timestamp, u._delivered_at, u._ingested_at) as known_at
    from usage_recent u, params p
    where u.event_date >= p.scan_from and u.event_date < p.range_to
      and coalesce(u._kafka_timestamp, u._delivered_at, u._ingested_at) < p.range_to_at
),
known as (
    select u.*, greatest(u.event_date, cast(make_timestamp(epoch_us(u.known_at)) as date)) + 1 as visible_from
    from usage u
),
flagged as (
    select k.subscriber_id, k.event_date, k.visible_from,
           (k.event_type = 'voice')::int as is_voice,
           (k.event_type = 'sms')::int as is_sms,
           case when k.event_type = 'voice' then k.duration_s else 0 end as voice_s,
           case when k.event_type = 'data' then k.bytes_up + k.bytes_down else 0 end as data_bytes,
           (k.event_type = 'voice' and coalesce(k.is_dropped, false))::int as is_dropped,
           (k.event_type in ('voice', 'sms') and k.called_number is not null)::int as is_called,
           (k.event_type in ('voice', 'sms') and k.called_number is not null and not starts_with(k.called_number, '49'))::int as is_intl,
           (k.visited_plmn is not null)::int as is_roaming,
           (k.event_type = 'voice' and c.drop_rate is not null)::int as is_cell_call,
           cast(case when k.event_type = 'voice' then coalesce(c.drop_rate, 0) else 0 end as decimal(18, 12)) as cell_drop
    from known k left join stg_cell_rates c on c.cell_id = k.cell_id and c.event_date = k.event_date
),
daily as (
    select subscriber_id, event_date, visible_from,
           count(*) as count_events, sum(is_voice) as count_calls, sum(voice_s) as voice_s, sum(is_sms) as count_sms,
           sum(data_bytes) as data_bytes, sum(is_dropped) as count_dropped, sum(is_called) as count_called,
           sum(is_intl) as count_intl, sum(is_roaming) as count_roaming, sum(is_cell_call) as count_cell_calls,
           sum(cell_drop) as cell_drops_expected
    from flagged
    group by subscriber_id, event_date, visible_from
)
select * from daily

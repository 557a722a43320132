-- stg_usage: one row per unique usage record in silver (key: record_id), typed for rating.
-- quantity_base is in the event type's base unit: seconds (voice), messages (sms), bytes (data);
-- minute_no counts UTC minutes since 1970 (integer arithmetic: time-zone aware truncation of
-- millions of timestamps costs seconds), the key into minute_calendar.
with usage as (
    select * from silver_usage
),
typed as (
    select record_id, event_type, subscriber_id, started_at, event_date,
           (epoch_us(started_at) // 60000000)::integer as minute_no,
           case event_type when 'voice' then duration_s when 'sms' then 1 else bytes_up + bytes_down end as quantity_base,
           called_number,
           coalesce(direction, 'mo') = 'mo' as is_mo,
           visited_plmn
    from usage
)
select * from typed

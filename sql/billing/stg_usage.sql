-- stg_usage: one row per unique usage record in silver (key: record_id), typed for rating.
-- quantity_base is in the event type's base unit: seconds (voice), messages (sms), bytes (data).
with usage as (
    select * from silver_usage
),
typed as (
    select record_id, event_type, subscriber_id, started_at, event_date,
           date_trunc('minute', started_at) as started_minute,
           case event_type when 'voice' then duration_s when 'sms' then 1 else bytes_up + bytes_down end as quantity_base,
           case event_type when 'voice' then 's' when 'sms' then 'msg' else 'byte' end as unit_base,
           called_number,
           coalesce(direction, 'mo') = 'mo' as is_mo,
           visited_plmn, ott_partner_id
    from usage
)
select * from typed

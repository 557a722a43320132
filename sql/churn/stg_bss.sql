-- stg_bss: one row per BSS event that happened before the last as-of date (key: event_id),
-- with visible_from (the first as-of date at which it is known), its parsed attributes and,
-- for plan changes, whether it was a downgrade (lite < plus < max).
with params as (
    select * from run_params
),
events as (
    select b.event_id, b.subscriber_id, b.account_id, b.occurred_at, b.kind, b.plan_id, b.attributes,
           coalesce(b._kafka_timestamp, b._delivered_at, b._ingested_at) as known_at
    from bronze_bss_events b, params p
    where b.occurred_at < p.range_to_at
),
known as (
    select *, cast(occurred_at as date) as event_date,
           greatest(cast(occurred_at as date), cast(known_at as date)) + 1 as visible_from
    from events, params p
    where known_at < p.range_to_at
),
parsed as (
    select *,
           json_extract_string(attributes, '$.from_plan') as from_plan,
           json_extract_string(attributes, '$.ticket_id') as ticket_id,
           json_extract_string(attributes, '$.ott_partner_id') as ott_partner_id
    from known
),
ranked as (
    select *,
           coalesce(kind = 'plan_changed'
                    and list_position(['lite', 'plus', 'max'], plan_id)
                        < list_position(['lite', 'plus', 'max'], from_plan), false) as is_downgrade
    from parsed
)
select * exclude (attributes, known_at) from ranked

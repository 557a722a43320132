-- ott_subscribers: one row per subscriber who ever activated an OTT partner's service: the
-- latest activation, a deactivation after it (if any) and the data used on the service.
-- grain: subscriber   key: subscriber_ref (a per-partner pseudonym)
-- inputs: silver_usage, bronze_bss_events, partner (ott_partner_id), pseudonyms
with usage as (select * from silver_usage),
     bss as (select * from bronze_bss_events),
     partner as (select * from partner),
     pseudonyms as (select * from pseudonyms),

lifecycle as (
    select b.subscriber_id,
           max(b.occurred_at) filter (where b.kind = 'ott_activated') as activated_at,
           max(b.occurred_at) filter (where b.kind = 'ott_deactivated') as last_deactivated_at
    from bss b, partner p
    where b.kind in ('ott_activated', 'ott_deactivated')
      and json_extract_string(b.attributes, '$.ott_partner_id') = p.ott_partner_id
    group by all
),

volume as (
    select u.subscriber_id, count(*) as count_sessions, sum(u.bytes_up + u.bytes_down) as data_bytes
    from usage u, partner p
    where u.event_type = 'data' and u.ott_partner_id = p.ott_partner_id
    group by all
),

subscribers as (
    select ps.subscriber_ref,
           l.activated_at,
           case when l.last_deactivated_at > l.activated_at then l.last_deactivated_at end as deactivated_at,
           not coalesce(l.last_deactivated_at > l.activated_at, false) as is_active,
           coalesce(v.count_sessions, 0)::bigint as count_sessions,
           cast(cast(coalesce(v.data_bytes, 0) as decimal(38, 0)) * 0.000001 as decimal(18, 4)) as data_mb
    from lifecycle l
    join pseudonyms ps on l.subscriber_id = ps.subscriber_id
    left join volume v on l.subscriber_id = v.subscriber_id
    where l.activated_at is not null
)

select * from subscribers

-- ott_report: one row per day for an OTT partner: activations and deactivations of its service,
-- subscribers active on it, sessions and data volume, and the revenue share due under the
-- contract of the catalog version in force that day.
-- grain: usage_date   key: usage_date
-- inputs: silver_usage, bronze_bss_events, partner (ott_partner_id), ott_contracts (catalog versions)
with usage as (select * from silver_usage),
     bss as (select * from bronze_bss_events),
     partner as (select * from partner),
     contracts as (select * from ott_contracts),

lifecycle as (
    select cast(b.occurred_at as date) as usage_date,
           count(*) filter (where b.kind = 'ott_activated') as count_activations,
           count(*) filter (where b.kind = 'ott_deactivated') as count_deactivations
    from bss b, partner p
    where b.kind in ('ott_activated', 'ott_deactivated')
      and json_extract_string(b.attributes, '$.ott_partner_id') = p.ott_partner_id
    group by all
),

sessions as (
    select cast(u.started_at as date) as usage_date,
           count(distinct u.subscriber_id) as count_active_subscribers,
           count(*) as count_sessions,
           sum(u.bytes_up + u.bytes_down) as data_bytes
    from usage u, partner p
    where u.event_type = 'data' and u.ott_partner_id = p.ott_partner_id
    group by all
),

days as (
    select coalesce(l.usage_date, s.usage_date) as usage_date,
           coalesce(l.count_activations, 0) as count_activations,
           coalesce(l.count_deactivations, 0) as count_deactivations,
           coalesce(s.count_active_subscribers, 0) as count_active_subscribers,
           coalesce(s.count_sessions, 0) as count_sessions,
           coalesce(s.data_bytes, 0) as data_bytes,
           (select ott_partner_id from partner) as ott_partner_id,
           cast(coalesce(l.usage_date, s.usage_date) as timestamptz) as day_start
    from lifecycle l
    full outer join sessions s using (usage_date)
),

with_contract as (
    select d.*, c.version as tariff_version, c.model as contract_model, c.share_pct, c.value_per_mb,
           c.fixed_per_subscriber, c.currency
    from days d
    asof left join contracts c on d.ott_partner_id = c.ott_partner_id and d.day_start >= c.valid_from
),

report as (
    select usage_date, ott_partner_id,
           count_activations::bigint as count_activations,
           count_deactivations::bigint as count_deactivations,
           count_active_subscribers::bigint as count_active_subscribers,
           count_sessions::bigint as count_sessions,
           cast(cast(data_bytes as decimal(38, 0)) * 0.000001 as decimal(18, 4)) as data_mb,
           contract_model,
           -- share_of_value: MB x value per MB x share %; per_active_subscriber: active subscribers x fixed fee
           cast(case contract_model
                    when 'share_of_value' then cast(data_bytes as decimal(38, 0)) * value_per_mb * share_pct * 0.00000001
                    when 'per_active_subscriber' then count_active_subscribers * fixed_per_subscriber
                end as decimal(18, 4)) as revenue_share,
           currency,
           tariff_version::bigint as tariff_version
    from with_contract
)

select * from report

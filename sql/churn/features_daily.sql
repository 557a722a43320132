-- features_daily: one row per (subscriber_id, as_of_date) for the subscribers activated and not
-- terminated as known at the as-of instant (as_of_date 00:00 UTC); key: (subscriber_id, as_of_date).
-- Every input row counts only when visible_from <= as_of_date (event time and known time both
-- before the as-of instant). Definitions of every column: docs/churn.md. Sums are of integers or
-- DECIMALs (exact) and divided once at the end, so recomputing a day gives the same floats.
with as_of as (
    select as_of_date, activity_ttl_days, cast(as_of_date as timestamptz) as as_of_at, date_trunc('month', as_of_date)::date as cycle_start
    from as_of_params
),
bss as (
    select b.* from stg_bss b, as_of a where b.visible_from <= a.as_of_date
),
usage as (
    select u.* from stg_usage_daily u, as_of a
    where u.visible_from <= a.as_of_date and u.event_date >= a.as_of_date - 35
),
activity as (
    select subscriber_id, max(event_date) as last_event_date
    from stg_activity u, as_of a
    where u.visible_from <= a.as_of_date and u.event_date >= a.as_of_date - a.activity_ttl_days
    group by subscriber_id
),
numbers as (
    select n.subscriber_id, count(distinct n.number_hash) as distinct_called_numbers_30d
    from stg_called_numbers n, as_of a
    where n.visible_from <= a.as_of_date and n.event_date >= a.as_of_date - 30
    group by n.subscriber_id
),
lifecycle as (
    select subscriber_id,
           arg_max(account_id, (occurred_at, event_id)) as account_id,
           min(occurred_at) filter (where kind = 'activated') as activated_at,
           arg_max(kind, (occurred_at, event_id)) as last_kind,
           arg_max(plan_id, (occurred_at, event_id)) filter (where kind in ('activated', 'plan_changed') and plan_id is not null) as plan_id
    from bss
    where kind in ('activated', 'plan_changed', 'suspended', 'resumed', 'terminated')
    group by subscriber_id
),
population as (
    select l.*, case when l.last_kind = 'suspended' then 'suspended' else 'active' end as status
    from lifecycle l
    where l.activated_at is not null and l.last_kind <> 'terminated'
),
bss_counts as (
    select b.subscriber_id,
           count(*) filter (where kind = 'ticket_opened' and event_date >= a.as_of_date - 90) as complaints_90d,
           count(*) filter (where kind = 'payment_failed' and event_date >= a.as_of_date - 90) as payment_failures_90d,
           count(*) filter (where is_downgrade and event_date >= a.as_of_date - 90) as downgrades_90d,
           max(occurred_at) filter (where kind in ('payment', 'topup')) as last_payment_at
    from bss b, as_of a
    group by b.subscriber_id
),
tickets as (
    select subscriber_id, ticket_id,
           bool_or(kind = 'ticket_opened') as is_opened, bool_or(kind = 'ticket_resolved') as is_resolved
    from bss
    where kind in ('ticket_opened', 'ticket_resolved') and ticket_id is not null
    group by subscriber_id, ticket_id
),
open_tickets as (
    select subscriber_id, count(*) filter (where is_opened and not is_resolved) as open_tickets
    from tickets group by subscriber_id
),
ott as (
    select subscriber_id, ott_partner_id, arg_max(kind, (occurred_at, event_id)) as last_kind
    from bss
    where kind in ('ott_activated', 'ott_deactivated') and ott_partner_id is not null
    group by subscriber_id, ott_partner_id
),
ott_active as (
    select subscriber_id, count(*) filter (where last_kind = 'ott_activated') as ott_services_active
    from ott group by subscriber_id
),
usage_sums as (
    select u.subscriber_id,
           sum(voice_s) filter (where event_date >= a.as_of_date - 7) / 60.0 as voice_min_7d,
           sum(voice_s) filter (where event_date >= a.as_of_date - 30) / 60.0 as voice_min_30d,
           sum(voice_s) filter (where event_date < a.as_of_date - 7) / 60.0 as voice_min_prior28,
           sum(count_calls) filter (where event_date >= a.as_of_date - 7) as call_count_7d,
           sum(count_calls) filter (where event_date >= a.as_of_date - 30) as call_count_30d,
           sum(count_calls) filter (where event_date < a.as_of_date - 7) as call_count_prior28,
           sum(count_sms) filter (where event_date >= a.as_of_date - 7) as sms_count_7d,
           sum(count_sms) filter (where event_date >= a.as_of_date - 30) as sms_count_30d,
           sum(count_sms) filter (where event_date < a.as_of_date - 7) as sms_count_prior28,
           sum(data_bytes) filter (where event_date >= a.as_of_date - 7) / 1e6 as data_mb_7d,
           sum(data_bytes) filter (where event_date >= a.as_of_date - 30) / 1e6 as data_mb_30d,
           sum(data_bytes) filter (where event_date < a.as_of_date - 7) / 1e6 as data_mb_prior28,
           sum(count_events) filter (where event_date >= a.as_of_date - 30) as events_30d,
           sum(count_called) filter (where event_date >= a.as_of_date - 30) as called_30d,
           sum(count_intl) filter (where event_date >= a.as_of_date - 30) as intl_30d,
           sum(count_roaming) filter (where event_date >= a.as_of_date - 30) as roaming_30d,
           sum(count_dropped) filter (where event_date >= a.as_of_date - 30) as dropped_30d,
           sum(count_cell_calls) filter (where event_date >= a.as_of_date - 30) as cell_calls_30d,
           sum(cell_drops_expected) filter (where event_date >= a.as_of_date - 30) as cell_drops_30d,
           sum(voice_s) filter (where event_date >= a.cycle_start) as cycle_voice_s,
           sum(count_sms) filter (where event_date >= a.cycle_start) as cycle_sms,
           sum(data_bytes) filter (where event_date >= a.cycle_start) as cycle_data_bytes
    from usage u, as_of a
    group by u.subscriber_id
),
joined as (
    select p.subscriber_id, p.account_id, a.as_of_date, p.status, p.plan_id, c.monthly_fee,
           date_diff('day', cast(p.activated_at as date), a.as_of_date)::bigint as tenure_days,
           coalesce(s.voice_min_7d, 0) as voice_min_7d, coalesce(s.voice_min_30d, 0) as voice_min_30d,
           coalesce(s.voice_min_prior28, 0) as voice_min_prior28,
           coalesce(s.call_count_7d, 0)::bigint as call_count_7d, coalesce(s.call_count_30d, 0)::bigint as call_count_30d,
           coalesce(s.call_count_prior28, 0)::bigint as call_count_prior28,
           coalesce(s.sms_count_7d, 0)::bigint as sms_count_7d, coalesce(s.sms_count_30d, 0)::bigint as sms_count_30d,
           coalesce(s.sms_count_prior28, 0)::bigint as sms_count_prior28,
           coalesce(s.data_mb_7d, 0) as data_mb_7d, coalesce(s.data_mb_30d, 0) as data_mb_30d,
           coalesce(s.data_mb_prior28, 0) as data_mb_prior28,
           coalesce(n.distinct_called_numbers_30d, 0)::bigint as distinct_called_numbers_30d,
           coalesce(s.intl_30d / nullif(s.called_30d, 0), 0) as intl_share_30d,
           coalesce(s.roaming_30d / nullif(s.events_30d, 0), 0) as roaming_share_30d,
           coalesce(s.dropped_30d / nullif(s.call_count_30d, 0), 0) as dropped_call_rate_30d,
           cast(s.cell_drops_30d as double) / nullif(s.cell_calls_30d, 0) as cell_drop_rate_30d,
           coalesce(b.complaints_90d, 0)::bigint as complaints_90d,
           coalesce(t.open_tickets, 0)::bigint as open_tickets,
           coalesce(b.payment_failures_90d, 0)::bigint as payment_failures_90d,
           date_diff('day', cast(b.last_payment_at as date), a.as_of_date) as days_since_last_payment,
           coalesce(b.downgrades_90d, 0)::bigint as downgrades_90d,
           coalesce(s.cycle_voice_s, 0) / nullif(c.voice_allowance_s, 0) as bundle_voice_util,
           coalesce(s.cycle_sms, 0) / nullif(c.sms_allowance, 0) as bundle_sms_util,
           coalesce(s.cycle_data_bytes, 0) / nullif(c.data_allowance_bytes, 0) as bundle_data_util,
           coalesce(o.ott_services_active, 0)::bigint as ott_services_active,
           coalesce(date_diff('day', act.last_event_date, a.as_of_date), a.activity_ttl_days) as days_since_last_activity
    from population p
    cross join as_of a
    left join plan_catalog c on c.plan_id = p.plan_id
    left join usage_sums s on s.subscriber_id = p.subscriber_id
    left join numbers n on n.subscriber_id = p.subscriber_id
    left join bss_counts b on b.subscriber_id = p.subscriber_id
    left join open_tickets t on t.subscriber_id = p.subscriber_id
    left join ott_active o on o.subscriber_id = p.subscriber_id
    left join activity act on act.subscriber_id = p.subscriber_id
),
trended as (
    select j.*,
           case when voice_min_prior28 > 0 then least(voice_min_7d * 4 / voice_min_prior28, 10)
                when voice_min_7d > 0 then 10 else 1 end::double as voice_min_trend,
           case when call_count_prior28 > 0 then least(call_count_7d * 4 / call_count_prior28, 10)
                when call_count_7d > 0 then 10 else 1 end::double as call_count_trend,
           case when sms_count_prior28 > 0 then least(sms_count_7d * 4 / sms_count_prior28, 10)
                when sms_count_7d > 0 then 10 else 1 end::double as sms_count_trend,
           case when data_mb_prior28 > 0 then least(data_mb_7d * 4 / data_mb_prior28, 10)
                when data_mb_7d > 0 then 10 else 1 end::double as data_mb_trend,
           greatest(coalesce(bundle_voice_util, 0), coalesce(bundle_sms_util, 0), coalesce(bundle_data_util, 0)) as bundle_utilisation
    from joined j
)
select * exclude (voice_min_prior28, call_count_prior28, sms_count_prior28, data_mb_prior28) from trended

-- roaming_records: one row per usage record of our subscribers on a roaming partner's networks,
-- the detail behind roaming_settlement; the subscriber is a per-partner pseudonym.
-- grain: one usage record   key: record_id
-- inputs: silver_usage, partner_plmns (visited_plmn), pseudonyms (subscriber_id -> subscriber_ref)
with usage as (select * from silver_usage),
     plmns as (select * from partner_plmns),
     pseudonyms as (select * from pseudonyms),

on_partner_network as (
    select u.*
    from usage u
    join plmns p on u.visited_plmn = p.visited_plmn
),

pseudonymised as (
    select e.record_id, ps.subscriber_ref,
           cast(e.started_at as date) as usage_date, e.started_at, e.visited_plmn, e.event_type,
           e.duration_s::bigint as duration_s, e.bytes_up::bigint as bytes_up, e.bytes_down::bigint as bytes_down
    from on_partner_network e
    join pseudonyms ps on e.subscriber_id = ps.subscriber_id
)

select * from pseudonymised

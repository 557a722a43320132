-- unrated: one row per usage record in scope that cannot be rated (key: record_id), with the
-- reason; never dropped, so for every cycle unique usage = rated + unrated + records of held
-- accounts (which wait, neither rated nor unrated, for a later run).
with params as (
    select * from run_params
),
context as (
    select * from usage_context where unrated_reason is not null and unrated_reason <> 'held'
),
final as (
    select c.record_id, c.subscriber_id, c.cycle, p.target_cycle as billed_cycle, c.event_type, c.started_at,
           c.event_date, c.quantity_base, c.unrated_reason as reason, c.tariff_version, p.run_id as rating_run
    from context c
    cross join params p
)
select * from final

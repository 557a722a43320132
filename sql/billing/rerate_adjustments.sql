-- rerate_adjustments: one row per (account, event type) whose rerated charges differ from what
-- was billed (key: adjustment_id): a debit (positive) or credit (negative) for the rerated cycle,
-- billed on the next open cycle's invoice.
with params as (
    select * from run_params
),
changed as (
    select * from rerated_usage
),
grouped as (
    select account_id, cycle as for_cycle, event_type, any_value(currency) as currency, count(*) as count_records,
           sum(to_e4(charge) - to_e4(previous_charge)) as diff_e4, max(tariff_version) as tariff_version
    from changed
    group by all
),
final as (
    select p.run_id || '-' || g.account_id || '-' || g.event_type as adjustment_id,
           g.account_id, g.for_cycle, p.target_cycle as billed_cycle, 'rerate' as reason, g.event_type,
           e4_to_money(e4_to_cents_e4(g.diff_e4)) as amount, g.currency, g.count_records::bigint as count_records, g.tariff_version, p.run_id
    from grouped g
    cross join params p
    where e4_to_cents_e4(g.diff_e4) <> 0
)
select * from final

-- late_adjustments: one row per (account, earlier cycle, event type) of late usage rated in this
-- bill run (key: adjustment_id). Late records keep their own cycle and the tariff valid at their
-- event time; Kill Bill style, they are billed as adjustment lines on this (open) cycle. The id
-- is LATE-<billed cycle>-<account>-<for cycle>-<event type> (a re-run of the cycle replaces the
-- same ids); the amount is the exact sum of the late records' charges rounded half-up to cents
-- once per line, never merged into the for-cycle's own (already rounded) usage line.
with params as (
    select * from run_params
),
late as (
    select * from usage_charges where is_late
),
grouped as (
    select l.account_id, l.cycle as for_cycle, l.event_type, any_value(l.currency) as currency,
           sum(l.count_records) as count_records, sum(to_e4(l.charge)) as charge_e4, max(l.tariff_version) as tariff_version
    from late l
    group by all
),
final as (
    select 'LATE-' || p.cycle || '-' || g.account_id || '-' || g.for_cycle || '-' || g.event_type as adjustment_id,
           g.account_id, g.for_cycle, p.cycle as billed_cycle, 'late_usage' as reason, g.event_type,
           e4_to_money(e4_to_cents_e4(g.charge_e4)) as amount, g.currency, g.count_records::bigint as count_records, g.tariff_version,
           p.run_id
    from grouped g
    cross join params p
)
select * from final

-- invoice_lines: one row per invoice line (key: bill_no, line_id) of every account not held in
-- this run. Lines: recurring plan fees (prorated by days; `recurring:<sub>:<plan>`, and for a
-- cycle the account was held in `recurring:<sub>:<plan>:<for_cycle>`), one-off charges (one per
-- charged BSS event, `one_off:<event_id>`; a late event's line carries its own cycle in
-- for_cycle), usage by event type (sum of event charges, rounded half-up to cents; a line whose
-- records were all included or zero-rated says so: `Usage: voice (included)`, 0.00, its record
-- count as quantity), adjustments (late usage of this run; rerate differences billed on this
-- cycle, or on an earlier one while the account was held) and one tax line: VAT of the
-- account's country (tariff version in force at the cycle's end) on the sum of the other lines,
-- rounded half-up to cents.
with params as (
    select * from run_params
),
held as (
    select account_id from account_problems
),
recurring as (
    select * from recurring_charges where not is_held
),
one_offs as (
    select * from one_off_charges where not is_held
),
usage as (
    select * from usage_charges where not is_late
),
late_usage as (
    select account_id, cycle as for_cycle, event_type, sum(to_e4(charge)) as charge_e4
    from usage_charges
    where is_late
    group by all
),
rerates_owed as (
    -- rerate differences for this cycle, and earlier ones no invoice has carried (held account)
    select a.*
    from gold_billing_adjustments a
    cross join params p
    where a.reason <> 'late_usage' and a.billed_cycle <= p.cycle
      and (a.billed_cycle = p.cycle or not exists (
          select 1 from gold_billing_invoice_lines l
          where l.cycle <> p.cycle and l.line_id = 'adjustment:' || a.adjustment_id
      ))
),
adjustments as (
    select l.adjustment_id, l.account_id, l.for_cycle, l.reason, l.event_type, l.amount, l.count_records,
           coalesce(u.charge_e4, 0) = 0 as is_included
    from late_adjustments l
    left join late_usage u using (account_id, for_cycle, event_type)
    union all
    select adjustment_id, account_id, for_cycle, reason, event_type, amount, count_records, false
    from rerates_owed
    anti join held using (account_id)
),
accounts_billed as (
    select * from accounts
),
vat_version as (
    select pr.version
    from version_periods pr
    join params p on pr.period_start < p.cycle_end and pr.period_end >= p.cycle_end
),
recurring_lines as (
    select account_id, 'recurring:' || subscriber_id || ':' || plan_id || case when is_late then ':' || for_cycle else '' end as line_id,
           'recurring' as line_type, subscriber_id,
           plan_name || ' (' || days || '/' || days_in_cycle || ' days' || case when is_late then ', late for ' || for_cycle else '' end || ')'
               as description,
           days::bigint as quantity, case when is_late then for_cycle end as for_cycle, amount_e4
    from recurring
),
one_off_lines as (
    select account_id, 'one_off:' || event_id as line_id, 'one_off' as line_type, subscriber_id,
           price_name || ' (' || kind || ' ' || strftime(occurred_at, '%Y-%m-%d')
               || case when is_late then ', late for ' || cycle else '' end || ')' as description,
           1::bigint as quantity, case when is_late then cycle end as for_cycle, to_e4(amount) as amount_e4
    from one_offs
),
usage_lines as (
    select account_id, 'usage:' || event_type as line_id, 'usage' as line_type, null::varchar as subscriber_id,
           'Usage: ' || event_type || case when sum(to_e4(charge)) = 0 then ' (included)' else '' end as description,
           sum(count_records)::bigint as quantity, null::varchar as for_cycle,
           e4_to_cents_e4(sum(to_e4(charge))) as amount_e4
    from usage
    group by account_id, event_type
),
adjustment_lines as (
    select account_id, 'adjustment:' || adjustment_id as line_id, 'adjustment' as line_type, null::varchar as subscriber_id,
           case reason when 'late_usage' then 'Late usage ' else 'Rerate ' end || event_type || ' for ' || for_cycle
               || case when is_included then ' (included)' else '' end as description,
           count_records::bigint as quantity, for_cycle, to_e4(amount) as amount_e4
    from adjustments
),
charge_lines as (
    select * from recurring_lines
    union all select * from one_off_lines
    union all select * from usage_lines
    union all select * from adjustment_lines
),
tax_lines as (
    select l.account_id, 'tax' as line_id, 'tax' as line_type, null::varchar as subscriber_id,
           'VAT ' || a.country || ' ' || (v.vat_rate * 100)::decimal(9, 2) || '%' as description,
           null::bigint as quantity, null::varchar as for_cycle,
           round_half_up_div(sum(l.amount_e4) * to_micro(v.vat_rate), 100000000::hugeint) * 100 as amount_e4
    from charge_lines l
    join accounts_billed a using (account_id)
    cross join vat_version vv
    join reference_tariff_vat v on v.version = vv.version and v.country = a.country
    group by l.account_id, a.country, v.vat_rate
),
all_lines as (
    select * from charge_lines
    union all
    select * from tax_lines
),
final as (
    select 'INV-' || replace(p.cycle, '-', '') || '-' || l.account_id as bill_no,
           l.account_id as billing_account_id, p.cycle, l.line_id, l.line_type, l.subscriber_id, l.description,
           l.quantity, l.for_cycle, e4_to_money(l.amount_e4) as amount, a.currency, p.run_id
    from all_lines l
    cross join params p
    left join accounts_billed a using (account_id)
)
select * from final

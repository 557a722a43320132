-- invoice_lines: one row per invoice line (key: bill_no, line_id). Lines: recurring plan fees
-- (prorated by days), one-off charges (one per charged BSS event, `one_off:<event_id>`; a late
-- event's line carries its own cycle in for_cycle), usage by event type (sum of event charges, rounded half-up to cents),
-- adjustments billed on this cycle (late usage, rerates) and one tax line: VAT of the account's
-- country on the sum of the other lines, rounded half-up to cents.
with params as (
    select * from run_params
),
recurring as (
    select * from recurring_charges
),
one_offs as (
    select * from one_off_charges
),
usage as (
    select * from usage_charges where not is_late
),
adjustments as (
    select adjustment_id, account_id, for_cycle, reason, event_type, amount, count_records from late_adjustments
    union all
    select adjustment_id, account_id, for_cycle, reason, event_type, amount, count_records
    from gold_billing_adjustments
    where billed_cycle = (select cycle from params) and reason <> 'late_usage'
),
accounts as (
    select s.account_id, arg_max(s.country, s.valid_from) as country, arg_max(s.currency, s.valid_from) as currency
    from silver_subscribers s
    join params p on s.valid_from < p.cycle_end
    group by s.account_id
),
vat_version as (
    select pr.version
    from version_periods pr
    join params p on pr.period_start < p.cycle_end and pr.period_end >= p.cycle_end
),
recurring_lines as (
    select account_id, 'recurring:' || subscriber_id || ':' || plan_id as line_id, 'recurring' as line_type,
           subscriber_id, plan_name || ' (' || days || '/' || days_in_cycle || ' days)' as description,
           days::bigint as quantity, null::varchar as for_cycle, amount_e4
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
           'Usage: ' || event_type as description, sum(count_records)::bigint as quantity, null::varchar as for_cycle,
           e4_to_cents_e4(sum(to_e4(charge))) as amount_e4
    from usage
    group by account_id, event_type
),
adjustment_lines as (
    select account_id, 'adjustment:' || adjustment_id as line_id, 'adjustment' as line_type, null::varchar as subscriber_id,
           case reason when 'late_usage' then 'Late usage ' else 'Rerate ' end || event_type || ' for ' || for_cycle as description,
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
    join accounts a using (account_id)
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
    left join accounts a using (account_id)
)
select * from final

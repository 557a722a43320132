-- invoices: one row per (billing account, cycle) (key: bill_no), TMF678 style. The bill number
-- is deterministic (INV-<yyyymm>-<account>) so a re-run can never create a second invoice.
-- Balancing: amount_incl_tax = amount_excl_tax + tax = sum of the invoice's lines.
with params as (
    select * from run_params
),
lines as (
    select * from invoice_lines
),
totals as (
    select bill_no, billing_account_id, any_value(currency) as currency,
           coalesce(sum(amount) filter (where line_type <> 'tax'), 0)::decimal(18, 4) as amount_excl_tax,
           coalesce(sum(amount) filter (where line_type = 'tax'), 0)::decimal(18, 4) as tax,
           count(*) as count_lines
    from lines
    group by all
),
final as (
    select t.bill_no, t.billing_account_id, p.cycle, p.cycle_start as period_start, p.cycle_end as period_end,
           p.cycle_end_date as bill_date, t.amount_excl_tax, t.tax,
           (t.amount_excl_tax + t.tax)::decimal(18, 4) as amount_incl_tax, t.currency, 'issued' as state,
           t.count_lines, p.run_id
    from totals t
    cross join params p
)
select * from final

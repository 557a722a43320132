-- check_vat: one row per billed account whose country has no VAT rate in the tariff version
-- the invoices use (key: billing_account_id). Must be empty, or invoices would lack their tax.
with lines as (
    select * from invoice_lines
),
untaxed as (
    select billing_account_id
    from lines
    group by billing_account_id
    having count(*) filter (where line_type = 'tax') = 0
)
select * from untaxed

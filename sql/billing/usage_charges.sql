-- usage_charges: one row per (account, cycle, event type, is_late) of the usage rated in this
-- run (key: all four), with the exact sum of the event charges. Bucketed runs append one set
-- of rows per bucket, so readers sum again by their own grain.
with rated as (
    select * from rated_usage
),
totals as (
    select account_id, cycle, billed_cycle, event_type, is_late, any_value(currency) as currency,
           count(*) as count_records, sum(charge) as charge, max(tariff_version) as tariff_version
    from rated
    group by account_id, cycle, billed_cycle, event_type, is_late
)
select * from totals

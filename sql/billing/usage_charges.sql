-- usage_charges: one row per (account, cycle, event type) of the usage rated in this run (key:
-- all three), with the exact sum of the event charges; is_late when the cycle is an earlier one.
-- Bucketed runs append one set of rows per bucket, so readers sum again by their own grain.
with rated as (
    select account_id, cycle, event_type, charge, tariff_version, currency from rated_usage
),
totals as (
    select account_id, cycle, event_type, cycle < run_target_cycle() as is_late, any_value(currency) as currency,
           count(*) as count_records, sum(charge) as charge, max(tariff_version) as tariff_version
    from rated
    group by account_id, cycle, event_type
)
select * from totals

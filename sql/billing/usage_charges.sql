-- usage_charges: one row per (account, cycle, event type) of the usage rated in this run (key:
-- all three), with the exact sum of the event charges; is_late when the cycle is an earlier one.
-- Summed from usage_context's charges (rated_charges), first by two integer keys (the
-- subscriber's stretch, which has one account, and rating_keys' charge_code: cycle, event type,
-- tariff version and currency), then by account. Bucketed runs append one set of rows per bucket, so readers sum again by their own
-- grain.
with per_key as (
    select c.st_no, k.charge_code, count(*) as count_records, sum(c.charge_e4) as charge_e4
    from usage_context c
    join rating_keys k using (rk_id)
    where c.reason is null
    group by c.st_no, k.charge_code
),
charge_codes as (
    select distinct charge_code, cycle, event_type, version, currency from rating_keys
),
keyed as (
    select s.account_id, k.cycle, k.event_type, k.version as tariff_version, k.currency, p.count_records, p.charge_e4
    from per_key p
    join subscriber_timeline s using (st_no)
    join charge_codes k using (charge_code)
),
totals as (
    select account_id, cycle, event_type, cycle < run_target_cycle() as is_late, any_value(currency) as currency,
           sum(count_records)::bigint as count_records, sum(e4_to_money(charge_e4)) as charge, max(tariff_version) as tariff_version
    from keyed
    group by account_id, cycle, event_type
)
select * from totals

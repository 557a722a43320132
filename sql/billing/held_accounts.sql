-- held_accounts: one row per account this run held (key: cycle, account_id): an account with a
-- problem (account_problems: reason, detail) and something to bill in this run: usage records
-- (count_records, left neither rated nor unrated), plan fees or one-off charges
-- (count_charges). Nothing of it is written: the first later run that finds its data fixed bills
-- it all, on that run's invoice, as late lines for this cycle.
with params as (
    select * from run_params
),
problems as (
    select * from account_problems
),
records as (
    select account_id, sum(count_records)::bigint as count_records from held_usage_all group by account_id
),
charges as (
    select account_id, count(*) as n from recurring_charges where is_held group by account_id
    union all
    select account_id, count(*) from one_off_charges where is_held group by account_id
),
charge_counts as (
    select account_id, sum(n)::bigint as count_charges from charges group by account_id
),
final as (
    select p.cycle, h.account_id, h.reason, h.detail, coalesce(r.count_records, 0) as count_records,
           coalesce(c.count_charges, 0) as count_charges, now() as held_at, p.run_id
    from problems h
    cross join params p
    left join records r using (account_id)
    left join charge_counts c using (account_id)
    where coalesce(r.count_records, 0) + coalesce(c.count_charges, 0) > 0
)
select * from final

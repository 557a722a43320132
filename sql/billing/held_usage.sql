-- held_usage: one row per held account with usage in this run's scope (key: account_id): the
-- records left neither rated nor unrated, for the run that finds the account's data fixed.
with context as (
    select * from usage_context where reason = 4  -- held: see usage_context
),
counted as (
    select s.account_id, count(distinct c.record_id)::bigint as count_records
    from context c
    join subscriber_timeline s using (st_no)
    group by s.account_id
)
select * from counted

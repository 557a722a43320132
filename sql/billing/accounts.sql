-- accounts: one row per billing account with a subscriber interval starting before the cycle's
-- end (key: account_id): the country and currency of its invoice. They come from the account's
-- intervals that overlap the cycle (an account with none: its latest interval); when those name
-- more than one country (count_countries > 1) the account is held, never taxed at a guess.
with params as (
    select * from run_params
),
subscribers as (
    select * from silver_subscribers
),
candidates as (
    select s.account_id, s.country, s.currency, s.valid_from,
           (s.valid_to is null or s.valid_to > p.cycle_start) as overlaps_cycle
    from subscribers s
    cross join params p
    where s.valid_from < p.cycle_end and s.account_id is not null
),
chosen as (
    select *
    from candidates
    qualify overlaps_cycle
         or (not bool_or(overlaps_cycle) over (partition by account_id)
             and valid_from = max(valid_from) over (partition by account_id))
),
per_account as (
    select account_id, min(country) as country, min(currency) as currency,
           count(distinct country)::int as count_countries,
           string_agg(distinct country, ', ' order by country) as countries
    from chosen
    group by account_id
)
select * from per_account

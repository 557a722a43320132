-- account_problems: one row per billing account that cannot be billed as its data stands (key:
-- account_id), with the first reason (in this order) and every problem found in `detail`:
--   overlapping_intervals  a subscriber of the account has two intervals at once from the first
--                          billed cycle on (an event in both would be rated twice)
--   missing_state          an interval overlapping the cycle lacks plan, status, country or currency
--   unknown_plan           an active or suspended interval in the cycle is on a plan the fee
--                          version (the one in force at the cycle's end) does not have
--   conflicting_country    the account's intervals in the cycle name more than one country
--   no_vat_rate            the account's country has no rate in that version's [vat]
-- Such an account is held (gold/billing/held_accounts), not the run: everything else is billed.
with params as (
    select * from run_params
),
subscribers as (
    select * from silver_subscribers where account_id is not null
),
fee_version as (
    select pr.version
    from version_periods pr
    join params p on pr.period_start < p.cycle_end and pr.period_end >= p.cycle_end
),
in_window as (
    select s.*
    from subscribers s
    cross join params p
    where s.valid_from < p.cycle_end and (s.valid_to is null or s.valid_to > p.billing_start)
),
numbered as (
    select *, row_number() over (partition by subscriber_id order by valid_from, valid_to nulls last) as n
    from in_window
),
overlap_pairs as (
    select a.subscriber_id, a.account_id, b.account_id as other_account_id,
           a.subscriber_id || ' has intervals from ' || strftime(a.valid_from, '%Y-%m-%dT%H:%M') || ' and '
               || strftime(b.valid_from, '%Y-%m-%dT%H:%M') || ' at once' as detail
    from numbered a
    join numbered b
      on a.subscriber_id = b.subscriber_id and a.n < b.n and (a.valid_to is null or b.valid_from < a.valid_to)
),
overlapping as (
    select account_id, 'overlapping_intervals' as reason, 1 as priority, detail from overlap_pairs
    union
    select other_account_id, 'overlapping_intervals', 1, detail from overlap_pairs
),
in_cycle as (
    select s.*
    from subscribers s
    cross join params p
    where s.valid_from < p.cycle_end and (s.valid_to is null or s.valid_to > p.cycle_start)
),
missing as (
    select account_id, 'missing_state' as reason, 2 as priority,
           subscriber_id || ' interval from ' || strftime(valid_from, '%Y-%m-%dT%H:%M') || ' has no '
               || concat_ws(', ', case when plan_id is null then 'plan' end, case when status is null then 'status' end,
                            case when country is null then 'country' end, case when currency is null then 'currency' end) as detail
    from in_cycle
    where plan_id is null or status is null or country is null or currency is null
),
unknown_plan as (
    select s.account_id, 'unknown_plan' as reason, 3 as priority,
           s.subscriber_id || ' is on plan ' || s.plan_id || ', which tariff version ' || fv.version || ' does not have' as detail
    from in_cycle s
    cross join fee_version fv
    anti join reference_tariff_plans pl on pl.version = fv.version and pl.plan_id = s.plan_id
    where s.status in ('active', 'suspended') and s.plan_id is not null
),
conflicting as (
    select account_id, 'conflicting_country' as reason, 4 as priority, 'subscribers in ' || countries as detail
    from accounts
    where count_countries > 1
),
no_vat as (
    select a.account_id, 'no_vat_rate' as reason, 5 as priority,
           'country ' || a.country || ' has no rate in [vat] of tariff version ' || fv.version as detail
    from accounts a
    cross join fee_version fv
    anti join reference_tariff_vat v on v.version = fv.version and v.country = a.country
    where a.count_countries = 1
),
found as (
    select * from overlapping
    union all select * from missing
    union all select * from unknown_plan
    union all select * from conflicting
    union all select * from no_vat
),
per_account as (
    select account_id, arg_min(reason, priority) as reason,
           string_agg(reason || ': ' || detail, '; ' order by priority, detail) as detail
    from found
    group by account_id
)
select * from per_account

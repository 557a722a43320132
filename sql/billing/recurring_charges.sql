-- recurring_charges: one row per (subscriber_id, plan_id, for_cycle) billed on this run's
-- invoices (key: all three): the run's cycle for every account, plus each earlier cycle in which
-- the account was held and that no invoice has covered since (is_late). Amount = monthly_fee x
-- days at the plan (plan_days) / days in the month, rounded half-up to cents; the fee is the
-- tariff version's in force at the end of that cycle. Rows of accounts held now carry is_held
-- and are billed by a later run.
with params as (
    select * from run_params
),
days as (
    select * from plan_days
),
held_before as (
    -- cycles an account was held in and not invoiced since: their fees are still owed
    select h.account_id, h.cycle
    from gold_billing_held_accounts h
    cross join params p
    where h.cycle < p.cycle and h.cycle >= p.billing_start_cycle
      and not exists (
          select 1 from gold_billing_invoices i
          where i.billing_account_id = h.account_id and i.cycle > h.cycle and i.cycle < p.cycle
      )
),
owed as (
    select d.* from days d join params p on d.cycle = p.cycle
    union all
    select d.* from days d semi join held_before h on h.account_id = d.account_id and h.cycle = d.cycle
),
fee_versions as (
    select c.cycle, pr.version
    from billing_cycles c
    join version_periods pr on pr.period_start < c.cycle_end and pr.period_end >= c.cycle_end
),
priced as (
    select o.subscriber_id, o.account_id, o.plan_id, o.cycle as for_cycle, o.cycle < p.cycle as is_late, o.days,
           o.days_in_cycle, pl.name as plan_name, pl.monthly_fee, fv.version as tariff_version,
           round_half_up_div(to_e4(pl.monthly_fee) * o.days, 100::hugeint * o.days_in_cycle) * 100 as amount_e4,
           h.account_id is not null as is_held
    from owed o
    cross join params p
    join fee_versions fv on fv.cycle = o.cycle
    join reference_tariff_plans pl on pl.version = fv.version and pl.plan_id = o.plan_id
    left join account_problems h on h.account_id = o.account_id
    where o.days > 0
)
select * from priced

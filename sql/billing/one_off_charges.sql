-- one_off_charges: one row per chargeable BSS lifecycle event billed in this run (key: event_id).
-- A one-time price (catalog `one_time_prices`) applies to an event of its `event` kind, on a
-- plan in its `plans` (all plans when absent); the price is the tariff version's valid at the
-- event's time, rounded by its `rounding` to `decimals` places. Scope: the cycle's events, plus
-- late events of earlier cycles (from the first billed cycle on) that no earlier run billed;
-- they keep their own `cycle` and are billed here (`billed_cycle`, `is_late`). Events before the
-- first billed cycle are history from before billing started and are not charged. An event
-- whose subscriber is not in silver/subscribers at its time yet waits for a later run, and so
-- does the event of an account held now (is_held: not written, charged once the account is fixed).
with params as (
    select * from run_params
),
bss as (
    select * from bronze_bss_events
    where event_month >= run_billing_start_cycle() and event_month <= run_cycle()
),
billed_elsewhere as (
    select event_id from gold_billing_one_off_charges where billed_cycle <> run_cycle()
),
subscribers as (
    select * from silver_subscribers
),
prices as (
    select * from reference_tariff_one_time_prices
),
first_arrival as (
    -- bronze keeps redelivered copies; the first arrival of each event_id is the event
    select *
    from bss
    where occurred_at >= run_billing_start() and occurred_at < run_cycle_end()
    qualify row_number() over (
        partition by event_id
        order by coalesce(_kafka_timestamp, _ingested_at), _ingested_at, _source, _kafka_partition, _kafka_offset, _source_row
    ) = 1
),
unbilled as (
    select e.*
    from first_arrival e
    anti join billed_elsewhere b on b.event_id = e.event_id
),
with_subscriber as (
    -- the subscriber interval holding the event (an activation or plan change starts one)
    select e.event_id, e.subscriber_id, s.account_id, e.kind, e.plan_id, e.occurred_at
    from unbilled e
    join subscribers s
      on s.subscriber_id = e.subscriber_id and s.valid_from <= e.occurred_at
     and (s.valid_to is null or s.valid_to > e.occurred_at)
),
versioned as (
    select e.*, pr.version as tariff_version, pr.currency
    from with_subscriber e
    join version_periods pr on pr.period_start <= e.occurred_at and pr.period_end > e.occurred_at
),
priced as (
    select e.*, o.price_id, o.name as price_name, o.price, o.rounding, o.decimals,
           -- price rounded to `decimals` places, then in 1e-4 units (as rated_usage rounds a charge)
           round_div(to_micro(o.price) * pow(10, o.decimals)::hugeint, 1000000::hugeint, o.rounding)
               * pow(10, 4 - o.decimals)::hugeint as amount_e4
    from versioned e
    join prices o
      on o.version = e.tariff_version and o.event = e.kind
     and (o.plans is null or list_contains(o.plans, e.plan_id))
),
final as (
    select e.event_id, e.subscriber_id, e.account_id, e.kind, e.plan_id, e.occurred_at,
           strftime(e.occurred_at, '%Y-%m') as cycle, p.cycle as billed_cycle, e.occurred_at < p.cycle_start as is_late,
           e.tariff_version, e.price_id, e.price_name, e.price, e.rounding, e.decimals,
           e4_to_money(e.amount_e4) as amount, e.currency, p.run_id, h.account_id is not null as is_held
    from priced e
    cross join params p
    left join account_problems h on h.account_id = e.account_id
    where e.amount_e4 > 0
)
select * from final

-- subscriber_timeline: one row per stretch of a subscriber's time (key: subscriber_id, valid_from),
-- so that a record's time falls in exactly one stretch of its subscriber (none: an unknown
-- subscriber): 'before_activation' up to the first interval, each interval of silver/subscribers
-- split at the billing cycles (with the days the cycle bills at its plan: plan_days), and
-- 'no_subscriber_state' in a gap between intervals or after a closed last one. stretch_reason
-- is the unrated reason every record of the stretch gets (usage_context's codes: 2
-- before_activation, 3 no_subscriber_state, 4 held, 5 after_termination; null: rate it).
-- sub_no numbers subscribers for sorting, st_no the stretches (usage_charges sums by it); plan_code
-- is the plan's rating_codes code.
with params as (
    select * from run_params
),
subscribers as (
    select * from silver_subscribers
),
firsts as (
    select subscriber_id, min(valid_from) as first_valid_from from subscribers group by subscriber_id
),
before_activation as (
    select subscriber_id, timestamptz '0001-01-01 00:00:00+00' as valid_from, first_valid_from as valid_until,
           'before_activation' as state, null::varchar as status, null::varchar as account_id, null::varchar as plan_id,
           null::varchar as cycle
    from firsts
),
ordered as (
    select *, lead(valid_from) over (partition by subscriber_id order by valid_from, valid_to nulls last) as next_from
    from subscribers
),
gaps as (
    select subscriber_id, valid_to as valid_from, coalesce(next_from, timestamptz '9999-12-31 00:00:00+00') as valid_until,
           'no_subscriber_state' as state, null::varchar, null::varchar, null::varchar, null::varchar
    from ordered
    where valid_to is not null and (next_from is null or next_from > valid_to)
),
in_cycles as (
    -- an interval's part inside each billing cycle (parts outside them rate nothing)
    select s.subscriber_id, greatest(s.valid_from, c.cycle_start) as valid_from,
           least(coalesce(s.valid_to, c.cycle_end), c.cycle_end) as valid_until,
           null::varchar as state, s.status, s.account_id, s.plan_id, c.cycle
    from subscribers s
    join billing_cycles c on s.valid_from < c.cycle_end and (s.valid_to is null or s.valid_to > c.cycle_start)
),
stretches as (
    select * from before_activation
    union all select * from gaps
    union all select * from in_cycles
),
final as (
    select t.subscriber_id, t.valid_from, t.valid_until, t.account_id, pc.code as plan_code,
           case
               when t.state = 'before_activation' then 2
               when t.account_id is null then 3
               when h.account_id is not null then 4
               when t.status = 'terminated' then 5
           end::tinyint as stretch_reason,
           coalesce(d.days, 0)::smallint as plan_days, d.days_in_cycle::smallint as days_in_cycle,
           dense_rank() over (order by t.subscriber_id)::integer as sub_no,
           row_number() over ()::integer as st_no
    from stretches t
    left join plan_days d
      on d.subscriber_id = t.subscriber_id and d.account_id = t.account_id and d.cycle = t.cycle and d.plan_id = t.plan_id
    left join account_problems h on h.account_id = t.account_id
    left join rating_codes pc on pc.kind = 'plan' and pc.value = t.plan_id
)
select * from final

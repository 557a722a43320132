-- minute_calendar: one row per UTC minute a record in scope can start in (key: minute_no): every
-- minute of the cycle plus the minutes of late records, with its billing cycle (calendar month,
-- UTC), applicable tariff version and time band, and calendar_code numbering those three. Versions start on whole minutes, so every event
-- of a minute shares them; deciding them once per minute keeps time-zone arithmetic off the hot
-- path.
with params as (
    select * from run_params
),
minutes as (
    select (epoch_us(m) // 60000000)::integer as minute_no
    from (select unnest(range(p.cycle_start, p.cycle_end, interval 1 minute)) as m from params p)
    union
    select distinct minute_no from late_usage
),
versioned as (
    select m.minute_no, p.version, p.timezone, p.peak_start_min, p.peak_end_min, p.weekend_days,
           to_timestamp(m.minute_no::bigint * 60) as started_minute
    from minutes m
    asof left join version_periods p on to_timestamp(m.minute_no::bigint * 60) >= p.period_start
),
local as (
    select *, timezone(timezone, started_minute) as local_minute from versioned
),
calendar as (
    select minute_no,
           strftime(started_minute, '%Y-%m') as cycle,
           version as tariff_version,
           case
               when version is null then null
               when list_contains(weekend_days, isodow(local_minute)) then 'weekend'
               when hour(local_minute) * 60 + minute(local_minute) >= peak_start_min
                and hour(local_minute) * 60 + minute(local_minute) < peak_end_min then 'peak'
               else 'offpeak'
           end as band
    from local
)
select *, dense_rank() over (order by cycle, tariff_version, band)::integer as calendar_code
from calendar

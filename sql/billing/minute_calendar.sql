-- minute_calendar: one row per UTC minute in which usage in scope started (key: started_minute),
-- with its billing cycle (calendar month, UTC), applicable tariff version and time band.
-- Versions start on whole minutes, so every event of a minute shares them; deciding them once
-- per minute instead of once per event keeps time-zone arithmetic off the hot path.
with minutes as (
    select distinct started_minute from usage_scope
),
versioned as (
    select m.started_minute, p.version, p.timezone, p.peak_start_min, p.peak_end_min, p.weekend_days,
           timezone(p.timezone, m.started_minute) as local_minute
    from minutes m
    asof left join version_periods p on m.started_minute >= p.period_start
),
calendar as (
    select started_minute,
           strftime(started_minute, '%Y-%m') as cycle,
           version as tariff_version,
           case
               when version is null then null
               when list_contains(weekend_days, isodow(local_minute)) then 'weekend'
               when hour(local_minute) * 60 + minute(local_minute) >= peak_start_min
                and hour(local_minute) * 60 + minute(local_minute) < peak_end_min then 'peak'
               else 'offpeak'
           end as band
    from versioned
)
select * from calendar

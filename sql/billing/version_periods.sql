-- version_periods: one row per period in which one tariff version applies (key: period_start).
-- The version applicable at time t is the highest version whose valid_from <= t, so a
-- correction (a new version) supersedes every earlier version from its valid_from on.
with versions as (
    select * from reference_tariff_versions
),
points as (
    select distinct valid_from as period_start from versions
),
applicable as (
    select p.period_start, max(v.version) as version
    from points p
    join versions v on v.valid_from <= p.period_start
    group by p.period_start
),
periods as (
    select a.period_start,
           coalesce(lead(a.period_start) over (order by a.period_start), timestamptz '9999-12-31 00:00:00+00') as period_end,
           a.version, v.timezone, v.peak_start_min, v.peak_end_min, v.weekend_days, v.currency
    from applicable a
    join versions v using (version)
)
select * from periods

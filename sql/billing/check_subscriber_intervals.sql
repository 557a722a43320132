-- check_subscriber_intervals: one row per pair of overlapping validity intervals of a subscriber
-- (key: subscriber_id, valid_from, other_valid_from). Must be empty: an event inside two
-- intervals would be rated twice, so a bill run refuses to start when it is not.
with subscribers as (
    select * from silver_subscribers
),
numbered as (
    select subscriber_id, valid_from, valid_to,
           row_number() over (partition by subscriber_id order by valid_from, valid_to nulls last) as n
    from subscribers
),
overlapping as (
    select a.subscriber_id, a.valid_from, b.valid_from as other_valid_from
    from numbered a
    join numbered b
      on a.subscriber_id = b.subscriber_id and a.n < b.n
     and (a.valid_to is null or b.valid_from < a.valid_to)
)
select * from overlapping

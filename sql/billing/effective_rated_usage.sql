-- effective_rated_usage: one row per rated record (key: record_id) with the values that are in
-- force now: the latest rerate of the record when there is one, else its original rating.
with rated as (
    select * from gold_billing_rated_usage
),
latest_rerate as (
    select * from gold_billing_rerated_usage
    qualify row_number() over (partition by record_id order by rerate_seq desc) = 1
),
effective as (
    select r.record_id, r.subscriber_id, r.account_id, r.cycle, r.billed_cycle, r.event_type,
           coalesce(x.allowance_id, r.allowance_id) as allowance_id,
           coalesce(x.included_base, r.included_base) as included_base,
           coalesce(x.tiers_id, r.tiers_id) as tiers_id,
           coalesce(x.tier_billed_base, r.tier_billed_base) as tier_billed_base,
           coalesce(x.charge, r.charge) as charge,
           coalesce(x.tariff_version, r.tariff_version) as tariff_version
    from rated r
    left join latest_rerate x using (record_id)
)
select * from effective

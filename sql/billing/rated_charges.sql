-- rated_charges: one row per rated record in scope (key: rid, usage_context's row number): the
-- charged part in whole increments (rated_base) and its event charge in 1e-4 units (charge_e4).
-- The charged part (after the allowance: usage_context.included_base) is priced CGRateS-style:
-- connect fee + price per rate_unit with the quantity rounded up to the increment, switching to
-- price2/increment2 after group2_start (the second interval prices what the first interval's
-- whole increments do not cover); data rates may instead use graduated or volume tiers over the
-- cycle's charged volume (usage_context.tier_before_base, tier_total_base). The event charge is
-- rounded once (rounding method + decimals of the rate), then min_charge and max_cost apply
-- (max_cost last). Mobile-terminated events are rated at zero. Only integers: a few
-- multiplications per record on the rate's factors in rating_keys. pipelines/billing/rating.py
-- appends both columns to usage_context; rated_usage and the invoices' usage_charges read them
-- there, so each record is priced once.
with context as (
    select rid, rk_id, quantity_base, included_base, tier_billed_base, tier_before_base, tier_total_base
    from usage_context where reason is null
),
keyed as (
    select c.*, case when k.is_mo then c.quantity_base - c.included_base else 0 end as charged_base,
           k.tiers_id, k.tier_mode, k.increment, k.group2_start, k.increment2,
           k.rounding_code, k.e4_scale, k.min_e4, k.max_e4, k.base_numerator, k.price1_factor, k.price2_factor, k.tier_factor,
           k.denominator
    from context c
    join rating_keys k using (rk_id)
),
billed as (
    -- the charged part in whole increments: up to group2_start in the first interval's, the rest
    -- (what the first interval's increments do not cover) in the second's
    select *,
           case when tiers_id is null
                then ceil_div(case when group2_start is null then charged_base else least(charged_base, group2_start) end, increment)
                     * increment
                else 0 end as billed1_base
    from keyed
),
billed2 as (
    select *,
           case when tiers_id is null and charged_base > billed1_base
                then ceil_div(charged_base - billed1_base, increment2) * increment2 else 0 end as billed2_base
    from billed
),
tier_cost as (
    -- micro-units x base units: graduated, each slice of the cycle's running volume at its band's
    -- price; volume, the whole quantity at the band the cycle total reaches (`upto` inclusive)
    select t.*,
           case
               when tier_billed_base is null or tier_billed_base = 0 then 0::hugeint
               when tier_mode = 'graduated' then list_sum(list_transform(tier_bands, lambda b:
                   greatest(0, least(tier_before_base + tier_billed_base, coalesce(b.hi, tier_before_base + tier_billed_base))
                               - greatest(tier_before_base, b.lo))::hugeint * b.price_micro))
               else list_sum(list_transform(tier_bands, lambda b:
                   case when (tier_total_base > b.lo or b.lo = 0) and (b.hi is null or tier_total_base <= b.hi)
                        then tier_billed_base::hugeint * b.price_micro else 0::hugeint end))
           end as tier_num
    from billed2 t
    left join (select rk_id, tier_bands from rating_keys where tiers_id is not null) x
      on t.tier_billed_base > 0 and x.rk_id = t.rk_id
),
priced as (
    select *,
           case when charged_base = 0 then 0::hugeint
                else round_div_code(base_numerator + price1_factor * billed1_base + price2_factor * billed2_base + tier_factor * tier_num,
                               denominator, rounding_code) * e4_scale
           end as rounded_e4
    from tier_cost
),
capped as (
    select *,
           case when charged_base = 0 then 0::hugeint
                else least(greatest(rounded_e4, min_e4), coalesce(max_e4, greatest(rounded_e4, min_e4)))
           end as charge_e4
    from priced
),
final as (
    select rid, (billed1_base + billed2_base + coalesce(tier_billed_base, 0))::bigint as rated_base, charge_e4::bigint as charge_e4
    from capped
)
select * from final

-- types: the ENUM types of the values rating keys carry (no model; created once the run's inputs
-- are registered). A record's low-cardinality values (cycle, zone, rate ...) come from
-- rating_keys as 1-byte enums: joins move less and the Parquet writer writes their dictionary
-- pages directly instead of hashing millions of strings. Files hold plain strings.
create type billing_cycle as enum (select cycle from billing_cycles);
create type billing_event_type as enum ('voice', 'sms', 'data');
create type billing_zone as enum (select distinct zone from reference_tariff_destinations union select 'any');
create type billing_band as enum ('peak', 'offpeak', 'weekend');
create type billing_roaming_zone as enum (select distinct roaming_zone from reference_tariff_roaming_zones union select 'home');
create type billing_plan as enum (select distinct plan_id from reference_tariff_plans);
create type billing_rate as enum (select distinct rate_id from reference_tariff_rates);
create type billing_allowance as enum (select distinct allowance_id from reference_tariff_allowances union select '');
create type billing_tiers as enum (select distinct tiers_id from reference_tariff_tiers union select '');
create type billing_currency as enum (select distinct currency from reference_tariff_versions);
create type billing_rating_tag as enum ('included', 'non-included');
create type billing_run as enum (select run_id from run_params);

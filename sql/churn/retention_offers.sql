-- retention_offers: one row per subscriber offered on an as-of date (key: subscriber_id, as_of_date).
-- Two sources, each row with its reason: the churn model's top-risk offers of the day
-- (gold/churn/offers) and the stream's dropped-call offer triggers (gold/offers/triggers: redial
-- chains on a failing cell) of the week before it. A subscriber in both gets the model's offer and
-- both reasons; one only triggered gets the trigger's offer (reference/churn_offers.toml [triggers]).
with params as (select * from offer_params),
model_offers as (
    select o.* from churn_offers o, params p where o.as_of_date = p.as_of_date
),
triggers as (
    select t.subscriber_id, count(*) as trigger_days, sum(t.dropped_calls) as dropped_calls,
           max(t.trigger_date) as last_trigger_date, list(t.trigger_id order by t.trigger_id) as trigger_ids
    from offer_triggers t, params p
    where t.trigger_date >= p.as_of_date - interval 7 day and t.trigger_date < p.as_of_date
    group by t.subscriber_id
),
accounts as (
    select f.subscriber_id, f.account_id from features_daily f, params p where f.as_of_date = p.as_of_date
),
joined as (
    select coalesce(m.subscriber_id, t.subscriber_id) as subscriber_id,
           coalesce(m.account_id, a.account_id) as account_id,
           p.as_of_date,
           case when m.subscriber_id is not null and t.subscriber_id is not null then 'churn_model+dropped_calls'
                when m.subscriber_id is not null then 'churn_model' else 'dropped_calls' end as source,
           coalesce(m.offer_id, p.trigger_offer_id) as offer_id,
           coalesce(m.offer_text, p.trigger_offer_text) as offer_text,
           concat_ws('; ',
               case when m.subscriber_id is not null then
                   'churn risk ' || printf('%.3f', m.churn_score) || ' (rank ' || m.risk_rank || '): ' || m.reasons end,
               case when t.subscriber_id is not null then
                   t.dropped_calls || ' dropped calls within an hour on ' || t.trigger_days || ' day(s), last '
                   || strftime(t.last_trigger_date, '%Y-%m-%d') end) as reason,
           m.top_reason, m.churn_score, m.risk_rank, m.model_version,
           coalesce(t.dropped_calls, 0)::bigint as dropped_calls, coalesce(t.trigger_ids, []::varchar[]) as trigger_ids
    from model_offers m
    full outer join triggers t on t.subscriber_id = m.subscriber_id
    left join accounts a on a.subscriber_id = coalesce(m.subscriber_id, t.subscriber_id)
    cross join params p
)
select * from joined
order by risk_rank nulls last, dropped_calls desc, subscriber_id

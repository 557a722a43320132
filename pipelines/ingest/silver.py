"""Silver: usage deduplicated by record_id, and subscriber state with validity intervals.

Both are maintained incrementally from the bronze versions added since the last run: the
bronze version a silver commit covers is stored in that commit (a Delta app transaction),
and the new bronze rows are read from bronze's change data feed.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.duck import query
from pipelines.core.lake import Lake
from pipelines.ingest.landing import CDF, bronze_table

SILVER_USAGE = "silver/usage"
USAGE_DUPLICATES = "silver/usage_duplicates"
SILVER_SUBSCRIBERS = "silver/subscribers"
USAGE_APP = "telcolake-silver:usage"
SUBSCRIBERS_APP = "telcolake-silver:subscribers"


@dataclass
class SilverResult:
    """What one silver refresh did."""

    table: str
    from_version: int | None
    to_version: int | None
    new_rows: int = 0
    duplicates: int = 0
    changed_subscribers: int = 0


def _new_bronze_rows(lake: Lake, bronze: str, since: int | None) -> tuple[pa.Table | None, int | None]:
    """Rows appended to ``bronze`` after version ``since`` (all rows when None), and its version."""
    dt = lake.maybe_table(bronze)
    if dt is None:
        return None, None
    current = dt.version()
    if since is not None and since >= current:
        return None, current
    if since is None:
        return lake.dataset(bronze, version=current).to_table(), current
    reader = dt.load_cdf(starting_version=since + 1, ending_version=current)
    changes = pa.table(reader.read_all())
    inserted = pa.compute.equal(changes["_change_type"].cast(pa.string()), "insert")
    schema = pa.schema(dt.schema().to_arrow())
    return changes.select(schema.names).cast(schema).filter(inserted), current


def refresh_usage(settings: Settings) -> SilverResult:
    """Append bronze usage rows whose record_id silver has not seen (first arrival wins)."""
    lake = Lake.from_settings(settings)
    since = lake.txn_version(SILVER_USAGE, USAGE_APP)
    new, current = _new_bronze_rows(lake, bronze_table("usage.events"), since)
    result = SilverResult(SILVER_USAGE, since, current)
    if new is None:
        return result
    con = duckdb.connect()
    con.register("new_rows", new)
    dates = [r[0] for r in con.execute("select distinct event_date from new_rows").fetchall()]
    existing = pa.table({"record_id": pa.array([], pa.string())})
    if lake.exists(SILVER_USAGE) and dates:
        import pyarrow.dataset as ds

        existing = lake.dataset(SILVER_USAGE).to_table(
            columns=["record_id"], filter=ds.field("event_date").isin(dates)
        )
    con.register("existing", existing)
    ranked = """
        with ranked as (
            select *, row_number() over (
                partition by record_id
                order by coalesce(_kafka_timestamp, _ingested_at), _ingested_at, _kafka_partition, _kafka_offset, _source_row
            ) as arrival
            from new_rows
        )
        select * exclude (arrival), arrival = 1 and record_id not in (select record_id from existing) as is_first
        from ranked
    """
    marked = query(con, ranked)
    firsts = marked.filter(marked["is_first"]).drop(["is_first"])
    dupes = marked.filter(pa.compute.invert(marked["is_first"])).drop(["is_first"])
    result.new_rows, result.duplicates = firsts.num_rows, dupes.num_rows
    if dupes.num_rows:
        lake.write(USAGE_DUPLICATES, dupes, partition_by=["event_date"], txns={USAGE_APP: current})
    lake.write(
        SILVER_USAGE,
        firsts,
        partition_by=["event_date"],
        txns={USAGE_APP: current},
        configuration=CDF,
        metadata={"bronze_version": current, "duplicates": dupes.num_rows},
    )
    return result


SUBSCRIBER_INTERVALS = """
-- silver/subscribers: one row per (subscriber, validity interval); key (subscriber_id, valid_from)
-- State starts at the subscriber's first `activated` event: events before it (a plan change that
-- arrived ahead of the activation) start no interval, and a subscriber with no activation yet has
-- none; its events wait in bronze and count once the activation lands. A redelivered copy of an
-- event_id counts once: its first arrival (the order one-off charges use too).
with events as (
    select * from bss
    where kind in ('activated', 'plan_changed', 'suspended', 'resumed', 'terminated')
    qualify row_number() over (
        partition by event_id
        order by coalesce(_kafka_timestamp, _ingested_at), _ingested_at, _source, _kafka_partition, _kafka_offset, _source_row
    ) = 1
),
ordered as (
    select *, row_number() over (partition by subscriber_id order by occurred_at, event_id) as seq
    from events
),
activation as (
    select subscriber_id,
           min(seq) filter (where kind = 'activated') as activation_seq,
           arg_min(account_id, seq) filter (where kind = 'activated') as account_id,
           min(occurred_at) filter (where kind = 'activated') as activated_at,
           arg_min(json_extract_string(attributes, '$.msisdn'), seq) filter (where kind = 'activated') as msisdn,
           arg_min(json_extract_string(attributes, '$.imsi'), seq) filter (where kind = 'activated') as imsi,
           arg_min(json_extract_string(attributes, '$.country'), seq) filter (where kind = 'activated') as country,
           arg_min(json_extract_string(attributes, '$.currency'), seq) filter (where kind = 'activated') as currency,
           arg_min(json_extract_string(attributes, '$.segment'), seq) filter (where kind = 'activated') as segment
    from ordered group by subscriber_id
),
activated as (
    select o.* from ordered o join activation a using (subscriber_id) where o.seq >= a.activation_seq
),
stateful as (
    select subscriber_id, occurred_at as valid_from, seq, _ingested_at,
           last_value(plan_id ignore nulls) over w as plan_id,
           case kind when 'terminated' then 'terminated' when 'suspended' then 'suspended' else 'active' end as status
    from activated
    window w as (partition by subscriber_id order by seq rows between unbounded preceding and current row)
),
intervals as (
    select s.subscriber_id, a.account_id, a.msisdn, a.imsi, s.plan_id, s.status,
           a.country, a.currency, a.segment, a.activated_at,
           s.valid_from,
           lead(s.valid_from) over (partition by s.subscriber_id order by s.seq) as valid_to,
           s._ingested_at
    from stateful s join activation a using (subscriber_id)
),
deduped as (
    -- two state events at the same instant: the later one (by seq) defines the interval
    select * from intervals where valid_to is null or valid_to > valid_from
)
select subscriber_id, account_id, msisdn, imsi, plan_id, status, country, currency, segment,
       activated_at, valid_from, valid_to, valid_to is null as is_current, _ingested_at
from deduped
"""


def refresh_subscribers(settings: Settings) -> SilverResult:
    """Recompute the intervals of subscribers with new lifecycle events and MERGE them in."""
    lake = Lake.from_settings(settings)
    bronze = bronze_table("bss.events")
    since = lake.txn_version(SILVER_SUBSCRIBERS, SUBSCRIBERS_APP)
    new, current = _new_bronze_rows(lake, bronze, since)
    result = SilverResult(SILVER_SUBSCRIBERS, since, current)
    if new is None:
        return result
    con = duckdb.connect()
    con.register("new_rows", new)
    changed = query(con, "select distinct subscriber_id from new_rows")
    import pyarrow.dataset as ds

    ids = changed["subscriber_id"]
    history = lake.dataset(bronze, version=current).to_table(filter=ds.field("subscriber_id").isin(ids))
    con.register("bss", history)
    intervals = query(con, SUBSCRIBER_INTERVALS)
    result.new_rows, result.changed_subscribers = intervals.num_rows, len(ids)
    if not lake.exists(SILVER_SUBSCRIBERS):
        lake.write(SILVER_SUBSCRIBERS, intervals, txns={SUBSCRIBERS_APP: current}, configuration=CDF)
        return result
    # Replace the changed subscribers' intervals in one commit.
    con.register("changed", changed)
    quoted = ",".join("'" + str(s).replace("'", "''") + "'" for s in ids.to_pylist())
    lake.write(
        SILVER_SUBSCRIBERS,
        intervals,
        mode="overwrite",
        predicate=f"subscriber_id in ({quoted})",
        txns={SUBSCRIBERS_APP: current},
    )
    return result


def refresh(settings: Settings) -> list[SilverResult]:
    """Bring every silver table up to date with bronze."""
    return [refresh_usage(settings), refresh_subscribers(settings)]

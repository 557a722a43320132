"""Silver: usage deduplicated by record_id, and subscriber state with validity intervals.

Both are maintained incrementally from the bronze versions added since the last run: the
bronze version a silver commit covers is stored in that commit (a Delta app transaction),
and the new bronze rows are read from bronze's change data feed. Each commit is planned from
the snapshot it is checked against, so refreshes running at once never add a row twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.duck import query
from pipelines.core.lake import Lake, Write
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


def _new_bronze_rows(lake: Lake, bronze: str, since: int | None, until: int | None = None) -> tuple[pa.Table | None, int | None]:
    """Rows appended to ``bronze`` after version ``since`` (all rows when None) up to version
    ``until`` (default: the latest), and that version."""
    dt = lake.maybe_table(bronze)
    if dt is None:
        return None, None
    current = dt.version() if until is None else until
    if since is not None and since >= current:
        return None, current
    if since is None:
        return lake.dataset(bronze, version=current).to_table(), current
    reader = dt.load_cdf(starting_version=since + 1, ending_version=current)
    changes = pa.table(reader.read_all())
    schema = pa.schema(dt.schema().to_arrow())
    if not changes.num_rows:  # only commits without data changes (compaction, empty commits)
        return schema.empty_table(), current
    inserted = pa.compute.equal(changes["_change_type"].cast(pa.string()), "insert")
    return changes.select(schema.names).cast(schema).filter(inserted), current


def _existing_ids(lake: Lake, dt, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """record_ids silver/usage holds (in snapshot ``dt``) that ``new_rows`` could repeat: on their
    event dates and between their smallest and largest record_id. The range lets the Parquet
    statistics skip the files of earlier batches (ids grow with time at the sources), so a
    refresh reads about what it adds instead of the whole day."""
    dates = [r[0] for r in con.execute("select distinct event_date from new_rows").fetchall()]
    lo, hi = con.execute("select min(record_id), max(record_id) from new_rows").fetchall()[0]
    if dt is None or not dates or lo is None:
        return pa.table({"record_id": pa.array([], pa.string())})
    import pyarrow.dataset as ds

    where = ds.field("event_date").isin(dates) & (ds.field("record_id") >= lo) & (ds.field("record_id") <= hi)
    return lake.dataset(SILVER_USAGE, version=dt.version()).to_table(columns=["record_id"], filter=where)


RANKED = """
    with ranked as (
        select *, row_number() over (
            partition by record_id
            order by coalesce(_kafka_timestamp, _ingested_at), _ingested_at, _kafka_partition, _kafka_offset, _source_row
        ) as arrival
        from new_rows
    )
    select * exclude (arrival),
           arrival = 1 and not exists (select 1 from existing e where e.record_id = ranked.record_id) as is_first
    from ranked
"""


def refresh_usage(settings: Settings) -> SilverResult:
    """Append bronze usage rows whose record_id silver has not seen (first arrival wins).

    The commit records the bronze version it covers (app transaction ``USAGE_APP``) and is
    planned from the silver snapshot it is checked against: when another refresh committed
    meanwhile, it is planned again from there, so two refreshes at once add each record once.
    """
    lake = Lake.from_settings(settings)
    bronze = bronze_table("usage.events")
    planned: dict = {}

    def plan(dt):
        since = None if dt is None else dt.transaction_version(USAGE_APP)
        new, current = _new_bronze_rows(lake, bronze, since)
        planned.clear()
        planned.update(since=since, current=current, firsts=0, dupes=None)
        if new is None or not new.num_rows:
            return None
        con = duckdb.connect()
        con.register("new_rows", new)
        con.register("existing", _existing_ids(lake, dt, con))
        marked = query(con, RANKED)
        firsts = marked.filter(marked["is_first"]).drop(["is_first"])
        dupes = marked.filter(pa.compute.invert(marked["is_first"])).drop(["is_first"])
        planned.update(firsts=firsts.num_rows, dupes=dupes)
        return Write(firsts, txns={USAGE_APP: current}, metadata={"bronze_version": current, "duplicates": dupes.num_rows},
                     schema_mode="merge")  # bronze columns added later (_delivered_at) reach silver

    version = lake.commit(SILVER_USAGE, plan, partition_by=["event_date"], configuration=CDF)
    result = SilverResult(SILVER_USAGE, planned.get("since"), planned.get("current"))
    if version is not None:
        result.new_rows, result.duplicates = planned["firsts"], planned["dupes"].num_rows
    _record_duplicates(lake, planned if version is not None else {})
    return result


def _record_duplicates(lake: Lake, planned: dict) -> None:
    """Bring silver/usage_duplicates up to the bronze version silver/usage covers.

    Usually that is exactly the range the usage commit just covered, and its duplicates are
    written as they are. After a crash between the two commits, or when another refresh
    covered the range, the duplicates of the missing range are found again: its bronze rows
    that are not the row silver/usage kept for their record_id.
    """

    def plan(dt):
        done = None if dt is None else dt.transaction_version(USAGE_APP)
        to = lake.txn_version(SILVER_USAGE, USAGE_APP)
        if to is None or (done is not None and done >= to):
            return None
        if planned and (done, to) == (planned["since"], planned["current"]):
            rows = planned["dupes"]
        else:
            rows = _duplicates_between(lake, done, to)
        return Write(rows, txns={USAGE_APP: to}, schema_mode="merge")

    lake.commit(USAGE_DUPLICATES, plan, partition_by=["event_date"])


def _duplicates_between(lake: Lake, since: int | None, until: int) -> pa.Table:
    """Bronze usage rows of versions (since, until] that silver/usage did not keep."""
    new, _ = _new_bronze_rows(lake, bronze_table("usage.events"), since, until)
    if new is None:
        return pa.table({})
    con = duckdb.connect()
    con.register("new_rows", new)
    dates = [r[0] for r in con.execute("select distinct event_date from new_rows").fetchall()]
    import pyarrow.dataset as ds

    keys = ["record_id", "_source", "_kafka_topic", "_kafka_partition", "_kafka_offset", "_source_row", "_ingested_at"]
    kept = lake.dataset(SILVER_USAGE).to_table(columns=keys, filter=ds.field("event_date").isin(dates)) if dates else None
    con.register("kept", kept if kept is not None else new.select(keys).slice(0, 0))
    same = " and ".join(f"k.{c} is not distinct from n.{c}" for c in keys)
    return query(con, f"select * from new_rows n where not exists (select 1 from kept k where {same})")


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
    """Recompute the intervals of subscribers with new lifecycle events and replace theirs.

    Planned from the silver snapshot the commit is checked against (as :func:`refresh_usage`).
    """
    lake = Lake.from_settings(settings)
    bronze = bronze_table("bss.events")
    planned: dict = {}

    def plan(dt):
        since = None if dt is None else dt.transaction_version(SUBSCRIBERS_APP)
        new, current = _new_bronze_rows(lake, bronze, since)
        planned.clear()
        planned.update(since=since, current=current, rows=0, changed=0)
        if new is None or not new.num_rows:
            return None
        con = duckdb.connect()
        con.register("new_rows", new)
        ids = query(con, "select distinct subscriber_id from new_rows")["subscriber_id"].cast(pa.string())
        import pyarrow.dataset as ds

        history = lake.dataset(bronze, version=current).to_table(filter=ds.field("subscriber_id").isin(ids))
        con.register("bss", history)
        intervals = query(con, SUBSCRIBER_INTERVALS)
        planned.update(rows=intervals.num_rows, changed=len(ids))
        quoted = ",".join("'" + str(s).replace("'", "''") + "'" for s in ids.to_pylist())
        # the changed subscribers' intervals are replaced in one commit
        return Write(intervals, mode="overwrite", predicate=f"subscriber_id in ({quoted})", txns={SUBSCRIBERS_APP: current})

    version = lake.commit(SILVER_SUBSCRIBERS, plan, configuration=CDF)
    result = SilverResult(SILVER_SUBSCRIBERS, planned.get("since"), planned.get("current"))
    if version is not None:
        result.new_rows, result.changed_subscribers = planned["rows"], planned["changed"]
    return result


def refresh(settings: Settings) -> list[SilverResult]:
    """Bring every silver table up to date with bronze."""
    return [refresh_usage(settings), refresh_subscribers(settings)]

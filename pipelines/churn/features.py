"""gold/churn/features_daily: point-in-time features per (subscriber, as-of date), by DuckDB SQL.

A row of an input is *known at* instant t when ``coalesce(_kafka_timestamp, _delivered_at, _ingested_at) < t``
(Kafka records: their topic timestamp; dump rows: their file's delivery time, else when they landed);
a feature for ``as_of_date = d`` uses the rows whose event time and known time are both before
``d 00:00 UTC``. The staging models (``sql/churn/stg_*.sql``) aggregate the inputs of a whole
range of as-of dates once, each row tagged with ``visible_from`` (the first as-of date at which
it is known); ``sql/churn/features_daily.sql`` then builds one day from them, and each day
replaces its own partition in one commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter

import duckdb
import pyarrow as pa

from pipelines.churn.plans import plan_table
from pipelines.core.config import Settings
from pipelines.core.duck import model_sql, query
from pipelines.core.errors import ConfigError, LakeError
from pipelines.core.lake import Lake, view_name

FEATURES = "gold/churn/features_daily"
SILVER_USAGE = "silver/usage"
BRONZE_BSS = "bronze/bss.events"
BRONZE_NETWORK = "bronze/network.events"
STAGES = ("stg_cell_rates", "stg_usage_daily", "stg_activity", "stg_called_numbers", "stg_bss")
TS = pa.timestamp("us", tz="UTC")
EMPTY_NETWORK = pa.schema(
    [("cell_id", pa.string()), ("observed_at", TS), ("kind", pa.string()), ("call_attempts", pa.int64()),
     ("dropped_calls", pa.int64()), ("event_date", pa.date32()), ("_kafka_timestamp", TS), ("_ingested_at", TS), ("_delivered_at", TS)]
)
# The model's inputs, in model order: every column of features_daily but the keys, status and plan_id.
FEATURE_COLUMNS = [
    "tenure_days", "monthly_fee", "voice_min_7d", "voice_min_30d", "call_count_7d", "call_count_30d",
    "sms_count_7d", "sms_count_30d", "data_mb_7d", "data_mb_30d", "voice_min_trend", "call_count_trend",
    "sms_count_trend", "data_mb_trend", "distinct_called_numbers_30d", "intl_share_30d", "roaming_share_30d",
    "dropped_call_rate_30d", "cell_drop_rate_30d", "complaints_90d", "open_tickets", "payment_failures_90d",
    "days_since_last_payment", "downgrades_90d", "bundle_utilisation", "ott_services_active",
    "days_since_last_activity",
]


@dataclass(frozen=True)
class ChurnSettings:
    """The ``[churn]`` section of telcolake.toml.

    Attributes:
        activity_ttl_days: how far back ``days_since_last_activity`` looks (its cap).
        memory_limit: DuckDB memory before spilling.
        temp_directory: where DuckDB spills (``<state dir>/duckdb-churn``; None = DuckDB's own).
        threads: DuckDB threads (0 = all cores).
        test_days: training holds out the last this many labelled as-of dates as the test set.
        gap_days: training rows are at least this many days before the first test date, so
            their labels were known by then (30 = no label overlaps the test period).
        offer_top_pct: the top this percent of scores get an offer.
    """

    activity_ttl_days: int = 90
    memory_limit: str = "2GB"
    temp_directory: str | None = None
    threads: int = 0
    test_days: int = 7
    gap_days: int = 30
    offer_top_pct: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ChurnSettings:
        values = settings.values("churn")
        spill = str(settings.state_dir / "duckdb-churn")
        return cls(temp_directory=spill, **values)


@dataclass
class FeatureRun:
    """What one ``features`` run wrote."""

    days: list[str] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    input_versions: dict[str, int] = field(default_factory=dict)
    table_version: int | None = None


def connect_inputs(lake: Lake, cfg: ChurnSettings) -> tuple[duckdb.DuckDBPyConnection, dict[str, int]]:
    """A UTC DuckDB connection with the pinned inputs registered as views, and their versions.

    Raises:
        LakeError: silver/usage or bronze/bss.events does not exist.
    """
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"set memory_limit = '{cfg.memory_limit}'")
    if cfg.temp_directory:
        Path(cfg.temp_directory).mkdir(parents=True, exist_ok=True)
        con.execute(f"set temp_directory = '{cfg.temp_directory}'")
    if cfg.threads:
        con.execute(f"set threads = {cfg.threads}")
    # Arrow scans carry no row-count estimate, so DuckDB would build its hash tables on the
    # millions of usage rows instead of the small lookup table on the right of a join (the
    # cell-day rates): the models write every join with its build side on the right.
    con.execute("set disabled_optimizers = 'build_side_probe_side'")
    versions: dict[str, int] = {}
    for name in (SILVER_USAGE, BRONZE_BSS, BRONZE_NETWORK):
        dt = lake.maybe_table(name)
        if dt is None and name != BRONZE_NETWORK:
            raise LakeError(f"table {name} does not exist under {lake.root}: run ingest and silver first")
        view = view_name(name)
        if dt is None:
            con.register(view, EMPTY_NETWORK.empty_table())
        else:
            versions[name] = dt.version()
            register_input(con, view, dt.to_pyarrow_dataset())
    return con, versions


def register_input(con: duckdb.DuckDBPyConnection, view: str, data) -> None:
    """Register an input table as ``view``; a table written before bronze had ``_delivered_at``
    (no dump named by its date landed since) gets it as a null column, so the models read one shape."""
    if "_delivered_at" in data.schema.names:
        con.register(view, data)
        return
    con.register(f"{view}_stored", data)
    con.execute(f"create or replace temp view {view} as select *, null::timestamptz as _delivered_at from {view}_stored")


def stage(con: duckdb.DuckDBPyConnection, start: date, end: date, cfg: ChurnSettings) -> None:
    """Materialise the staging models for as-of dates ``start``..``end`` (inclusive)."""
    lo, act, hi = start - timedelta(days=35), start - timedelta(days=cfg.activity_ttl_days), end
    params = pa.table({
        "range_from": [start], "range_to": [end], "range_to_at": [datetime.combine(end, time(), tzinfo=UTC)],
        "scan_from": [lo], "window_from": [start - timedelta(days=30)], "activity_from": [act],
    })
    con.register("run_params_in", params)
    con.execute("create or replace temp table run_params as select * from run_params_in")
    con.unregister("run_params_in")
    # Import views with literal date bounds: DuckDB pushes those into the Delta scan (partition
    # pruning and only the columns a model reads); bounds from a joined table would not be.
    con.execute(f"create or replace temp view usage_recent as select * from silver_usage where event_date >= date '{lo}' and event_date < date '{hi}'")
    con.execute(f"create or replace temp view usage_activity as select subscriber_id, event_date, _kafka_timestamp, _delivered_at, _ingested_at from silver_usage where event_date >= date '{act}' and event_date < date '{lo}'")
    con.execute(f"create or replace temp view kpi_recent as select * from bronze_network_events where event_date >= date '{lo}' and event_date < date '{hi}'")
    for model in STAGES:
        con.execute(f"create or replace temp table {model} as {model_sql(f'churn/{model}')}")


def features_for(con: duckdb.DuckDBPyConnection, as_of: date, cfg: ChurnSettings) -> pa.Table:
    """The feature rows of one as-of date from the staged models, ordered by subscriber."""
    con.register("as_of_in", pa.table({"as_of_date": [as_of], "activity_ttl_days": pa.array([cfg.activity_ttl_days], pa.int32())}))
    con.execute("create or replace temp table as_of_params as select * from as_of_in")
    con.unregister("as_of_in")
    con.register("plan_in", plan_table(as_of))
    con.execute("create or replace temp table plan_catalog as select * from plan_in")
    con.unregister("plan_in")
    return query(con, f"select * from ({model_sql('churn/features_daily')}) order by subscriber_id")


def write_day(lake: Lake, name: str, as_of: date, rows: pa.Table, **metadata: object) -> int:
    """Replace the ``as_of`` partition of table ``name`` with ``rows`` in one commit (creating the
    table); ``metadata`` goes into the commit after ``as_of_date``. Returns the table version."""
    meta = {"as_of_date": as_of.isoformat(), **metadata}
    # one replace whether or not the table exists yet: two runs writing the same day leave one copy
    return lake.write(
        name, rows, mode="overwrite", partition_by=["as_of_date"], predicate=f"as_of_date = '{as_of.isoformat()}'", metadata=meta
    )


def build_features(
    settings: Settings,
    start: date,
    end: date | None = None,
    *,
    on_day: Callable[[date, int], None] | None = None,
) -> FeatureRun:
    """Compute and write features for every as-of date from ``start`` to ``end`` (inclusive).

    The inputs are staged once for the whole range, then each day is computed and written.

    Raises:
        ConfigError: ``end`` is before ``start``.
        LakeError: an input table is missing.
    """
    end = end or start
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    began = perf_counter()
    cfg = ChurnSettings.from_settings(settings)
    lake = Lake.from_settings(settings)
    con, versions = connect_inputs(lake, cfg)
    run = FeatureRun(input_versions=versions)
    try:
        stage(con, start, end, cfg)
        day = start
        while day <= end:
            rows = features_for(con, day, cfg)
            run.table_version = write_day(lake, FEATURES, day, rows, input_versions=versions)
            run.days.append(day.isoformat())
            run.rows += rows.num_rows
            if on_day:
                on_day(day, rows.num_rows)
            day += timedelta(days=1)
    finally:
        con.close()
    run.seconds = round(perf_counter() - began, 3)
    return run

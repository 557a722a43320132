"""The DuckDB side of billing: pinned Delta snapshots as views, run parameters, SQL models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.duck import model_sql
from pipelines.core.lake import Lake, view_name

SILVER_USAGE = "silver/usage"
SILVER_SUBSCRIBERS = "silver/subscribers"
RATED = "gold/billing/rated_usage"
UNRATED = "gold/billing/unrated"
ADJUSTMENTS = "gold/billing/adjustments"
RERATED = "gold/billing/rerated_usage"
INVOICES = "gold/billing/invoices"
INVOICE_LINES = "gold/billing/invoice_lines"
BILL_RUNS = "gold/billing/bill_runs"
ONE_OFF = "gold/billing/one_off_charges"
HELD = "gold/billing/held_accounts"
BSS_EVENTS = "bronze/bss.events"  # lifecycle events have no silver table; one_off_charges dedupes by event_id
VIEWS = ("stg_usage", "effective_rated_usage")  # read once or filtered by their readers: not materialised

# Tables the models read before they exist (first run; a lake built without BSS events, as
# some tests build silver directly): just the columns the SQL uses.
PLACEHOLDERS = {
    RATED: "record_id varchar, subscriber_id varchar, account_id varchar, cycle varchar, billed_cycle varchar, "
    "event_type varchar, allowance_id varchar, included_base bigint, tiers_id varchar, tier_billed_base bigint, "
    "charge decimal(18,4), tariff_version bigint",
    UNRATED: "record_id varchar, billed_cycle varchar",
    RERATED: "record_id varchar, rerate_seq bigint, allowance_id varchar, included_base bigint, tiers_id varchar, "
    "tier_billed_base bigint, charge decimal(18,4), tariff_version bigint",
    ADJUSTMENTS: "adjustment_id varchar, account_id varchar, for_cycle varchar, billed_cycle varchar, reason varchar, "
    "event_type varchar, amount decimal(18,4), count_records bigint, run_id varchar",
    ONE_OFF: "event_id varchar, billed_cycle varchar",
    HELD: "cycle varchar, account_id varchar",
    INVOICES: "billing_account_id varchar, cycle varchar",
    INVOICE_LINES: "cycle varchar, line_id varchar",
    BSS_EVENTS: "event_id varchar, subscriber_id varchar, account_id varchar, occurred_at timestamptz, kind varchar, "
    "plan_id varchar, _kafka_timestamp timestamptz, _ingested_at timestamptz, _kafka_partition integer, _kafka_offset bigint, "
    "_source varchar, _source_row bigint, event_month varchar",
}
StepCallback = Callable[[str], None]


def engine_options(settings: Settings) -> dict[str, Any]:
    """``[billing]`` options for DuckDB: ``memory_limit`` (e.g. "3GB") and ``threads`` (0 = all cores)."""
    section = settings.values("billing")
    memory, threads, bucket_rows = section["memory_limit"], section["threads"], section["bucket_rows"]
    spill = settings.state_dir / "duckdb-billing"
    spill.mkdir(parents=True, exist_ok=True)
    return {"memory_limit": memory, "threads": threads, "temp_directory": str(spill), "bucket_rows": bucket_rows}


def max_held_share(settings: Settings) -> float:
    """``[billing] max_held_share``: the share of a cycle's billed accounts that may be held before
    the quality gate fails the bill run (default 0.01 = 1 %)."""
    return float(settings.values("billing")["max_held_share"])


def connect(lake: Lake, versions: dict[str, int], params: dict[str, Any], options: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the pinned inputs registered, run parameters and macros loaded."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("set preserve_insertion_order = false")
    for key, value in (options or {}).items():
        if key != "threads" or value:
            con.execute(f"set {key} = '{value}'")
    for name, version in versions.items():
        register(con, lake, name, version)
    for name, columns in PLACEHOLDERS.items():
        if name not in versions:
            con.execute(f"create table {view_name(name)} ({columns})")
    con.register("run_params_in", pa.Table.from_pylist([params]))
    con.execute("create table run_params as select * from run_params_in")
    con.unregister("run_params_in")
    # the same values as constant macros, for filters DuckDB should push into scans
    for key, value in params.items():
        con.execute(f"create macro run_{key}() as {_literal(value)}")
    con.execute(model_sql("billing/macros"))
    for view in VIEWS:
        con.execute(f"create view {view} as {model_sql(f'billing/{view}')}")
    return con


def register(con: duckdb.DuckDBPyConnection, lake: Lake, name: str, version: int) -> None:
    """Table ``name`` at ``version`` as a view: read by DuckDB's own Parquet reader when the
    table allows it (parallel, with statistics the planner needs to pick join sides), else
    through a pyarrow dataset."""
    files = lake.parquet_files(name, version=version)
    if files is None or not files.paths:
        con.register(view_name(name), dataset(lake, name, version))
        return
    paths = "[" + ", ".join(_literal(p) for p in files.paths) + "]"
    hive = ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in files.partition_types.items())
    options = f"hive_partitioning = true, hive_types = {{{hive}}}" if hive else "hive_partitioning = false"
    columns = ", ".join(f'"{c}"' for c in files.schema.names)
    con.execute(f"create view {view_name(name)} as select {columns} from read_parquet({paths}, {options}, union_by_name = true)")


def dataset(lake: Lake, name: str, version: int) -> Any:
    """Table ``name`` at ``version`` as a pyarrow dataset (see :meth:`Lake.dataset`)."""
    return lake.dataset(name, version=version)





def _literal(value: Any) -> str:
    """A SQL literal for a run parameter (str, int, date or UTC datetime)."""
    if isinstance(value, datetime):
        return f"timestamptz '{value.astimezone(UTC).isoformat()}'"
    if isinstance(value, date):
        return f"date '{value.isoformat()}'"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def read(lake: Lake, name: str, *, columns: list[str] | None = None) -> pa.Table:
    """Read a (small) table at its latest version through :func:`dataset`."""
    return dataset(lake, name, lake.table(name).version()).to_table(columns=columns)


def run_models(con: duckdb.DuckDBPyConnection, models: tuple[str, ...], on_step: StepCallback | None = None) -> None:
    """Materialise each model, in order, as a temp table named after its file."""
    for model in models:
        if on_step:
            on_step(model)
        con.execute(f"create or replace temp table {model} as {model_sql(f'billing/{model}')}")


def fetch(con: duckdb.DuckDBPyConnection, model: str, order_by: str | None = None) -> pa.Table:
    """A model's rows as Arrow (in ``order_by`` order when given, for small outputs)."""
    result = con.sql(f"select * from {model}" + (f" order by {order_by}" if order_by else "")).to_arrow_table()
    return result.combine_chunks() if result.num_columns else result

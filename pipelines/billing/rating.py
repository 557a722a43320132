"""Rate a run's usage scope in subscriber buckets: context joins, running sums, pricing.

Per bucket, ``usage_context`` is one streaming pass over the Parquet files (joins only) into
Arrow; :func:`pipelines.billing.running.consume` adds the allowance and tier running sums;
``rated_charges`` prices each rated record once, into the context too; ``rated_usage`` and
``unrated`` are projected from it and written by DuckDB's own Parquet writer straight into
their tables' folders (bill runs; a rerate keeps them in DuckDB), and the invoices' per-account
sums are taken from it, not read back. Nothing is
committed here: the caller commits every written file of a table in one transaction.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from pipelines.billing.engine import RATED, UNRATED, StepCallback, run_models
from pipelines.billing.running import consume
from pipelines.core.duck import model_sql
from pipelines.core.lake import Lake, WrittenFile

# Bytes a record in scope needs while it is rated: its Arrow context row, the running-sum arrays
# and DuckDB's share of sorting and pricing it (measured on the bench, rounded up).
BYTES_PER_RECORD = 200


@dataclass
class Rating:
    """What rating a run's scope wrote (bill runs: files to commit; rerates: DuckDB tables)."""

    rated: int = 0
    unrated: int = 0
    late: int = 0
    files: dict[str, list[WrittenFile]] = field(default_factory=lambda: {RATED: [], UNRATED: []})
    schemas: dict[str, pa.Schema] = field(default_factory=dict)
    staging: Path | None = None  # remote lakes: files are written here first


def bucket_count(records: int, memory_limit: str, bucket_rows: int = 0) -> int:
    """Subscriber buckets for ``records`` records in scope: each bucket fits the DuckDB memory
    limit at :data:`BYTES_PER_RECORD` a record, and holds at most ``bucket_rows`` when set (> 0)."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(MB|GB|MiB|GiB)", memory_limit).groups()
    budget = float(number) * (1 << (20 if unit.startswith("M") else 30))
    per_bucket = max(1000, int(budget // BYTES_PER_RECORD))
    if bucket_rows:
        per_bucket = min(per_bucket, bucket_rows)
    return max(1, -(-records // per_bucket))


def _set_bucket(con: duckdb.DuckDBPyConnection, bucket: int, buckets: int) -> None:
    """Point usage_scope at subscriber bucket ``bucket`` of ``buckets`` (0 of 1: the whole scope)."""
    con.execute(f"create or replace macro run_bucket() as {bucket}")
    con.execute(f"create or replace macro run_buckets() as {buckets}")
    con.execute(f"create or replace temp view usage_scope as {model_sql('billing/usage_scope')}")


def write_files(con: duckdb.DuckDBPyConnection, lake: Lake, name: str, model: str, cycle: str, staging: Path | None) -> list[WrittenFile]:
    """COPY a model's rows (all of billed_cycle ``cycle``) into table ``name``'s partition folder
    (or ``staging``), one file per DuckDB thread, written in parallel."""
    folder = (staging / name if staging else Path(lake.uri(name).removeprefix("file://"))) / f"billed_cycle={cycle}"
    fresh = folder / f"new-{uuid.uuid4().hex}"  # COPY with one file per thread wants a folder of its own
    folder.mkdir(parents=True, exist_ok=True)
    rows = con.execute(f"copy (select * exclude (billed_cycle) from {model}) to '{fresh}' "
                       "(format parquet, per_thread_output, filename_pattern 'part-{uuid}', string_dictionary_page_size_limit 1, dictionary_size_limit 1, return_stats)").fetchall()
    out = []
    for path, count, size, _footer, stats, _partitions, _extra in rows:
        target = folder / Path(path).name
        os.replace(path, target)
        nulls = {k.strip('"'): int(v["null_count"]) for k, v in (stats or {}).items() if "null_count" in v}
        out.append(WrittenFile(path=str(target), size=size, num_records=count, partition_values={"billed_cycle": cycle}, null_counts=nulls))
    shutil.rmtree(fresh, ignore_errors=True)
    return out


def _schema(con: duckdb.DuckDBPyConnection, model: str) -> pa.Schema:
    return con.sql(f"select * from {model} where false").to_arrow_table().schema


def rate(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    buckets: int,
    mode: Literal["bill", "rerate"],
    on_step: StepCallback | None = None,
) -> Rating:
    """Rate the scope of the run whose parameters ``con`` holds (see :mod:`pipelines.billing.engine`).

    Leaves ``usage_charges_all`` and ``held_usage_all`` in ``con`` (bill runs) or the rerated
    cycle's ``rated_usage`` and ``held_usage`` tables (rerates).
    """
    result = Rating(staging=Path(tempfile.mkdtemp(prefix="billing-stage-")) if lake.is_remote and mode == "bill" else None)
    con.execute(model_sql("billing/types"))
    run_models(con, ("late_usage",), on_step)
    _set_bucket(con, 0, 1)
    run_models(con, ("minute_calendar", "rating_keys", "destination_keys"), on_step)
    late = con.sql("select count(*) from late_usage").fetchall()[0][0]
    if late:
        run_models(con, ("allowance_prior",), on_step)
    else:  # nothing late: nothing rated earlier can share an allowance with this run's records
        con.execute("create or replace temp table allowance_prior (subscriber_id varchar, cycle varchar, pool_id varchar, used_base bigint)")
    cycle = con.sql("select target_cycle from run_params").fetchall()[0][0]
    for bucket in range(buckets):
        step = (lambda m, b=bucket: on_step(f"[{b + 1}/{buckets}] {m}")) if on_step and buckets > 1 else on_step
        _set_bucket(con, bucket, buckets)
        if step:
            step("usage_context")
        context = con.sql(model_sql("billing/usage_context")).to_arrow_table()
        context = context.append_column("rid", pa.array(np.arange(context.num_rows, dtype=np.int64)))
        if step:
            step("allowances and tiers")
        context = consume(con, context)
        if step:
            step("rated_charges")
        context = _priced(con, context)
        run_models(con, ("held_usage",), None)
        _append(con, "held_usage")
        if mode == "rerate":
            run_models(con, ("rated_usage",), step)
            _append(con, "rated_usage")
            con.unregister("usage_context")
            continue
        written = {}
        for name, model in ((RATED, "rated_usage"), (UNRATED, "unrated")):
            if step:
                step(model)
            con.execute(f"create or replace temp view {model}_rows as {model_sql(f'billing/{model}')}")
            result.schemas.setdefault(name, _schema(con, f"{model}_rows"))
            written[name] = write_files(con, lake, name, f"{model}_rows", cycle, result.staging)
            result.files[name].extend(written[name])
        # invoices need only per-account sums, of the charges already in usage_context
        if step:
            step("usage_charges")
        run_models(con, ("usage_charges",), None)
        _append(con, "usage_charges")
        con.unregister("usage_context")
        result.rated += sum(f.num_records for f in written[RATED])
        result.unrated += sum(f.num_records for f in written[UNRATED])
    if mode == "bill":
        result.late = con.sql("select coalesce(sum(count_records), 0) from usage_charges_all where is_late").fetchall()[0][0]
    return result


def _priced(con: duckdb.DuckDBPyConnection, context: pa.Table) -> pa.Table:
    """``context`` with rated_charges' rated_base and charge_e4 appended (0 on records not rated),
    (re)registered as usage_context: each record is priced once, for its rated_usage row and for
    the invoices' sums."""
    charges = con.sql(model_sql("billing/rated_charges")).to_arrow_table()
    rid = charges["rid"].to_numpy()
    for name in ("rated_base", "charge_e4"):
        column = charges[name]
        values = np.zeros(context.num_rows, dtype=np.int64)
        values[rid] = column.fill_null(0).to_numpy()
        missing = None
        if column.null_count:  # rated_base of mobile-terminated records (no rate, no increments)
            missing = np.zeros(context.num_rows, dtype=bool)
            missing[rid] = column.is_null().to_numpy(zero_copy_only=False)
        context = context.append_column(name, pa.array(values, mask=missing))
    con.register("usage_context", context)
    return context


def _append(con: duckdb.DuckDBPyConnection, model: str) -> None:
    con.execute(f"create table if not exists {model}_all as select * from {model} limit 0")
    con.execute(f"insert into {model}_all select * from {model}")

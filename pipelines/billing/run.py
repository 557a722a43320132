"""Bill runs and rerates: pin input snapshots, run the sql/billing models in DuckDB, write Delta."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from pipelines.billing import rating
from pipelines.billing.engine import (
    ADJUSTMENTS,
    BILL_RUNS,
    HELD,
    INVOICE_LINES,
    INVOICES,
    ONE_OFF,
    PLACEHOLDERS,
    RATED,
    RERATED,
    SILVER_SUBSCRIBERS,
    SILVER_USAGE,
    UNRATED,
    StepCallback,
    connect,
    engine_options,
    fetch,
    max_held_share,
    read,
    run_models,
)
from pipelines.billing.rating import Rating
from pipelines.billing.reference import REFERENCE_TABLES
from pipelines.core.config import Settings
from pipelines.core.errors import BillingError
from pipelines.core.lake import Lake, utcnow
from pipelines.core.lease import leased

OUTPUTS = (RATED, UNRATED, ADJUSTMENTS, ONE_OFF, INVOICE_LINES, INVOICES, HELD)

# account_problems decides which accounts this run holds, before anything is rated
SETUP_MODELS = ("version_periods", "rate_lookup", "billing_cycles", "plan_days", "accounts", "account_problems", "rating_codes",
                "subscriber_timeline")
INVOICE_MODELS = ("recurring_charges", "one_off_charges", "late_adjustments", "invoice_lines", "invoices", "held_accounts")
BILLING_LEASE = "billing"  # one bill run or rerate at a time per lake: a second one waits (pipelines.core.lease)
_CYCLE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")



@dataclass(frozen=True)
class Cycle:
    """A billing cycle: a calendar month in UTC, written ``YYYY-MM``."""

    name: str
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, name: str) -> Cycle:
        m = _CYCLE.match(name or "")
        if not m:
            raise BillingError(f"cycle {name!r}: expected YYYY-MM such as 2026-10")
        year, month = int(m.group(1)), int(m.group(2))
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return cls(name, start, end)

    def next(self) -> Cycle:
        return Cycle.parse(self.end.strftime("%Y-%m"))

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass
class BillRunResult:
    """What a bill run did (or found, when the cycle was already closed)."""

    cycle: str
    run_id: str
    already_closed: bool = False
    rated: int = 0
    unrated: int = 0
    late: int = 0
    invoices: int = 0
    held_accounts: int = 0
    amount_excl_tax: Decimal = Decimal(0)
    amount_incl_tax: Decimal = Decimal(0)
    input_versions: dict[str, int] = field(default_factory=dict)
    quality_gate: str = "not run"
    seconds: float = 0.0


@dataclass
class RerateResult:
    """What a rerate did."""

    cycle: str
    run_id: str
    target_cycle: str
    changed_records: int = 0
    adjustments: int = 0
    net_amount: Decimal = Decimal(0)
    held_accounts: int = 0
    input_versions: dict[str, int] = field(default_factory=dict)


def closed_cycles(lake: Lake) -> dict[str, dict[str, Any]]:
    """Closed cycles (cycle -> its bill_runs row)."""
    if not lake.exists(BILL_RUNS):
        return {}
    return {r["cycle"]: r for r in read(lake, BILL_RUNS).to_pylist()}


def held_count(lake: Lake, cycle: str) -> int:
    """How many accounts the run of ``cycle`` held."""
    if not lake.exists(HELD):
        return 0
    return sum(1 for c in read(lake, HELD, columns=["cycle"])["cycle"].to_pylist() if c == cycle)


def _pin(lake: Lake) -> dict[str, int]:
    required = (SILVER_USAGE, SILVER_SUBSCRIBERS, *REFERENCE_TABLES)
    versions = {}
    for name in required:
        v = lake.version(name)
        if v is None:
            hint = "run `telcolake catalog load`" if name.startswith("reference/") else "run ingest and `telcolake silver`"
            raise BillingError(f"input table {name} does not exist; {hint}")
        versions[name] = v
    for name in PLACEHOLDERS:
        v = lake.version(name)
        if v is not None:
            versions[name] = v
    return versions


def scope_records(lake: Lake, start: Cycle, end: Cycle, version: int) -> int:
    """Usage records from the start of cycle ``start`` to the end of ``end``, from the Delta log's
    per-file record counts of silver/usage's event_date partitions (an upper bound of a scope)."""
    actions = pa.table(lake.table(SILVER_USAGE, version=version).get_add_actions(flatten=True))
    column = "partition.event_date"
    if "num_records" not in actions.column_names:
        return 0
    if column not in actions.column_names:
        return sum(n or 0 for n in actions["num_records"].to_pylist())
    dates = actions[column].cast(pa.string()).to_pylist()
    counts = actions["num_records"].to_pylist()
    lo, hi = start.start.date().isoformat(), end.end.date().isoformat()
    return sum(n or 0 for d, n in zip(dates, counts, strict=True) if d is not None and lo <= d < hi)


def _commit(lake: Lake, name: str, rating: Rating, cycle: str, meta: dict[str, Any]) -> None:
    """Commit every file rating wrote for table ``name`` in one transaction replacing the cycle's
    rows (a re-run after a crash starts clean; the cycle only counts once closed)."""
    files = rating.files[name]
    if rating.staging is None:
        lake.commit_files(name, files, schema=rating.schemas[name], partition_by=["billed_cycle"], replace={"billed_cycle": cycle},
                          metadata=meta)
        return
    import pyarrow.dataset as pds

    data = pds.dataset([f.path for f in files], format="parquet", partitioning="hive").to_table() if files \
        else rating.schemas[name].empty_table()
    _replace(lake, name, data.select(rating.schemas[name].names).cast(rating.schemas[name]), f"billed_cycle = '{cycle}'", meta,
             ["billed_cycle"])


def _params(mode: str, cycle: Cycle, target: Cycle, run_id: str, rerate_seq: int = 0, first_billed: Cycle | None = None) -> dict[str, Any]:
    """Run parameters; ``billing_start`` is the start of the first billed cycle (this one on the
    first run): lifecycle events before it are history from before billing and never charged."""
    first = first_billed or cycle
    return {
        "mode": mode, "cycle": cycle.name, "target_cycle": target.name, "run_id": run_id, "rerate_seq": rerate_seq,
        "cycle_start": cycle.start, "cycle_end": cycle.end, "cycle_start_date": cycle.start.date(),
        "cycle_end_date": cycle.end.date(), "days_in_cycle": cycle.days,
        "billing_start": first.start, "billing_start_date": first.start.date(), "billing_start_cycle": first.name,
        "bucket": 0, "buckets": 1,
    }


def _replace(lake: Lake, name: str, data: pa.Table, predicate: str, meta: dict[str, Any], partition_by: list[str] | None = None) -> int:
    if not lake.exists(name):
        return lake.write(name, data, mode="overwrite", partition_by=partition_by, metadata=meta)
    return lake.write(name, data, mode="overwrite", predicate=predicate, metadata=meta)


@leased(lambda *_a, **_k: BILLING_LEASE)
def bill_run(
    settings: Settings,
    cycle: str,
    *,
    early: bool = False,
    gate: Callable[[Settings, list[str]], Any] | None = None,
    on_step: StepCallback | None = None,
    now: datetime | None = None,
) -> BillRunResult:
    """Rate the cycle's usage (plus late usage of closed cycles), write invoices, close the cycle.

    Every write replaces only this cycle's rows, and the cycle is recorded as closed last
    (in ``gold/billing/bill_runs``), so a crashed run is completed by running it again and a
    closed cycle is returned as it is, never rewritten.

    Args:
        settings: where the lake is.
        cycle: ``YYYY-MM``.
        early: allow billing a cycle that has not ended yet.
        gate: called with the written table names before the cycle is closed; raising refuses
            to close it (the quality gate).
        on_step: called with each model's name as it runs.
        now: the current time (tests).

    Raises:
        BillingError: bad cycle, missing inputs, a later cycle already closed, or a cycle that
            has not ended without ``early``.
    """
    started = utcnow()
    c = Cycle.parse(cycle)
    lake = Lake.from_settings(settings)
    run_id = f"bill-{c.name}"
    closed = closed_cycles(lake)
    if c.name in closed:
        row = closed[c.name]
        return BillRunResult(
            cycle=c.name, run_id=row["run_id"], already_closed=True, rated=row["count_rated"], unrated=row["count_unrated"],
            late=row["count_late"], invoices=row["count_invoices"], amount_excl_tax=row["amount_excl_tax"],
            amount_incl_tax=row["amount_incl_tax"], input_versions=json.loads(row["input_versions"]), quality_gate="closed earlier",
            held_accounts=held_count(lake, c.name),
        )
    later = sorted(k for k in closed if k > c.name)
    if later:
        raise BillingError(f"cycle {c.name}: cycle {later[-1]} is already closed; cycles are billed in order")
    if c.end > (now or utcnow()) and not early:
        raise BillingError(f"cycle {c.name} has not ended yet (ends {c.end:%Y-%m-%dT%H:%MZ}); pass --early to bill it now")
    versions = _pin(lake)
    options = engine_options(settings)
    max_held_share(settings)  # a bad threshold is refused before anything is written
    first_billed = Cycle.parse(min(closed)) if closed else c
    buckets = rating.bucket_count(scope_records(lake, first_billed, c, versions[SILVER_USAGE]), options["memory_limit"],
                                  options.pop("bucket_rows"))
    con = connect(lake, versions, _params("bill", c, c, run_id, first_billed=first_billed), options)
    run_models(con, SETUP_MODELS, on_step)
    meta = {"run_id": run_id, "cycle": c.name, "input_versions": json.dumps(versions, sort_keys=True)}
    pred = f"billed_cycle = '{c.name}'"
    rated = rating.rate(con, lake, buckets=buckets, mode="bill", on_step=on_step)
    if on_step:
        on_step("writing rated usage")
    try:
        for name in (RATED, UNRATED):
            _commit(lake, name, rated, c.name, meta)
    finally:
        if rated.staging:
            shutil.rmtree(rated.staging, ignore_errors=True)
    con.execute("create or replace temp table usage_charges as select * from usage_charges_all")
    run_models(con, INVOICE_MODELS, on_step)
    totals = con.sql("select count(*), coalesce(sum(amount_excl_tax), 0), coalesce(sum(amount_incl_tax), 0) from invoices").fetchall()[0]
    held = fetch(con, "held_accounts", "account_id")
    if on_step:
        on_step("writing invoices")
    _replace(lake, ADJUSTMENTS, fetch(con, "late_adjustments", "adjustment_id"), f"{pred} and reason = 'late_usage'", meta)
    _replace(lake, ONE_OFF, fetch(con, "(select * exclude (is_held) from one_off_charges where not is_held)", "event_id"), pred, meta,
             ["billed_cycle"])
    _replace(lake, HELD, held, f"cycle = '{c.name}'", meta, ["cycle"])
    _replace(lake, INVOICE_LINES, fetch(con, "invoice_lines", "bill_no, line_id"), f"cycle = '{c.name}'", meta, ["cycle"])
    _replace(lake, INVOICES, fetch(con, "invoices", "bill_no"), f"cycle = '{c.name}'", meta, ["cycle"])
    con.close()
    result = BillRunResult(
        cycle=c.name, run_id=run_id, rated=rated.rated, unrated=rated.unrated, late=rated.late, invoices=totals[0],
        held_accounts=held.num_rows,
        amount_excl_tax=Decimal(totals[1]), amount_incl_tax=Decimal(totals[2]), input_versions=versions,
    )
    if gate is not None:
        if on_step:
            on_step("quality gate")
        gate(settings, list(OUTPUTS))
        result.quality_gate = "passed"
    row = {
        "cycle": c.name, "run_id": run_id, "closed_at": utcnow(), "input_versions": json.dumps(versions, sort_keys=True),
        "count_rated": result.rated, "count_unrated": result.unrated, "count_late": result.late, "count_invoices": result.invoices,
        "amount_excl_tax": result.amount_excl_tax, "amount_incl_tax": result.amount_incl_tax,
    }
    schema = pa.schema([("cycle", pa.string()), ("run_id", pa.string()), ("closed_at", pa.timestamp("us", tz="UTC")),
                        ("input_versions", pa.string()), ("count_rated", pa.int64()), ("count_unrated", pa.int64()),
                        ("count_late", pa.int64()), ("count_invoices", pa.int64()), ("amount_excl_tax", pa.decimal128(18, 4)),
                        ("amount_incl_tax", pa.decimal128(18, 4))])
    lake.write(BILL_RUNS, pa.Table.from_pylist([row], schema=schema), metadata=meta)
    result.seconds = (utcnow() - started).total_seconds()
    return result


@leased(lambda *_a, **_k: BILLING_LEASE)
def rerate(settings: Settings, cycle: str, *, on_step: StepCallback | None = None) -> RerateResult:
    """Rate a closed cycle again with the current catalog; bill the differences as adjustments.

    Differences per account and event type become credit (negative) or debit adjustments on
    the next open cycle (the month after the latest closed cycle). Running it again with the
    same catalog finds no differences and writes nothing.

    Raises:
        BillingError: bad cycle, or the cycle is not closed.
    """
    c = Cycle.parse(cycle)
    lake = Lake.from_settings(settings)
    closed = closed_cycles(lake)
    if c.name not in closed:
        raise BillingError(f"cycle {c.name} is not closed; `telcolake bill-run --cycle {c.name}` rates it with the current catalog")
    target = Cycle.parse(max(closed)).next()
    seq, runs = 1, 0
    if lake.exists(RERATED):
        t = read(lake, RERATED, columns=["rerate_seq", "cycle", "run_id"])
        seq = (max(t["rerate_seq"].to_pylist(), default=0) or 0) + 1
        runs = len({r for r, cy in zip(t["run_id"].to_pylist(), t["cycle"].to_pylist(), strict=True) if cy == c.name})
    run_id = f"rerate-{c.name}-{runs + 1}"
    versions = _pin(lake)
    options = engine_options(settings)
    options.pop("bucket_rows")
    con = connect(lake, versions, _params("rerate", c, target, run_id, seq), options)
    run_models(con, SETUP_MODELS, on_step)
    rating.rate(con, lake, buckets=1, mode="rerate", on_step=on_step)
    con.execute("create or replace temp table rated_usage as select * from rated_usage_all")
    run_models(con, ("rerated_usage", "rerate_adjustments"), on_step)
    changed = fetch(con, "rerated_usage", "record_id")
    held = con.sql("select count(distinct account_id) from held_usage_all").fetchall()[0][0]
    adjustments = fetch(con, "rerate_adjustments", "adjustment_id")
    con.close()
    result = RerateResult(cycle=c.name, run_id=run_id, target_cycle=target.name, changed_records=changed.num_rows,
                          adjustments=adjustments.num_rows, input_versions=versions, held_accounts=held,
                          net_amount=sum(adjustments["amount"].to_pylist(), Decimal(0)))
    if not changed.num_rows:
        return result
    meta = {"run_id": run_id, "cycle": c.name, "input_versions": json.dumps(versions, sort_keys=True)}
    if on_step:
        on_step("writing")
    # Adjustments first: if the run stops before the rerated rows land, a re-run recomputes the
    # same run_id and replaces them instead of losing or doubling the difference.
    _replace(lake, ADJUSTMENTS, adjustments, f"run_id = '{run_id}'", meta)
    lake.write(RERATED, changed, metadata=meta)
    return result


def as_dict(result: BillRunResult | RerateResult) -> dict[str, Any]:
    """A JSON-friendly summary."""
    out = {}
    for k, v in result.__dict__.items():
        out[k] = str(v) if isinstance(v, Decimal | date) else v
    return out


def quality_gate() -> Callable[[Settings, list[str]], Any] | None:
    """The quality gate (``quality.runner.run_gate``, raising on failure), None when not installed."""
    import importlib.util

    if importlib.util.find_spec("quality") is None or importlib.util.find_spec("quality.runner") is None:
        return None
    from quality.runner import run_gate

    return lambda settings, tables: run_gate(settings, tables, raise_on_failure=True)

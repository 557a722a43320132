"""The quality gate: run the suites guarding some tables on pinned versions, keep and explain the results."""

from __future__ import annotations

import importlib
import importlib.util
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds

from pipelines.core.config import Settings
from pipelines.core.errors import QualityGateFailed, QualitySuiteError
from pipelines.core.lake import Lake
from quality.core import QualityConfig, RunContext, Suite, running
from quality.docs import DataDocs, docs_dir
from quality.validate import Validator

DOMAINS = ("bronze", "silver", "billing", "churn", "network", "shares", "oss")
RESULTS_TABLE = "ops/quality_results"
RESULTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("table", pa.string()),
        ("version", pa.int64()),
        ("suite", pa.string()),
        ("expectation_type", pa.string()),
        ("kwargs", pa.string()),
        ("success", pa.bool_()),
        ("observed_value", pa.string()),
        ("element_count", pa.int64()),
        ("unexpected_count", pa.int64()),
        ("unexpected_examples", pa.string()),
        ("input_versions", pa.string()),
        ("description", pa.string()),
        ("exception", pa.string()),
        ("validated_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class GateResult:
    """What one gate run found.

    Attributes:
        ok: every expectation of every suite run passed.
        failures: one readable line per failed expectation.
        versions: table name -> the Delta version validated (suite tables and frame inputs).
        run_id: the ``run_id`` of this run's rows in ops/quality_results.
        docs_dir: the Data Docs site folder (open ``index.html``).
        suites: the suites run, by name.
        unguarded: requested tables that no suite guards.
        rows: the rows written to ops/quality_results.
    """

    ok: bool
    failures: list[str]
    versions: dict[str, int]
    run_id: str
    docs_dir: Path
    suites: list[str] = field(default_factory=list)
    unguarded: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (for ``--json``)."""
        return {
            "ok": self.ok, "run_id": self.run_id, "versions": self.versions, "suites": self.suites,
            "expectations": len(self.rows), "failed": len(self.failures), "failures": self.failures,
            "unguarded": self.unguarded, "results_table": RESULTS_TABLE, "docs": str(self.docs_dir),
        }


def discover_suites(domains: Iterable[str] = DOMAINS) -> list[Suite]:
    """Every ``SUITES`` of the quality/<domain>.py modules that exist.

    Raises:
        QualitySuiteError: a module exists but fails to import, has no ``SUITES`` list, or two
            suites share a name.
    """
    suites: list[Suite] = []
    for domain in domains:
        module_name = f"quality.{domain}"
        if importlib.util.find_spec(module_name) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise QualitySuiteError(f"quality/{domain}.py failed to import: {type(exc).__name__}: {exc}") from exc
        found = getattr(module, "SUITES", None)
        if not isinstance(found, list) or not all(isinstance(s, Suite) for s in found):
            raise QualitySuiteError(f"quality/{domain}.py: SUITES must be a list of quality.core.Suite")
        suites.extend(found)
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise QualitySuiteError(f"suite names must be unique; repeated: {', '.join(dupes)}")
    return suites


def run_gate(
    settings: Settings,
    tables: list[str] | None = None,
    *,
    raise_on_failure: bool = True,
    suites: list[Suite] | None = None,
    progress: Callable[[str], None] | None = None,
) -> GateResult:
    """Validate the suites guarding ``tables`` (all suites of existing tables when None).

    Each table is opened once at its current version; that version is read, validated and
    recorded. Every expectation result is appended to ops/quality_results and rendered into
    the Data Docs site under ``<state dir>/quality``.

    Args:
        settings: the run's settings.
        tables: lake table names to gate; a requested table that a suite guards but that does
            not exist fails the gate.
        raise_on_failure: raise QualityGateFailed when an expectation fails.
        suites: the suites to choose from (default: every discovered suite).
        progress: called with each suite's name before it runs.

    Raises:
        QualityGateFailed: an expectation failed (one line per failure), when ``raise_on_failure``.
        QualitySuiteError: a suite module fails to import.

    Example:
        >>> result = run_gate(settings, ["gold/billing/invoices"], raise_on_failure=False)
        >>> result.ok, result.versions
    """
    lake = Lake.from_settings(settings)
    config = QualityConfig.from_settings(settings)
    pool = discover_suites() if suites is None else suites
    chosen = [s for s in pool if (lake.exists(s.table) if tables is None else s.table in tables)]
    unguarded = sorted(set(tables or []) - {s.table for s in pool})
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"  # microseconds: sortable by time
    now = datetime.now(UTC)
    docs = docs_dir(settings)
    versions: dict[str, int] = {}
    for name in sorted({n for s in chosen for n in (s.table, *s.inputs)}):
        v = lake.version(name)
        if v is not None:
            versions[name] = v
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    where = f"see {RESULTS_TABLE} run_id={run_id}, docs {docs}"
    data_docs = DataDocs(settings, keep_runs=config.docs_keep_runs)
    validator = Validator(
        batch_rows=config.batch_rows, examples=config.examples, memory_limit=config.duckdb_memory_limit,
        spill_dir=settings.state_dir / "quality" / "spill",
    )
    try:
        with running(RunContext(config=config, now=now)):
            for suite in chosen:
                if progress:
                    progress(suite.name)
                pinned = {n: versions[n] for n in (suite.table, *suite.inputs) if n in versions}
                suite_rows = _run_suite(lake, validator, suite, pinned, run_id, now, data_docs)
                rows.extend(suite_rows)
                failures.extend(_failure_line(r, where) for r in suite_rows if not r["success"])
    finally:
        validator.close()
    if rows:
        lake.write(RESULTS_TABLE, pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), mode="append", schema_mode="merge")
    data_docs.build()
    result = GateResult(
        ok=not failures, failures=failures, versions=versions, run_id=run_id, docs_dir=docs,
        suites=[s.name for s in chosen], unguarded=unguarded, rows=rows,
    )
    if failures and raise_on_failure:
        raise QualityGateFailed(f"quality gate failed ({len(failures)} expectation(s)):\n" + "\n".join(failures))
    return result


def _run_suite(
    lake: Lake, validator: Validator, suite: Suite, pinned: dict[str, int], run_id: str, now: datetime, data_docs: DataDocs
) -> list[dict[str, Any]]:
    version = pinned.get(suite.table, -1)
    base = {
        "run_id": run_id, "table": suite.table, "version": version, "suite": suite.name,
        "input_versions": json.dumps({k: v for k, v in pinned.items() if k != suite.table}, sort_keys=True),
        "description": suite.description, "validated_at": now,
    }
    if suite.table not in pinned:
        return [_problem(base, "table_exists", f"table {suite.table} does not exist")]
    try:
        if suite.frame is not None:
            data = pds.dataset(suite.frame(lake, dict(pinned)))
        else:
            data = lake.table(suite.table, version=version).to_pyarrow_dataset()
        expectations = suite.expectations()
    except Exception as exc:  # a broken frame fails this suite loudly, the others still run
        return [_problem(base, "frame", f"{type(exc).__name__}: {exc}")]
    results = validator.validate(suite.name, data, expectations)
    data_docs.add(suite, version, run_id, now, results)
    return [{**base, **_row(r)} for r in results]


def _row(r: Any) -> dict[str, Any]:
    cfg = r.expectation_config
    res = dict(r.result or {})
    exc = exception_message(r.exception_info)
    if "observed_value" in res:
        observed: Any = res["observed_value"]
    elif "unexpected_count" in res:
        pct = res.get("unexpected_percent")
        observed = f"{res['unexpected_count']} of {res.get('element_count', 0)} unexpected" + (f" ({pct:.4g}%)" if pct else "")
    else:
        observed = None
    examples = res.get("partial_unexpected_list")
    return {
        "expectation_type": cfg.type,
        "kwargs": _json({k: v for k, v in cfg.kwargs.items() if k != "batch_id"}),
        "success": bool(r.success),
        "observed_value": None if observed is None else _json(observed),
        "element_count": res.get("element_count"),
        "unexpected_count": res.get("unexpected_count"),
        "unexpected_examples": None if examples is None else _json(examples),
        "exception": exc,
    }


def exception_message(info: Any) -> str | None:
    """The first exception message in a GE result's ``exception_info`` (flat, or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return str(nested[0].get("exception_message")) if nested else None


def _problem(base: dict[str, Any], kind: str, message: str) -> dict[str, Any]:
    return {**base, "expectation_type": kind, "kwargs": "{}", "success": False, "observed_value": None,
            "element_count": None, "unexpected_count": None, "unexpected_examples": None, "exception": message}


def _failure_line(row: dict[str, Any], where: str) -> str:
    kwargs = json.loads(row["kwargs"])
    args = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in kwargs.items())
    observed = None if row["observed_value"] is None else json.loads(row["observed_value"])
    what = row["exception"] or f"observed {observed if isinstance(observed, str) else row['observed_value']}"
    if row["unexpected_examples"] and not row["exception"]:
        what += f", examples {row['unexpected_examples'][:300]}"
    hint = f" ({row['description']})" if row["description"] else ""
    return f"FAILED {row['table']}@v{row['version']} {row['suite']}: {row['expectation_type']}({args}): {what}{hint}; {where}"


def _json(value: Any) -> str:
    def default(v: Any) -> Any:
        if v is pd.NA or v is pd.NaT:
            return None
        if isinstance(v, Decimal):
            return str(v)
        if hasattr(v, "isoformat"):
            return v.isoformat()
        if hasattr(v, "item"):
            return v.item()
        return str(v)

    return json.dumps(value, default=default, sort_keys=True)

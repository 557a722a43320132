"""Validate one suite's expectations over an Arrow dataset in bounded memory.

Three kinds of expectation, each computed where it is exact:

- global ones (column / compound uniqueness, table row count) run in DuckDB over the whole
  pinned dataset, so a duplicate split across two batches is still found;
- row-wise (map) expectations run in Great Expectations on pandas batches of ``batch_rows``
  rows holding only the columns they name; their counts and examples are summed over batches;
- any other expectation (column aggregates such as a mean) runs in Great Expectations on one
  pandas frame holding only its columns, or on an empty frame with the schema when it names
  none (table structure).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import duckdb  # noqa: E402
import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.dataset as pds  # noqa: E402
from great_expectations.core import ExpectationValidationResult  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import pandas_execution_engine  # noqa: E402
from great_expectations.expectations.expectation import (  # noqa: E402
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    MulticolumnMapExpectation,
)

logging.getLogger("great_expectations").setLevel(logging.ERROR)
# GE fingerprints every pandas batch by hashing all of it (twice per validate): about half the
# time of a 1M-row batch, for a marker we never read. A threshold of 0 skips the fingerprint.
if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
    pandas_execution_engine.HASH_THRESHOLD = 0

UNIQUE = "expect_column_values_to_be_unique"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"
ROW_COUNT_BETWEEN = "expect_table_row_count_to_be_between"
ROW_COUNT_EQUAL = "expect_table_row_count_to_equal"
GLOBAL = {UNIQUE, COMPOUND_UNIQUE, ROW_COUNT_BETWEEN, ROW_COUNT_EQUAL}
MAP_KINDS = (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)


class Validator:
    """One ephemeral GE context (pandas datasource) and one DuckDB connection, reused per run."""

    def __init__(self, *, batch_rows: int, examples: int, memory_limit: str, spill_dir: Path) -> None:
        self.batch_rows = batch_rows
        self.examples = examples
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.batch_definition = (
            self.context.data_sources.add_pandas("telcolake")
            .add_dataframe_asset("frame")
            .add_batch_definition_whole_dataframe("whole")
        )
        spill_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(spill_dir)})

    def validate(self, name: str, data: pds.Dataset, expectations: list[Any]) -> list[ExpectationValidationResult]:
        """Results of ``expectations`` over ``data``, in the order given."""
        results: dict[int, ExpectationValidationResult] = {}
        mapped = [(i, e) for i, e in enumerate(expectations) if e.expectation_type not in GLOBAL and isinstance(e, MAP_KINDS)]
        others = [(i, e) for i, e in enumerate(expectations) if e.expectation_type not in GLOBAL and not isinstance(e, MAP_KINDS)]
        for i, e in enumerate(expectations):
            if e.expectation_type in GLOBAL:
                results[i] = self._global(data, e)
        if mapped:
            for i, r in zip([i for i, _ in mapped], self._mapped(name, data, [e for _, e in mapped]), strict=True):
                results[i] = r
        for i, e in others:
            cols = [c for c in _columns(e) if c in data.schema.names]  # a missing one: GE reports it
            frame = (data.to_table(columns=cols) if cols else data.schema.empty_table()).to_pandas()
            results[i] = self._ge(f"{name}#{i}", frame, [e])[0]
        return [results[i] for i in range(len(expectations))]

    def _ge(self, name: str, frame: pd.DataFrame, expectations: list[Any]) -> list[ExpectationValidationResult]:
        suite = gx.ExpectationSuite(name=name)
        for e in expectations:
            suite.add_expectation(e.copy())
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        return list(batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": self.examples}).results)

    def _mapped(self, name: str, data: pds.Dataset, expectations: list[Any]) -> list[ExpectationValidationResult]:
        columns = sorted({c for e in expectations for c in _columns(e)} & set(data.schema.names))
        merged: list[list[ExpectationValidationResult]] = [[] for _ in expectations]
        for table in _batches(data, columns, self.batch_rows):
            for slot, r in zip(merged, self._ge(name, to_pandas(table), expectations), strict=True):
                slot.append(r)
        return [_merge(parts, self.examples) for parts in merged]

    def _global(self, data: pds.Dataset, e: Any) -> ExpectationValidationResult:
        self.con.register("data", data)
        try:
            kind = e.expectation_type
            if kind in (ROW_COUNT_BETWEEN, ROW_COUNT_EQUAL):
                n = self.con.sql("select count(*) from data").fetchall()[0][0]
                if kind == ROW_COUNT_EQUAL:
                    ok = n == e.value
                else:
                    ok = (e.min_value is None or n >= e.min_value) and (e.max_value is None or n <= e.max_value)
                return ExpectationValidationResult(success=ok, expectation_config=e.configuration, result={"observed_value": n})
            cols = [e.column] if kind == UNIQUE else list(e.column_list)
            return self._unique(data, e, cols)
        except (duckdb.Error, pa.ArrowException) as exc:
            return _error(e, exc)
        finally:
            self.con.unregister("data")

    def _unique(self, data: pds.Dataset, e: Any, cols: list[str]) -> ExpectationValidationResult:
        missing = [c for c in cols if c not in data.schema.names]
        if missing:
            return _error(e, KeyError(f"column(s) {missing} not in the table"))
        q = ", ".join(f'"{c}"' for c in cols)
        nulls = " or ".join(f'"{c}" is null' for c in cols)
        all_null = " and ".join(f'"{c}" is null' for c in cols)
        rule = "never" if e.expectation_type == UNIQUE else getattr(e, "ignore_row_if", None) or "all_values_are_missing"
        skip = {"all_values_are_missing": all_null, "any_value_is_missing": nulls, "never": "false"}[rule]
        if e.expectation_type == UNIQUE:
            skip = all_null  # a column's nulls are missing values, not duplicates
        self.con.execute(f"create or replace temp table dups as select {q}, count(*) as n from data where not ({skip}) group by all having count(*) > 1")
        total, considered = self.con.sql(f"select count(*), count(*) filter (where not ({skip})) from data").fetchall()[0]
        unexpected = self.con.sql("select coalesce(sum(n), 0)::bigint from dups").fetchall()[0][0]
        rows = self.con.sql(f"select * from dups order by n desc, {q} limit {self.examples}").fetchall()
        self.con.execute("drop table dups")
        examples = [row[0] if len(cols) == 1 else dict(zip(cols, row[:-1], strict=True)) for row in rows]
        counts = [{"value": ex, "count": row[-1]} for ex, row in zip(examples, rows, strict=True)]
        mostly = getattr(e, "mostly", 1.0) or 1.0
        share = unexpected / considered if considered else 0.0
        return ExpectationValidationResult(
            success=(1.0 - share) >= mostly,
            expectation_config=e.configuration,
            result={
                "element_count": total,
                "missing_count": total - considered,
                "missing_percent": 100.0 * (total - considered) / total if total else 0.0,
                "unexpected_count": unexpected,
                "unexpected_percent": 100.0 * share,
                "unexpected_percent_total": 100.0 * unexpected / total if total else 0.0,
                "unexpected_percent_nonmissing": 100.0 * share,
                "partial_unexpected_list": examples,
                "partial_unexpected_counts": counts,
            },
        )

    def close(self) -> None:
        self.con.close()


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas with strings kept in Arrow (``string[pyarrow]``): no Python str per value."""
    strings = pd.StringDtype("pyarrow")
    return table.to_pandas(types_mapper={pa.string(): strings, pa.large_string(): strings}.get, self_destruct=True, split_blocks=True)


def _columns(e: Any) -> list[str]:
    cols: list[str] = []
    for key in ("column", "column_A", "column_B"):
        value = getattr(e, key, None)
        if isinstance(value, str):
            cols.append(value)
    cols.extend(getattr(e, "column_list", None) or [])
    return cols


def _batches(data: pds.Dataset, columns: list[str], rows: int) -> Iterator[pa.Table]:
    """Tables of about ``rows`` rows (at least one, possibly empty) of ``columns``."""
    pending: list[pa.RecordBatch] = []
    count = 0
    sent = False
    for batch in data.to_batches(columns=columns, batch_size=rows, batch_readahead=1, fragment_readahead=1):
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending)
            pending, count, sent = [], 0, True
    if pending or not sent:
        yield pa.Table.from_batches(pending, schema=pa.schema([data.schema.field(c) for c in columns]))


def _merge(parts: list[ExpectationValidationResult], examples: int) -> ExpectationValidationResult:
    """One result from per-batch results of a map expectation: counts summed, examples concatenated."""
    if len(parts) == 1:
        return parts[0]
    failed = [p for p in parts if _raised(p.exception_info)]
    if failed:
        return failed[0]
    total = sum(p.result.get("element_count", 0) for p in parts)
    missing = sum(p.result.get("missing_count", 0) for p in parts)
    unexpected = sum(p.result.get("unexpected_count", 0) for p in parts)
    listed = [v for p in parts for v in p.result.get("partial_unexpected_list", [])][:examples]
    counts: dict[str, dict[str, Any]] = {}
    for p in parts:
        for c in p.result.get("partial_unexpected_counts", []):
            key = json.dumps(c["value"], default=str)
            counts.setdefault(key, {"value": c["value"], "count": 0})["count"] += c["count"]
    nonmissing = total - missing
    return ExpectationValidationResult(
        success=all(p.success for p in parts),
        expectation_config=parts[0].expectation_config,
        result={
            "element_count": total,
            "missing_count": missing,
            "missing_percent": 100.0 * missing / total if total else 0.0,
            "unexpected_count": unexpected,
            "unexpected_percent": 100.0 * unexpected / nonmissing if nonmissing else 0.0,
            "unexpected_percent_total": 100.0 * unexpected / total if total else 0.0,
            "unexpected_percent_nonmissing": 100.0 * unexpected / nonmissing if nonmissing else 0.0,
            "partial_unexpected_list": listed,
            "partial_unexpected_counts": sorted(counts.values(), key=lambda c: -c["count"])[:examples],
        },
    )


def _raised(info: Any) -> bool:
    if not isinstance(info, dict):
        return False
    return bool(info.get("raised_exception")) or any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _error(e: Any, exc: Exception) -> ExpectationValidationResult:
    return ExpectationValidationResult(
        success=False,
        expectation_config=e.configuration,
        result={},
        exception_info={"raised_exception": True, "exception_message": f"{type(exc).__name__}: {exc}", "exception_traceback": f"{type(exc).__name__}: {exc}"},
    )

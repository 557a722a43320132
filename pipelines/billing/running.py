"""Allowance consumption and tier volumes: running sums over one sort, vectorised with numpy.

Rating needs, for every record, how much of its allowance earlier records of the same subscriber,
cycle and allowance used, and how much volume earlier records put on its tier table. SQL windows
would sort every record with all its columns, twice (the tier volume depends on what the
allowance left); here DuckDB sorts only keys and row numbers (sql/billing/allowance_order.sql,
tier_order.sql) and the sums are segmented cumulative sums over those orders: the same numbers,
a fraction of the work.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.duck import model_sql


def _column(table: pa.Table, name: str) -> np.ndarray:
    """An integer column as int64 numpy (nulls, on rows that are not rated, as 0)."""
    column = table[name]
    return (column.fill_null(0) if column.null_count else column).to_numpy().astype(np.int64, copy=False)


def _walk(con: duckdb.DuckDBPyConnection, model: str, context: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of ``model`` in pool order (as numpy columns), and where each pool starts.

    DuckDB sorts by (subscriber, cycle, pool, started_at) and hands over the columns already in
    that order; records of one pool starting in the same microsecond are put in record_id order
    here, on those few rows only.
    """
    table = con.sql(model_sql(f"billing/{model}")).to_arrow_table()
    order = {name: _column(table, name) for name in table.column_names}
    pool, when = order["pool_key"], order["started_us"]
    new_pool = np.ones(len(pool), dtype=bool)
    new_pool[1:] = pool[1:] != pool[:-1]
    tie = np.zeros(len(pool), dtype=bool)
    tie[1:] = ~new_pool[1:] & (when[1:] == when[:-1])
    if tie.any():
        in_run = tie | np.r_[tie[1:], False]  # both members of every tie
        positions = np.flatnonzero(in_run)
        ties = pa.table({"run": np.cumsum(~tie)[in_run], "position": positions,
                         "record_id": context["record_id"].take(pa.array(order["rid"][positions]))})
        moved = _column(ties.sort_by([("run", "ascending"), ("record_id", "ascending")]), "position")
        for name, values in order.items():
            order[name] = values.copy()  # Arrow's buffers are read-only
            order[name][positions] = values[moved]
    return order, new_pool


def _before_and_total(values: np.ndarray, new_pool: np.ndarray, *, total: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Per position: the sum of the earlier values of its pool (pools start where ``new_pool``),
    and, with ``total``, the pool's total."""
    running = np.cumsum(values)
    starts = np.flatnonzero(new_pool)
    lengths = np.diff(np.r_[starts, len(values)])
    offset = running[starts] - values[starts]
    before = running - values - np.repeat(offset, lengths)
    if not total:
        return before, None
    return before, np.repeat(running[starts + lengths - 1] - offset, lengths)


def _prior(con: duckdb.DuckDBPyConnection, n: int) -> dict[str, np.ndarray] | None:
    """Per record, what runs before this one used of its allowance and of its tier table (None: nothing)."""
    if not con.sql("select count(*) from allowance_prior").fetchall()[0][0]:
        return None
    out = {"allowance": np.zeros(n, dtype=np.int64), "tier": np.zeros(n, dtype=np.int64)}
    used = con.sql(model_sql("billing/prior_use")).to_arrow_table()
    for kind, values in out.items():
        rows = used.filter(pc.equal(used["kind"], kind))
        values[_column(rows, "rid")] = _column(rows, "used_base")
    return out


def _with(context: pa.Table, name: str, values: np.ndarray, missing: np.ndarray | None = None) -> pa.Table:
    return context.append_column(name, pa.array(values, mask=missing))


def consume(con: duckdb.DuckDBPyConnection, context: pa.Table) -> pa.Table:
    """``context`` (usage_context with a ``rid`` column) with the running columns appended:
    included_base and tier_billed_base, tier_before_base, tier_total_base (null where a record
    has no tier table). ``context`` is (re)registered in ``con`` as usage_context on the way."""
    n = context.num_rows
    con.register("usage_context", context)
    prior = _prior(con, n)
    included = np.zeros(n, dtype=np.int64)
    order, pool = _walk(con, "allowance_order", context)
    if len(pool):
        quantity = order["quantity_base"]
        used, _ = _before_and_total(quantity, pool)
        if prior is not None:
            used += prior["allowance"][order["rid"]]
        included[order["rid"]] = np.clip(order["allowance_base"] - used, 0, quantity)
    context = _with(context, "included_base", included)
    con.register("usage_context", context)

    billed = np.zeros(n, dtype=np.int64)
    before = np.zeros(n, dtype=np.int64)
    total = np.zeros(n, dtype=np.int64)
    missing = np.ones(n, dtype=bool)
    order, pool = _walk(con, "tier_order", context)
    if len(pool):
        rid, volume = order["rid"], order["tier_billed_base"]
        running, whole = _before_and_total(volume, pool, total=True)
        if prior is not None:
            running, whole = running + prior["tier"][rid], whole + prior["tier"][rid]
        billed[rid], before[rid], total[rid], missing[rid] = volume, running, whole, False
    context = _with(_with(_with(context, "tier_billed_base", billed, missing), "tier_before_base", before, missing),
                    "tier_total_base", total, missing)
    con.register("usage_context", context)
    return context

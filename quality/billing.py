"""Quality suites guarding gold/billing: keys, allowed values and the balancing sums."""

from __future__ import annotations

import json

import duckdb
import great_expectations as gx
import pyarrow as pa

from pipelines.billing.engine import max_held_share
from pipelines.core.lake import Lake
from quality.core import Suite, active

RATED = "gold/billing/rated_usage"
UNRATED = "gold/billing/unrated"
INVOICES = "gold/billing/invoices"
INVOICE_LINES = "gold/billing/invoice_lines"
ADJUSTMENTS = "gold/billing/adjustments"
HELD = "gold/billing/held_accounts"
USAGE = "silver/usage"
SUBSCRIBERS = "silver/subscribers"
E = gx.expectations
UNRATED_REASONS = [
    "unknown_subscriber", "before_activation", "no_subscriber_state", "after_termination", "no_tariff",
    "unknown_plan", "unknown_destination", "unknown_roaming_zone",
]


def _con(lake: Lake, versions: dict[str, int], names: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in names:
        con.register(name.split("/")[-1], lake.table(name, version=versions.get(name)).to_pyarrow_dataset())
    return con


def invoice_balance(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """Per invoice, in 1e-4 units: incl - (excl + tax), excl - charge lines, tax - tax line."""
    con = _con(lake, versions, (INVOICES, INVOICE_LINES))
    return con.sql("""
        with lines as (
            select bill_no,
                   coalesce(sum(amount) filter (where line_type <> 'tax'), 0) as charges,
                   coalesce(sum(amount) filter (where line_type = 'tax'), 0) as tax
            from invoice_lines group by bill_no
        )
        select i.bill_no,
               ((i.amount_incl_tax - i.amount_excl_tax - i.tax) * 10000)::bigint as diff_total,
               ((i.amount_excl_tax - coalesce(l.charges, 0)) * 10000)::bigint as diff_excl,
               ((i.tax - coalesce(l.tax, 0)) * 10000)::bigint as diff_tax
        from invoices i left join lines l using (bill_no)
    """).to_arrow_table()


def usage_balance(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """Per cycle from the first billed one to the last: unique usage - rated - unrated - held, and
    records both rated and unrated.

    Usage (and subscriber state) is counted at the silver versions the latest rated_usage commit
    was computed from (its commit metadata), since records arriving later are not rated yet by
    design. Held records are those of accounts the latest run held: they wait, neither rated nor
    unrated. Usage before the first billed cycle is history, never billed, and not counted.
    """
    rated = lake.table(RATED, version=versions.get(RATED))
    pinned = rated.version()
    commits = sorted((h for h in rated.history() if h["version"] <= pinned and "input_versions" in h), key=lambda h: -h["version"])
    if not commits:
        return pa.table({"cycle": pa.array([], pa.string()), "diff_unaccounted": pa.array([], pa.int64()), "count_in_both": pa.array([], pa.int64())})
    inputs = json.loads(commits[0]["input_versions"])
    names = (RATED, UNRATED, USAGE, SUBSCRIBERS) + ((HELD,) if HELD in versions or lake.exists(HELD) else ())
    con = _con(lake, {**versions, USAGE: inputs[USAGE], SUBSCRIBERS: inputs[SUBSCRIBERS]}, names)
    if HELD not in names:
        con.execute("create table held_accounts (cycle varchar, account_id varchar)")
    return con.sql("""
        with billed as (
            select min(first) as first_cycle, max(last) as last_cycle from (
                select min(billed_cycle) as first, max(billed_cycle) as last from rated_usage
                union all select min(billed_cycle), max(billed_cycle) from unrated
                union all select min(cycle), max(cycle) from held_accounts
            )
        ),
        usage_cycles as (
            select distinct record_id, subscriber_id, started_at, strftime(started_at at time zone 'UTC', '%Y-%m') as cycle
            from usage
        ),
        in_scope as (
            select u.* from usage_cycles u cross join billed b where u.cycle >= b.first_cycle and u.cycle <= b.last_cycle
        ),
        unaccounted as (
            select u.* from in_scope u
            anti join rated_usage r using (record_id)
            anti join unrated x using (record_id)
        ),
        held_now as (
            select h.account_id from held_accounts h cross join billed b where h.cycle = b.last_cycle
        ),
        held_records as (
            select u.cycle, count(*) as n
            from unaccounted u
            where exists (
                select 1 from subscribers s semi join held_now h using (account_id)
                where s.subscriber_id = u.subscriber_id and s.valid_from <= u.started_at
                  and (s.valid_to is null or u.started_at < s.valid_to)
            )
            group by 1
        ),
        usage_counts as (select cycle, count(*) as n from in_scope group by 1),
        rated_counts as (select cycle, count(*) as n from rated_usage group by 1),
        unrated_counts as (select cycle, count(*) as n from unrated group by 1),
        both_sides as (
            select r.cycle, count(*) as n from rated_usage r join unrated u using (record_id) group by 1
        )
        select u.cycle,
               u.n - coalesce(r.n, 0) - coalesce(x.n, 0) - coalesce(h.n, 0) as diff_unaccounted,
               coalesce(b.n, 0) as count_in_both
        from usage_counts u
        left join rated_counts r using (cycle)
        left join unrated_counts x using (cycle)
        left join held_records h using (cycle)
        left join both_sides b using (cycle)
    """).to_arrow_table()


def held_share(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """The latest billed cycle's held accounts against the accounts it invoiced (one row)."""
    con = _con(lake, versions, (HELD, INVOICES))
    return con.sql("""
        with last as (
            select max(cycle) as cycle from (select cycle from held_accounts union all select cycle from invoices)
        ),
        counts as (
            select l.cycle,
                   (select count(*) from held_accounts h where h.cycle = l.cycle) as count_held,
                   (select count(*) from invoices i where i.cycle = l.cycle) as count_invoiced
            from last l
        )
        select cycle, count_held, count_invoiced,
               case when count_held + count_invoiced = 0 then 0.0
                    else count_held / (count_held + count_invoiced) end::double as held_share
        from counts
    """).to_arrow_table()


def _held_expectations() -> list:
    ctx = active()
    limit = max_held_share(ctx.settings) if ctx.settings is not None else 0.01
    return [
        E.ExpectColumnMaxToBeBetween(column="count_held", min_value=0),  # recorded: how many were held
        E.ExpectColumnMaxToBeBetween(column="held_share", min_value=0, max_value=limit),
    ]


SUITES: list[Suite] = [
    Suite(
        name="billing.rated_usage",
        table=RATED,
        expectations=lambda: [
            E.ExpectColumnValuesToNotBeNull(column="record_id"),
            E.ExpectColumnValuesToBeUnique(column="record_id"),
            E.ExpectColumnValuesToNotBeNull(column="charge"),
            E.ExpectColumnValuesToNotBeNull(column="account_id"),
            E.ExpectColumnValuesToBeBetween(column="charged_base", min_value=0),
            E.ExpectColumnValuesToBeBetween(column="included_base", min_value=0),
            E.ExpectColumnValuesToBeInSet(column="rating_tag", value_set=["included", "non-included"]),
            E.ExpectColumnValuesToMatchRegex(column="billed_cycle", regex=r"^\d{4}-(?:0[1-9]|1[0-2])$"),
        ],
        description="a usage record rated twice or without account/charge: look at sql/billing/rated_usage.sql",
    ),
    Suite(
        name="billing.unrated",
        table=UNRATED,
        expectations=lambda: [
            E.ExpectColumnValuesToBeUnique(column="record_id"),
            E.ExpectColumnValuesToBeInSet(column="reason", value_set=UNRATED_REASONS),
        ],
        description="an unrated record without a known reason: sql/billing/usage_context.sql",
    ),
    Suite(
        name="billing.usage_balance",
        table=RATED,
        inputs=(UNRATED, USAGE, HELD),
        frame=usage_balance,
        expectations=lambda: [
            E.ExpectColumnValuesToBeBetween(column="diff_unaccounted", min_value=0, max_value=0),
            E.ExpectColumnValuesToBeBetween(column="count_in_both", min_value=0, max_value=0),
        ],
        description="unique usage of a billed cycle != rated + unrated: a record was lost or rated twice",
    ),
    Suite(
        name="billing.held_accounts",
        table=HELD,
        inputs=(INVOICES,),
        frame=held_share,
        expectations=_held_expectations,
        description="more accounts held than [billing] max_held_share allows: see gold/billing/held_accounts (reason, detail)",
    ),
    Suite(
        name="billing.invoices",
        table=INVOICES,
        expectations=lambda: [
            E.ExpectColumnValuesToBeUnique(column="bill_no"),
            E.ExpectCompoundColumnsToBeUnique(column_list=["billing_account_id", "cycle"]),
            E.ExpectColumnValuesToNotBeNull(column="currency"),
        ],
        description="two invoices for one account and cycle: bill runs must be idempotent",
    ),
    Suite(
        name="billing.invoice_balance",
        table=INVOICES,
        inputs=(INVOICE_LINES,),
        frame=invoice_balance,
        expectations=lambda: [
            E.ExpectColumnValuesToBeBetween(column="diff_total", min_value=0, max_value=0),
            E.ExpectColumnValuesToBeBetween(column="diff_excl", min_value=0, max_value=0),
            E.ExpectColumnValuesToBeBetween(column="diff_tax", min_value=0, max_value=0),
        ],
        description="an invoice total differs from its lines: sql/billing/invoices.sql vs invoice_lines.sql",
    ),
    Suite(
        name="billing.invoice_lines",
        table=INVOICE_LINES,
        expectations=lambda: [
            E.ExpectCompoundColumnsToBeUnique(column_list=["bill_no", "line_id"]),
            E.ExpectColumnValuesToBeInSet(column="line_type", value_set=["recurring", "one_off", "usage", "adjustment", "tax"]),
            E.ExpectColumnValuesToNotBeNull(column="amount"),
        ],
        description="a duplicated or unknown invoice line: sql/billing/invoice_lines.sql",
    ),
    Suite(
        name="billing.adjustments",
        table=ADJUSTMENTS,
        expectations=lambda: [
            E.ExpectColumnValuesToBeUnique(column="adjustment_id"),
            E.ExpectColumnValuesToBeInSet(column="reason", value_set=["late_usage", "rerate"]),
            E.ExpectColumnValuesToNotBeNull(column="billed_cycle"),
        ],
        description="an adjustment that could be billed twice: sql/billing/late_adjustments.sql, rerate_adjustments.sql",
    ),
]

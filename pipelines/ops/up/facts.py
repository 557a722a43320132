"""The lake facts the operator view shows beside lag: quarantine reasons, job statistics, quality
per suite, open alerts, cells at risk and bill cycles.

Each reader takes a :class:`~pipelines.core.lake.Lake`, answers from the tables as they are
(DuckDB over Arrow datasets, or partition values from the Delta log) and returns plain JSON
values, so ``/api/status``, the page and ``/metrics`` all show the same numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa

from pipelines.core.lake import Lake
from pipelines.ingest.landing import bronze_table, quarantine_table

JOB_RUNS = "ops/job_runs"
QUALITY_RESULTS = "ops/quality_results"
BILL_RUNS = "gold/billing/bill_runs"
ALERT_TABLES = {"network": "gold/network/alerts", "fraud": "gold/fraud/alerts"}
PREDICTIONS = "gold/assurance/predictions"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
"""Upper bounds (seconds) of the job duration histogram buckets; +Inf is implied."""


def _con(lake: Lake, **tables: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for view, name in tables.items():
        con.register(view, lake.dataset(name))
    return con


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def quarantine_by_reason(lake: Lake, topics: dict[str, str], *, now: datetime | None = None) -> list[dict]:
    """Per topic and reason, the records ingest quarantined: in all, in the last hour, in the last day.

    Args:
        topics: contract topic -> the configured topic name (the label shown).
    """
    now = now or datetime.now(UTC)
    out = []
    for contract_topic, topic in topics.items():
        name = quarantine_table(contract_topic)
        if not lake.exists(name):
            continue
        con = _con(lake, q=name)
        rows = con.execute(
            "select reason, count(*), count(*) filter (where _ingested_at >= ?), count(*) filter (where _ingested_at >= ?) "
            "from q group by reason order by reason",
            [now - timedelta(hours=1), now - timedelta(days=1)],
        ).fetchall()
        out += [{"topic": topic, "reason": r, "total": t, "last_hour": h, "last_day": d} for r, t, h, d in rows]
    return out


def job_stats(lake: Lake) -> dict:
    """Attempts per job and status, and per job a histogram of attempt durations (``ops/job_runs``)."""
    if not lake.exists(JOB_RUNS):
        return {"runs": [], "durations": []}
    con = _con(lake, r=JOB_RUNS)
    runs = [{"job": j, "status": s, "count": n}
            for j, s, n in con.execute("select job, status, count(*) from r group by 1, 2 order by 1, 2").fetchall()]
    buckets = ", ".join(f"count(*) filter (where duration_s <= {b})" for b in DURATION_BUCKETS)
    durations = []
    for row in con.execute(f"select job, count(*), coalesce(sum(duration_s), 0), {buckets} from r "
                           "where duration_s is not null and status <> 'skipped' group by 1 order by 1").fetchall():
        job, count, total, *cum = row
        durations.append({"job": job, "count": count, "sum": float(total),
                          "buckets": [[b, c] for b, c in zip(DURATION_BUCKETS, cum, strict=True)]})
    return {"runs": runs, "durations": durations}


def quality_by_suite(lake: Lake) -> list[dict]:
    """Per suite, its latest gate run: expectations passed and failed."""
    if not lake.exists(QUALITY_RESULTS):
        return []
    con = _con(lake, q=QUALITY_RESULTS)
    rows = con.execute(
        "with latest as (select suite, arg_max(run_id, validated_at) as run_id from q group by suite) "
        "select q.suite, count(*) filter (where success), count(*) filter (where not success), max(validated_at) "
        "from q join latest using (suite, run_id) group by 1 order by 1"
    ).fetchall()
    return [{"suite": s, "passed": p, "failed": f, "validated_at": _iso(at)} for s, p, f, at in rows]


def open_alerts(lake: Lake, *, limit: int = 50) -> dict:
    """Open network and fraud alerts: counts per kind and the newest ``limit`` of them."""
    counts, items = {}, []
    for kind, name in ALERT_TABLES.items():
        if not lake.exists(name):
            counts[kind] = 0
            continue
        con = _con(lake, a=name)
        counts[kind] = con.execute("select count(*) from a where status = 'open'").fetchone()[0]
        rows = con.execute("select alert_id, rule, severity, entity_id, raised_at, last_seen_at, last_value from a "
                           "where status = 'open' order by raised_at desc, alert_id limit ?", [limit]).fetchall()
        items += [{"kind": kind, "alert_id": a, "rule": r, "severity": s, "entity_id": e, "raised_at": _iso(ra),
                   "last_seen_at": _iso(ls), "last_value": v} for a, r, s, e, ra, ls, v in rows]
    items.sort(key=lambda a: a["raised_at"] or "", reverse=True)
    return {"open": counts, "items": items[:limit]}


def cells_at_risk(lake: Lake, *, limit: int = 50) -> list[dict]:
    """Cells with an open ``predicted_degradation`` alert, most likely first: its probability now and at
    its peak, the horizon, the features that pushed it and the model that scored it."""
    alerts = ALERT_TABLES["network"]
    if not lake.exists(alerts) or not lake.exists(PREDICTIONS):
        return []
    con = _con(lake, a=alerts, p=PREDICTIONS)
    rows = con.execute(
        "select a.entity_id, a.site_id, p.probability, p.peak_probability, p.horizon_minutes, p.top_features, p.model_version, "
        "a.raised_at, a.last_seen_at from a join p using (alert_id) "
        "where a.rule = 'predicted_degradation' and a.status = 'open' "
        "order by p.probability desc nulls last, a.entity_id limit ?", [limit]).fetchall()
    return [{"cell_id": c, "site_id": site, "probability": prob, "peak_probability": peak, "horizon_minutes": h,
             "top_features": tf, "model_version": v, "raised_at": _iso(ra), "last_seen_at": _iso(ls)}
            for c, site, prob, peak, h, tf, v, ra, ls in rows]


def bill_cycles(lake: Lake) -> list[dict]:
    """Every bill cycle the lake knows, newest first: ``closed`` (its bill run is in
    ``gold/billing/bill_runs``) or ``open`` (usage landed for that month, no bill run yet)."""
    cycles: dict[str, dict] = {}
    usage = lake.maybe_table(bronze_table("usage.events"))
    if usage is not None and "event_date" in usage.metadata().partition_columns:
        adds = pa.table(usage.get_add_actions(flatten=True))
        col = "partition.event_date" if "partition.event_date" in adds.column_names else None
        if col is not None:
            for day in set(adds.column(col).to_pylist()):
                if day is not None:
                    month = str(day)[:7]
                    cycles[month] = {"cycle": month, "state": "open"}
    if lake.exists(BILL_RUNS):
        con = _con(lake, b=BILL_RUNS)
        for cycle, closed_at, invoices, amount in con.execute(
                "select cycle, closed_at, count_invoices, cast(amount_incl_tax as varchar) from b order by cycle").fetchall():
            cycles[cycle] = {"cycle": cycle, "state": "closed", "closed_at": _iso(closed_at), "invoices": invoices,
                             "amount_incl_tax": amount}
    return sorted(cycles.values(), key=lambda c: c["cycle"], reverse=True)

"""The full demo's story: months of legacy history through the backfill path, then the live week on Kafka.

One simulation covers both (the same subscribers, one seed): it starts ``HISTORY_MONTHS``
calendar months before ``[simulate] start`` and runs to the end of the live week. It is read day
by day. Arrival days before the live week are written as the legacy mediation's dumps
(``<state dir>/demo/dumps/<topic>/<arrival date>.jsonl``: usage records and lifecycle events)
and land month by month through ``telcolake backfill``'s dataflow; each finished month is billed
right after its files landed, so usage of a month that arrives in the next one is billed there
as late lines. The simulation then resumes at the first live day and produces the rest to the
topics. A dump named by its date counts as known from the end of that day (``_delivered_at``),
so the churn features of every history date see what the operator knew then.

The network KPI samples of the history are not written: 120 cells every 5 minutes would be
3.2 M records for three months, more than all the rest; they stream with the live week.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.core.config import Settings

HISTORY_MONTHS = 3
HISTORY_SUBSCRIBERS = 200  # the whole simulation's population (history and live week): ~850k history records
HISTORY_CHURN_RATE = 0.12  # share terminating within the window: enough churners to train and test on
HISTORY_TOPICS = ("usage.events", "bss.events")  # the mediation's CDRs and the CRM's lifecycle export
DUMP_FORMAT = "jsonl"
DAY_MS = 86_400_000


def month_start(d: date, back: int = 0) -> date:
    """The first day of ``d``'s month, ``back`` months earlier."""
    m = d.year * 12 + d.month - 1 - back
    return date(m // 12, m % 12 + 1, 1)


def plan(settings: Settings, options: dict[str, Any]):
    """(SimConfig of the whole window, first live day): history months before ``[simulate] start``, then the live days."""
    from dataclasses import replace

    from pipelines.simulate import SimConfig

    live = SimConfig.from_settings(settings, days=options.get("days") or None)
    start = month_start(live.start, HISTORY_MONTHS)
    cfg = replace(live, start=start, days=(live.start - start).days + live.days,
                  subscribers=options.get("subscribers") or HISTORY_SUBSCRIBERS, churn_rate=HISTORY_CHURN_RATE)
    return cfg, live.start


def _arrival_day(chunk) -> date:
    first = min(stamps[0] for stamps in chunk.timestamps.values() if stamps)
    return datetime.fromtimestamp(first // DAY_MS * 86400, UTC).date()


def _only(chunk, topics: tuple[str, ...]):
    from pipelines.simulate import SimResult

    keep = [t for t in chunk.values if t in topics]
    out = SimResult(config=chunk.config, values={t: chunk.values[t] for t in keep}, keys={t: chunk.keys[t] for t in keep},
                    timestamps={t: chunk.timestamps[t] for t in keep}, planted=chunk.planted)
    out.rows = {t: chunk.rows[t] for t in keep if t in chunk.rows}
    out.malformed_rows = {t: chunk.malformed_rows[t] for t in keep if t in chunk.malformed_rows}
    return out


def dumps_dir(settings: Settings) -> Path:
    return settings.state_dir / "demo" / "dumps"


def history_dumps(run) -> dict[str, Any]:
    """Simulate day by day; write the arrival days before the live week as dump files; keep the rest for later."""
    import shutil

    from pipelines.simulate import simulate_days, write_dir

    cfg, live_start = plan(run.settings, run.options)
    root = dumps_dir(run.settings)
    if root.exists():
        shutil.rmtree(root)
    days = simulate_days(cfg, workdir=run.settings.state_dir)
    run.state["sim"] = days
    it: Iterator = iter(days)
    written = records = 0
    first_live = None
    for chunk in it:
        if _arrival_day(chunk) >= live_start:
            first_live = chunk
            break
        part = _only(chunk, HISTORY_TOPICS)
        records += sum(len(v) for v in part.values.values())
        written += len(write_dir(part, root, DUMP_FORMAT))
        del chunk, part
    run.state["live_days"] = (first_live, it)
    planted = {k: v for k, v in days.planted.as_dict().items() if not k.endswith("_ids")}
    return {"subscribers": cfg.subscribers, "history_from": cfg.start.isoformat(), "live_from": live_start.isoformat(),
            "days": cfg.days, "dump_files": written, "dump_records": records, "dumps": str(root), "planted": planted}


def _file_day(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.name.split(".")[0])
    except ValueError:
        return None


def backfill_and_bill(run) -> dict[str, Any]:
    """Each history month: backfill its dump files (and everything older), refresh silver, close its bill run."""
    import time

    from pipelines.billing.run import bill_run, quality_gate
    from pipelines.ingest.backfill import run_backfill
    from pipelines.ingest.silver import refresh

    cfg, live_start = plan(run.settings, run.options)
    _load_catalog_before_fix(run.settings)
    files = sorted(p for p in dumps_dir(run.settings).rglob(f"*.{DUMP_FORMAT}") if _file_day(p) is not None)
    landed = quarantined = late = 0
    months, seconds = [], {"backfill": 0.0, "silver": 0.0, "bill_runs": 0.0}
    month = cfg.start
    while month < live_start:
        nxt = month_start(month + timedelta(days=31))
        batch = [p for p in files if _file_day(p) < nxt]
        files = [p for p in files if _file_day(p) >= nxt]
        t0 = time.monotonic()
        result = run_backfill(run.settings, batch)
        t1 = time.monotonic()
        refresh(run.settings)
        t2 = time.monotonic()
        bill = bill_run(run.settings, month.strftime("%Y-%m"), gate=quality_gate())
        t3 = time.monotonic()
        seconds["backfill"] += t1 - t0
        seconds["silver"] += t2 - t1
        seconds["bill_runs"] += t3 - t2
        landed += sum(result.stats.rows.values())
        quarantined += sum(result.stats.quarantined.values())
        late += bill.late
        months.append({"cycle": bill.cycle, "files": len(batch), "rated": bill.rated, "late_records": bill.late,
                       "invoices": bill.invoices, "held": bill.held_accounts, "incl_tax": str(bill.amount_incl_tax)})
        month = nxt
    return {"months": len(months), "landed": landed, "quarantined": quarantined, "late_billed": late,
            **{f"{k}_s": round(v, 1) for k, v in seconds.items()}, "cycles": months}


def _load_catalog_before_fix(settings: Settings) -> None:
    """Load the catalog as it stood before its last version (the tariff fix the live step applies)."""
    from pipelines.billing.reference import load_catalog
    from pipelines.core.errors import CatalogError

    text = _catalog_text()
    cut = text.rfind("\n[[versions]]")
    before = settings.state_dir / "demo" / "catalog-before-fix.toml"
    before.parent.mkdir(parents=True, exist_ok=True)
    before.write_text(text[:cut] + "\n")
    try:
        load_catalog(settings, before)
    except CatalogError:  # a lake that already has the fix loaded (a demo ran on it before): keep it
        load_catalog(settings, None)


def _catalog_text() -> str:
    from pipelines.billing.catalog import DEFAULT_CATALOG

    return Path(DEFAULT_CATALOG).read_text()


def live_week(run) -> dict[str, Any]:
    """Resume the simulation at the first live day and produce the rest, in arrival order, to the topics."""
    from pipelines.core.broker import resolve_bootstrap
    from pipelines.core.contracts import CONTRACTS
    from pipelines.simulate import produce

    first, it = run.state.pop("live_days")
    topics = {t: run.settings.topic(t) for t in CONTRACTS}

    def rest():
        if first is not None:
            yield first
        yield from it

    try:
        counts = produce(rest(), resolve_bootstrap(run.settings), topics, extra_conf=run.settings.kafka_client)
    finally:
        run.state.pop("sim").close()
    return {"produced": sum(counts.values()), "by_topic": counts}


def live_billing(run) -> dict[str, Any]:
    """Bill the live month early (late usage of the last history month lands there), then load the
    tariff fix and rerate the month: its credits wait as adjustments for the next invoice."""
    from pipelines.billing.reference import load_catalog
    from pipelines.billing.run import bill_run, quality_gate, rerate

    _, live_start = plan(run.settings, run.options)
    cycle = live_start.strftime("%Y-%m")
    bill = bill_run(run.settings, cycle, early=True, gate=quality_gate())
    loaded = load_catalog(run.settings, None).loaded
    fix = rerate(run.settings, cycle)
    return {"cycle": bill.cycle, "rated": bill.rated, "unrated": bill.unrated, "late_records": bill.late, "invoices": bill.invoices,
            "held_accounts": bill.held_accounts, "invoiced_incl_tax": str(bill.amount_incl_tax), "quality_gate": bill.quality_gate,
            "catalog_versions_loaded": loaded, "rerated_records": fix.changed_records, "rerate_adjustments": fix.adjustments,
            "rerate_net": str(fix.net_amount), "adjustments_for": fix.target_cycle}


def churn_model(run) -> dict[str, Any]:
    """Features for every date of the window, the model on the documented time split, the last day scored."""
    from pipelines.churn.features import build_features
    from pipelines.churn.model import train
    from pipelines.churn.scoring import score

    cfg, _ = plan(run.settings, run.options)
    first, last = cfg.start + timedelta(days=1), cfg.start + timedelta(days=cfg.days)
    features = build_features(run.settings, first, last)
    model = train(run.settings)
    scored = score(run.settings, last, version=model.model_version)
    return {"as_of_dates": len(features.days), "feature_rows": features.rows, "model": f"v{model.model_version}",
            "train": f"{model.train_from}..{model.train_to}", "test": f"{model.test_from}..{model.test_to}",
            "rows_test": model.rows_test, "positives_test": model.positives_test,
            "roc_auc": round(model.roc_auc, 3), "precision_at_5pct": round(model.precision_at_5pct, 3),
            "tenure_roc_auc": round(model.tenure_roc_auc, 3), "tenure_precision_at_5pct": round(model.tenure_precision_at_5pct, 3),
            "scored_as_of": last.isoformat(), "scored": scored.scored, "model_offers": scored.offers,
            "retention_offers": scored.retention_offers, "retention_by_source": scored.retention_by_source}

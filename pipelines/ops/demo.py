"""`telcolake demo`: the whole product on the embedded defaults, step by step, with a summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.core.config import Settings


@dataclass
class DemoRun:
    """What the demo did: per step its seconds and a few numbers, for the summary."""

    settings: Settings
    console: Console
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # what a step hands to a later one (the paused simulation)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, fn: Callable[[DemoRun], dict[str, Any]]) -> dict[str, Any]:
        started, cpu = time.monotonic(), time.process_time()
        with self.console.status(f"[bold]{name}[/bold] ..."):
            result = fn(self)
        self.seconds[name] = time.monotonic() - started
        self.cpu_seconds[name] = time.process_time() - cpu  # this process's threads; the broker's work is not in it
        self.results[name] = result
        shown = ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, dict | list) and not k.startswith("why"))
        self.console.print(f"[green]✓[/green] {name} ({self.seconds[name]:.1f}s, cpu {self.cpu_seconds[name]:.1f}s) {shown}")
        return result


def _broker(run: DemoRun) -> dict[str, Any]:
    from pipelines.core import broker

    bootstrap = broker.ensure_broker(run.settings)
    topics = broker.ensure_topics(bootstrap, run.settings.topics, extra=run.settings.kafka_client)
    out: dict[str, Any] = {"bootstrap": bootstrap, "topics": len(topics)}
    moved = _set_aside_stale_lake(run.settings, bootstrap)
    if moved:
        out["earlier_lake_moved_to"] = moved
    return out


def _set_aside_stale_lake(settings: Settings, bootstrap: str) -> str | None:
    """A local lake that has read further than the topics go (the embedded broker was restarted
    since an earlier demo and lost its topics) is renamed, never deleted, so this run starts clean."""
    import shutil
    from datetime import UTC, datetime
    from pathlib import Path

    from pipelines.core.contracts import CONTRACTS
    from pipelines.core.lake import Lake
    from pipelines.ingest.kafka_source import OffsetsAhead, check_resume
    from pipelines.ingest.sink import resume_offsets

    try:
        check_resume(bootstrap, [settings.topic(t) for t in CONTRACTS], resume_offsets(Lake.from_settings(settings), settings), settings.kafka_client)
        return None
    except OffsetsAhead:
        if "://" in settings.lake_root:
            raise
    root = Path(settings.lake_root)
    target = root.with_name(f"{root.name}.before-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    shutil.move(root, target)
    return str(target)


def _simulate(run: DemoRun) -> dict[str, Any]:
    from pipelines.core.broker import resolve_bootstrap
    from pipelines.core.contracts import CONTRACTS
    from pipelines.simulate import SimConfig, produce, simulate_days

    cfg = SimConfig.from_settings(run.settings, subscribers=run.options.get("subscribers") or None, days=run.options.get("days") or None)
    topics = {t: run.settings.topic(t) for t in CONTRACTS}
    with simulate_days(cfg) as days:  # a day at a time in memory
        counts = produce(days, resolve_bootstrap(run.settings), topics, extra_conf=run.settings.kafka_client)
    planted = {k: v for k, v in days.planted.as_dict().items() if not k.endswith("_ids")}
    return {"subscribers": cfg.subscribers, "days": cfg.days, "produced": sum(counts.values()), "planted": planted}


def _ingest(run: DemoRun) -> dict[str, Any]:
    from pipelines.ingest import run_ingest
    from pipelines.ingest.silver import refresh

    stats = run_ingest(run.settings, until_caught_up=True)
    silver = refresh(run.settings)
    return {
        "landed": sum(stats.rows.values()),
        "quarantined": sum(stats.quarantined.values()),
        "silver_usage_new": silver[0].new_rows,
        "duplicates_removed": silver[0].duplicates,
        "subscriber_intervals": silver[1].new_rows,
        "reasons": stats.reasons,
    }


def _streams(run: DemoRun) -> dict[str, Any]:
    from pipelines.streams import run_streams

    stats = run_streams(run.settings, until_caught_up=True).as_dict()["flows"]
    kpi, fraud, offers = stats.get("kpi", {}), stats.get("fraud", {}), stats.get("offers", {})
    return {
        "kpi_rows": kpi.get("kpi_rows", kpi.get("rows", 0)),
        "network_alerts": kpi.get("alerts_raised", 0),
        "fraud_alerts": fraud.get("alerts_raised", 0),
        "offer_triggers": offers.get("triggers", 0),
        "too_late": sum(f.get("too_late", 0) for f in stats.values()),
        "flows": stats,
    }


def _cycle_of(run: DemoRun) -> str:
    from pipelines.simulate import SimConfig

    return SimConfig.from_settings(run.settings).start.strftime("%Y-%m")


def _billing(run: DemoRun) -> dict[str, Any]:
    from pipelines.billing.reference import load_catalog
    from pipelines.billing.run import bill_run, quality_gate

    load_catalog(run.settings, None)
    result = bill_run(run.settings, _cycle_of(run), early=True, gate=quality_gate())
    return {
        "cycle": result.cycle,
        "rated": result.rated,
        "unrated": result.unrated,
        "invoices": result.invoices,
        "held_accounts": result.held_accounts,
        "invoiced_incl_tax": str(result.amount_incl_tax),
        "quality_gate": result.quality_gate,
    }


def _quality(run: DemoRun) -> dict[str, Any]:
    from quality.runner import run_gate

    gate = run_gate(run.settings, None, raise_on_failure=False)
    return {
        "suites": len(gate.suites),
        "expectations": len(gate.rows),
        "failed": len(gate.failures),
        "docs": str(gate.docs_dir / "index.html"),
        "run_id": gate.run_id,
        "failures": gate.failures,
    }


def _publish(run: DemoRun) -> dict[str, Any]:
    from pipelines.sharing.publish import publish
    from pipelines.sharing.registry import init_secrets

    init_secrets(run.settings)  # dev pseudonymisation secrets (git-ignored file) for the demo partners
    results = publish(run.settings)
    refused = [r.partner_id for r in results if r.failures]
    return {"partners": len(results), "refused": len(refused), "refused_partners": refused, "results": [r.as_dict() for r in results]}


def _read_share(run: DemoRun) -> dict[str, Any]:
    """Serve the shares on a free port and read one with the official delta-sharing client."""
    import json
    import threading

    import delta_sharing
    import uvicorn

    from pipelines.core.broker import free_port
    from pipelines.sharing.registry import load_partners
    from pipelines.sharing.server import create_app
    from pipelines.sharing.tokens import create_token

    partner = next(iter(load_partners(run.settings).values()))
    partner_id = partner.partner_id
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/delta-sharing"
    server = uvicorn.Server(uvicorn.Config(create_app(run.settings, endpoint=endpoint), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        profile = run.settings.state_dir / f"{partner_id}.share"
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(json.dumps(create_token(run.settings, partner_id, days=1).profile(endpoint)))
        client = delta_sharing.SharingClient(str(profile))
        tables = client.list_all_tables()
        first = tables[0]
        frame = delta_sharing.load_as_pandas(f"{profile}#{first.share}.{first.schema}.{first.name}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return {"partner": partner_id, "tables_visible": len(tables), "read": f"{first.share}.{first.schema}.{first.name}", "rows": len(frame)}


def _churn(run: DemoRun) -> dict[str, Any]:
    """Features for every as-of date the simulated days cover; a model and scores when labels allow.

    A label needs the subscriber's next 30 days to be known, and training a time split with a gap
    (docs/churn.md), so a lake of a few days gets features but no model: the step says so
    instead of scoring with a model it could not validate.
    """
    from datetime import timedelta

    from pipelines.churn.features import build_features
    from pipelines.churn.model import train
    from pipelines.churn.scoring import score
    from pipelines.core.errors import ChurnError
    from pipelines.simulate import SimConfig

    cfg = SimConfig.from_settings(run.settings, days=run.options.get("days") or None)
    first, last = cfg.start + timedelta(days=1), cfg.start + timedelta(days=cfg.days)
    features = build_features(run.settings, first, last)
    out: dict[str, Any] = {"as_of_dates": len(features.days), "feature_rows": features.rows, "last_as_of": last.isoformat()}
    try:
        model = train(run.settings)
    except ChurnError as err:
        out["model"] = "not trained"
        out["why_no_model"] = str(err)
        return out
    scored = score(run.settings, last, version=model.model_version)
    out.update(model=f"v{model.model_version}", roc_auc=round(model.roc_auc, 3), tenure_roc_auc=round(model.tenure_roc_auc, 3),
               scored=scored.scored, offers=scored.offers)
    return out


def _fulfilment(run: DemoRun) -> dict[str, Any]:
    """Simulated product orders through the saga on a simulated clock: lead time, fallout, jeopardy.

    Last on purpose: the lifecycle events it sends the BSS (activations ...) land at the next
    ingest, so the numbers of the steps above stay those of the simulated week.
    """
    from pipelines.oss import run_simulation

    cfg = _order_config(run)
    out = run_simulation(run.settings, cfg)
    f, p = out["figures"], out["planted"]
    return {
        "orders": cfg.orders, "completed": f["completed"], "failed": f["failed"], "held": f["held"], "cancelled": f["cancelled"],
        "lead_time_p50_s": f["lead_time_p50_s"], "lead_time_p95_s": f["lead_time_p95_s"], "fallout_rate": f["fallout_rate"],
        "jeopardy_alerts": f["jeopardy_alerts"], "retries": f["retries"], "planted": p, "figures": f,
    }


def _order_config(run: DemoRun):
    """The demo's order simulation: a tenth of the subscribers, 50 to 200 orders."""
    from pipelines.oss import OrderSimConfig
    from pipelines.simulate import SimConfig

    if run.options.get("quick"):
        subscribers = SimConfig.from_settings(run.settings, subscribers=run.options.get("subscribers") or None).subscribers
    else:  # the full demo's population (history and live week)
        from pipelines.ops.demo_history import plan

        subscribers = plan(run.settings, run.options)[0].subscribers
    return OrderSimConfig(orders=min(200, max(50, subscribers // 10)))


def _steps() -> tuple[list, list]:
    from pipelines.ops import demo_history as h
    from pipelines.ops import demo_network as n

    quick = [
        ("broker", _broker), ("simulate", _simulate), ("ingest", _ingest), ("streams", _streams), ("billing", _billing),
        ("churn", _churn), ("quality", _quality), ("publish", _publish), ("read share", _read_share), ("fulfilment", _fulfilment),
    ]
    full = [
        ("broker", _broker), ("history dumps", h.history_dumps), ("backfill + bill runs", h.backfill_and_bill),
        ("network history", n.network_history), ("live week", h.live_week), ("ingest", _ingest), ("streams", _streams),
        ("predict evaluate", n.predict_evaluate), ("billing", h.live_billing),
        ("churn", h.churn_model), ("quality", _quality), ("publish", _publish), ("read share", _read_share),
        ("fulfilment", _fulfilment),
    ]
    return quick, full


STEPS, FULL_STEPS = _steps()


KEY_TABLES = (
    "bronze/usage.events", "bronze/network.events", "bronze/bss.events",
    "quarantine/usage.events", "quarantine/network.events", "quarantine/bss.events",
    "silver/usage", "silver/subscribers",
    "gold/billing/rated_usage", "gold/billing/unrated", "gold/billing/invoices", "gold/billing/invoice_lines",
    "gold/network/cell_kpi_1m", "gold/network/alerts", "gold/fraud/alerts", "gold/offers/triggers",
    "gold/assurance/model_runs", "gold/assurance/predictions",
    "gold/billing/adjustments", "gold/churn/features_daily", "gold/churn/model_runs", "gold/churn/scores", "gold/churn/offers",
    "gold/offers/retention",
    "ops/quality_results", "gold/oss/orders", "gold/oss/jeopardy",
)


def _scalar(lake, table: str, sql: str) -> Any:
    from pipelines.core.duck import connect, query

    if not lake.exists(table):
        return None
    return query(connect(lake, {"t": table}), sql).to_pylist()


def summary(settings: Settings, quality_run: str | None = None) -> dict[str, Any]:
    """The demo's numbers, read back from the lake (so they reconcile with the tables)."""
    from pipelines.core.lake import Lake

    lake = Lake.from_settings(settings)
    existing = set(lake.list_tables())
    out: dict[str, Any] = {"rows": {t: lake.dataset(t).count_rows() for t in KEY_TABLES if t in existing}}
    out["shares"] = {t: lake.dataset(t).count_rows() for t in sorted(existing) if t.startswith("shares/")}
    out["invoices"] = _scalar(lake, "gold/billing/invoices", "select currency, count(*) as invoices, sum(amount_excl_tax)::varchar as excl_tax, sum(amount_incl_tax)::varchar as incl_tax from t group by 1 order by 1")
    out["network_alerts"] = _scalar(lake, "gold/network/alerts", "select rule, count(*) as alerts from t group by 1 order by 1")
    out["fraud_alerts"] = _scalar(lake, "gold/fraud/alerts", "select rule, count(*) as alerts from t group by 1 order by 1")
    which = f"'{quality_run}'" if quality_run else "(select arg_max(run_id, validated_at) from t)"
    out["quality"] = _scalar(lake, "ops/quality_results", f"select count(distinct suite) as suites, count(*) filter (where success) as passed, count(*) filter (where not success) as failed from t where run_id = {which}")
    out["top_churn_risk"] = _top_churn(lake)
    out["offers"] = _scalar(lake, "gold/offers/retention", "select subscriber_id, offer_id, source, reason from t "
                            "where as_of_date = (select max(as_of_date) from t) order by risk_rank nulls last, dropped_calls desc, subscriber_id limit 5")
    return out


def _top_churn(lake) -> list[dict] | None:
    from pipelines.core.duck import connect, query

    if not lake.exists("gold/churn/scores"):
        return None
    con = connect(lake, {"scores": "gold/churn/scores"})
    cols = set(query(con, "select * from scores limit 0").column_names)
    score = next((c for c in ("churn_score", "score", "probability") if c in cols), None)
    date = next((c for c in ("as_of_date", "scored_for") if c in cols), None)
    if score is None:
        return None
    latest = f"where {date} = (select max({date}) from scores)" if date else ""
    return query(con, f"select subscriber_id, round({score}, 3) as score from scores {latest} order by {score} desc, subscriber_id limit 5").to_pylist()


def print_summary(console: Console, numbers: dict[str, Any]) -> None:
    table = Table("table", "rows", title="what landed (all tables: `telcolake tables`)")
    for name, rows in {**numbers["rows"], **numbers["shares"]}.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    for key, title in (("invoices", "invoices"), ("network_alerts", "network alerts"), ("fraud_alerts", "fraud alerts"), ("quality", "quality gate (all tables)"), ("top_churn_risk", "top churn risks")):
        if numbers.get(key):
            console.print(f"[bold]{title}[/bold]: " + "; ".join(", ".join(f"{k}={v}" for k, v in row.items()) for row in numbers[key]))


def run_demo(settings: Settings, console: Console, *, quick: bool = False, **options: Any) -> DemoRun:
    """Run every demo step in order and print the summary and what to try next.

    The full demo (default) loads months of legacy history through the backfill path before the
    live week streams (:mod:`pipelines.ops.demo_history`) and ends with a trained churn model,
    the last day scored and the day's offers; ``quick`` runs only a week through Kafka (no model).
    """
    import resource

    run = DemoRun(settings=settings, console=console, options={**options, "quick": quick})
    started = time.monotonic()
    try:
        for name, fn in STEPS if quick else FULL_STEPS:
            run.step(name, fn)
    finally:
        sim = run.state.pop("sim", None)
        if sim is not None:
            sim.close()
    run.results["summary"] = numbers = summary(settings, run.results.get("quality", {}).get("run_id"))
    print_summary(console, numbers)
    planted = run.results.get("simulate", {}).get("planted", {})
    if planted:
        console.print("[bold]planted by the simulator[/bold]: " + ", ".join(f"{k}={v}" for k, v in planted.items() if not isinstance(v, dict | list)))
    reasons = run.results.get("ingest", {}).get("reasons", {})
    if reasons:
        console.print("[bold]quarantined by reason[/bold]: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    orders = run.results.get("fulfilment")
    if orders:
        p = orders["planted"]
        console.print(f"[bold]fulfilment[/bold]: {orders['orders']} orders: {orders['completed']} completed, {orders['failed']} failed "
                      f"(planted {p['expect_failed']}), {orders['held']} held for a human (planted {p['expect_held']}), "
                      f"{orders['cancelled']} cancelled (planted {p['expect_cancelled']}); lead time p50 {orders['lead_time_p50_s']} s, "
                      f"p95 {orders['lead_time_p95_s']} s; fallout {orders['fallout_rate']}; jeopardy alerts {orders['jeopardy_alerts']} "
                      f"(planted {p['expect_jeopardy']}); retries {orders['retries']} (planted {p['expect_retries']})")
    history = run.results.get("backfill + bill runs")
    if history:
        console.print("[bold]history[/bold]: " + "; ".join(
            f"{c['cycle']}: {c['files']} dump files, {c['rated']:,} records rated ({c['late_records']:,} late from earlier months), "
            f"{c['invoices']:,} invoices, {c['incl_tax']} incl. tax" for c in history["cycles"]))
    live = run.results.get("billing", {})
    if "rerated_records" in live:
        console.print(f"[bold]billing[/bold]: {live['cycle']} billed early with {live['late_records']:,} late records of earlier months; "
                      f"tariff fix (catalog versions {live['catalog_versions_loaded']}) rerated {live['rerated_records']:,} records: "
                      f"{live['rerate_adjustments']:,} adjustments, net {live['rerate_net']}, on the {live['adjustments_for']} invoices")
    churn = run.results.get("churn", {})
    if "roc_auc" in churn:
        console.print(f"[bold]churn model {churn['model']}[/bold] (train {churn['train']}, test {churn['test']}: "
                      f"{churn['rows_test']:,} rows, {churn['positives_test']:,} churners): ROC AUC {churn['roc_auc']} "
                      f"(tenure only {churn['tenure_roc_auc']}), precision@5% {churn['precision_at_5pct']} "
                      f"(tenure only {churn['tenure_precision_at_5pct']})")
        console.print(f"[bold]offers for {churn['scored_as_of']}[/bold] (gold/offers/retention): {churn['retention_offers']} "
                      f"by source {churn['retention_by_source']}")
        for row in numbers.get("offers") or []:
            console.print(f"  {row['subscriber_id']} {row['offer_id']} [{row['source']}]: {row['reason']}", soft_wrap=True)
    why = churn.get("why_no_model")
    if why:
        console.print(f"[yellow]churn:[/yellow] features written, no model or scores: {why}. "
                      "Training needs months of history (docs/churn.md: `telcolake features --from/--to`, `telcolake churn train`).")
    net, ev = run.results.get("network history"), run.results.get("predict evaluate")
    if net and ev:
        console.print(f"[bold]predictive maintenance[/bold] (model {net['model']} on {net['days']} days of cell KPIs, threshold "
                      f"{ev['threshold']:g}; held out {net['test']}: {ev['incidents']} incidents, {ev['with_precursors']} with precursors): "
                      f"precision {ev['precision']}, recall {ev['recall_precursors']} on incidents with precursors "
                      f"({ev['recall_all']} on all), median lead {ev['median_lead_min']} min before the reactive alert "
                      f"(which comes {ev['reactive_delay_min']} min after the start); trend rule precision {ev['baseline_precision']}, "
                      f"recall {ev['baseline_recall_precursors']}. Live week: {ev['live_week_raised']} predicted_degradation "
                      f"alerts raised, {ev['live_week_open']} open (`telcolake predict evaluate`, docs/predictive-maintenance.md)")
    failures = run.results.get("quality", {}).get("failures") or []
    for line in failures[:10]:
        console.print(f"[red]quality:[/red] {line}")
    run.results["total_seconds"] = total = time.monotonic() - started
    run.results["peak_rss_mb"] = peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    console.print("[bold]time[/bold]: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.seconds.items())
                  + f"; total {total:.1f}s (cpu {sum(run.cpu_seconds.values()):.1f}s); peak RSS {peak:,} MB")
    console.print(f"lake: {settings.lake_root}  (the embedded broker keeps running; `telcolake broker stop` ends it)")
    console.print("next: `telcolake status`, `telcolake tables`, `telcolake sql` (every table is a view), "
                  "`telcolake serve-shares`, and the notebooks: `just notebooks` (runs them against a fresh demo lake) or "
                  "`jupyter execute --output=/tmp/churn_risk notebooks/churn_risk.ipynb` against this one (outputs in /tmp/churn_risk.ipynb)")
    return run

"""`telcolake predict replay|train|evaluate`: predictive maintenance (predicted_degradation alerts)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError

predict_app = typer.Typer(help="Predictive maintenance: learn a cell's degradation from KPI history, evaluate the lead time.",
                          no_args_is_help=True)


@predict_app.command("replay")
def replay(
    planted: Path = typer.Option(..., "--planted", help="Write the simulator's planted summary (incidents, precursors, drifts) here."),
    days: int = typer.Option(None, "--days", help="Days to simulate (default [simulate] days)."),
    subscribers: int = typer.Option(None, "--subscribers", help="Subscribers (default [simulate] subscribers)."),
    seed: int = typer.Option(None, "--seed", help="Random seed (default [simulate] seed)."),
    incidents_per_day: float = typer.Option(None, "--incidents-per-day", help="Network incidents per day (default [simulate])."),
    drifts_per_day: float = typer.Option(None, "--drifts-per-day", help="False-alarm drifts per day (default [simulate])."),
) -> None:
    """Simulate network events and run them through the KPI flow's logic into an empty lake (KPI history, no Kafka)."""
    from pipelines.assurance.history import replay_network
    from pipelines.simulate import SimConfig

    s = settings()
    try:
        cfg = SimConfig.from_settings(s, days=days, subscribers=subscribers, seed=seed, incidents_per_day=incidents_per_day,
                                      drifts_per_day=drifts_per_day)
        with err.status("replaying network events", spinner="dots"):
            r = replay_network(s, cfg)
    except TelcolakeError as exc:
        fail(exc)
    planted.write_text(json.dumps(r.planted, default=str))
    console.print(f"{r.events:,} network events over {cfg.days} days ({r.rejected} rejected, {r.too_late} too late): "
                  f"{r.kpi_rows:,} KPI windows, {r.alerts} alerts; planted summary in {planted}")


@predict_app.command("train")
def train_cmd(as_json: bool = typer.Option(False, "--json", help="Print the run as JSON.")) -> None:
    """Train the model and the trend-rule baseline on a time split of gold/network/cell_kpi_1m; record the run."""
    from pipelines.assurance.model import train

    s = settings()
    try:
        with err.status("training", spinner="dots"):
            r = train(s)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(asdict(r), default=str))
        return
    console.print(f"model v{r.model_version}: train {r.train_from:%Y-%m-%d %H:%M}..{r.train_to:%Y-%m-%d %H:%M} "
                  f"({r.rows_train:,} windows, {r.positives_train:,} before an incident), test from {r.test_from:%Y-%m-%d %H:%M} "
                  f"({r.rows_test:,} windows); window ROC AUC {r.window_roc_auc:.3f}, baseline {r.baseline_window_roc_auc:.3f}")
    if r.validation_precision is not None:
        console.print(f"threshold {r.threshold:g} (best F1 out of fold: warnings followed by an incident {r.validation_precision:.0%}, "
                      f"incidents warned of {r.validation_recall:.0%}; the stream uses it while [predict] threshold = 0)")
    else:
        console.print(f"threshold {r.threshold:g} ([predict] threshold)")


@predict_app.command("evaluate")
def evaluate_cmd(
    planted: Path = typer.Option(..., "--planted", help="The planted summary (`telcolake simulate --json` or `predict replay`)."),
    version: int = typer.Option(None, "--version", help="Model version (default: the latest)."),
    threshold: float = typer.Option(None, "--threshold", help="Probability threshold (default [predict] threshold)."),
    as_json: bool = typer.Option(False, "--json", help="Print the evaluation as JSON."),
) -> None:
    """Precision, recall and lead time on the held-out period against the planted incidents; written to gold/assurance/evaluations."""
    from pipelines.assurance.evaluate import TARGET, evaluate

    s = settings()
    try:
        e = evaluate(s, planted, version=version, threshold=threshold)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(e.as_dict(), default=str))
        return
    console.print(f"model v{e.model_version}, held out {e.test_from:%Y-%m-%d %H:%M}..{e.test_to:%Y-%m-%d %H:%M}, horizon "
                  f"{e.horizon_hours:g} h, threshold {e.threshold:g}: {e.incidents} planted incidents ({e.incidents_with_precursor} with precursors)")
    table = Table("method", "alerts", "precision", "per incident", "recall (precursors)", "recall (all)", "median lead", "p10 lead", "on drifts")
    fmt = lambda v, unit="": "-" if v is None else f"{v:g}{unit}"  # noqa: E731
    for m in (e.model, e.baseline):
        table.add_row(m.method, str(m.episodes), fmt(m.precision), fmt(m.precision_distinct), fmt(m.recall_precursor), fmt(m.recall_all),
                      fmt(m.median_lead_minutes, " min"), fmt(m.p10_lead_minutes, " min"), str(m.drift_episodes))
    console.print(table)
    console.print(f"reactive rule: {e.reactive_detected}/{e.incidents} detected, median delay {fmt(e.reactive_median_delay_minutes, ' min')} "
                  f"after the incident starts (p90 {fmt(e.reactive_p90_delay_minutes, ' min')}); lead times are before its alert")
    verdict = "met" if e.targets_met else "NOT met"
    console.print(f"targets (recall >= {TARGET['recall']} at precision >= {TARGET['precision']}, median lead >= "
                  f"{TARGET['median_lead_minutes']:g} min): {verdict}")

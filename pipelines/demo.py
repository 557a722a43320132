"""`telcolake demo`: the whole product on the embedded defaults, step by step, with a summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.config import Settings


@dataclass
class DemoRun:
    """What the demo did: per step its seconds and a few numbers, for the summary."""

    settings: Settings
    console: Console
    options: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, fn: Callable[[DemoRun], dict[str, Any]]) -> dict[str, Any]:
        started = time.monotonic()
        with self.console.status(f"[bold]{name}[/bold] ..."):
            result = fn(self)
        self.seconds[name] = time.monotonic() - started
        self.results[name] = result
        shown = ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, dict | list))
        self.console.print(f"[green]✓[/green] {name} ({self.seconds[name]:.1f}s) {shown}")
        return result


def _broker(run: DemoRun) -> dict[str, Any]:
    from pipelines import broker

    bootstrap = broker.ensure_broker(run.settings)
    topics = broker.ensure_topics(bootstrap, run.settings.topics, extra=run.settings.kafka_client)
    return {"bootstrap": bootstrap, "topics": len(topics)}


def _simulate(run: DemoRun) -> dict[str, Any]:
    from pipelines.broker import resolve_bootstrap
    from pipelines.contracts import CONTRACTS
    from pipelines.simulate import SimConfig, produce, simulate

    cfg = SimConfig.from_settings(run.settings, subscribers=run.options.get("subscribers") or None, days=run.options.get("days") or None)
    result = simulate(cfg)
    topics = {t: run.settings.topic(t) for t in CONTRACTS}
    counts = produce(result, resolve_bootstrap(run.settings), topics, extra_conf=run.settings.kafka_client)
    planted = {k: v for k, v in result.planted.as_dict().items() if not k.endswith("_ids")}
    return {"subscribers": cfg.subscribers, "days": cfg.days, "produced": sum(counts.values()), "planted": planted}


def _ingest(run: DemoRun) -> dict[str, Any]:
    from pipelines.ingest import run_ingest
    from pipelines.silver import refresh

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


STEPS: list[tuple[str, Callable[[DemoRun], dict[str, Any]]]] = [
    ("broker", _broker),
    ("simulate", _simulate),
    ("ingest", _ingest),
]


def summary_table(run: DemoRun) -> Table:
    """Rows per lake table, from the lake itself (so the numbers reconcile with the tables)."""
    from pipelines.lake import Lake, view_name

    lake = Lake.from_settings(run.settings)
    table = Table("table", "SQL view", "version", "rows", title="lake")
    for name in lake.list_tables():
        dt = lake.table(name)
        rows = dt.to_pyarrow_dataset().count_rows()
        table.add_row(name, view_name(name), str(dt.version()), f"{rows:,}")
    return table


def run_demo(settings: Settings, console: Console, **options: Any) -> DemoRun:
    """Run every demo step in order and print the summary and what to try next."""
    run = DemoRun(settings=settings, console=console, options=options)
    for name, fn in STEPS:
        run.step(name, fn)
    console.print(summary_table(run))
    planted = run.results.get("simulate", {}).get("planted", {})
    if planted:
        console.print("planted by the simulator: " + ", ".join(f"{k}={v}" for k, v in planted.items() if not isinstance(v, dict | list)))
    reasons = run.results.get("ingest", {}).get("reasons", {})
    if reasons:
        console.print("quarantined by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    console.print(f"lake: {settings.lake_root}  (the embedded broker keeps running; `telcolake broker stop` ends it)")
    console.print("next: `telcolake status`, `telcolake sql`, `just sql`, `just notebooks`")
    return run

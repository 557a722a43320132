"""The full demo's predictive maintenance: weeks of cell KPIs before the live week, a model, its evaluation.

The operator's KPI archive for the ``NETWORK_DAYS`` before ``[simulate] start`` is simulated as
a world of its own (same cells and sites as every world, more incidents and false-alarm drifts
than the live week so there is something to learn from) and replayed through the KPI flow's
logic into ``gold/network/cell_kpi_1m`` and ``gold/network/alerts``
(:func:`pipelines.assurance.history.replay_network`); ``telcolake predict train`` then learns
from it, before the live week streams, so the KPI flow scores the live week with the model. After
the streams, ``predict evaluate`` checks the model on its held-out days against the planted
summary (written to ``<state dir>/demo/network-planted.json``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

NETWORK_DAYS = 28  # the archive: 21 days to learn from, the last 7 held out (``[predict] test_days``)
NETWORK_SUBSCRIBERS = 200  # the archive world's subscribers (their calls are part of the cells' traffic)
NETWORK_INCIDENTS_PER_DAY = 6.0
NETWORK_DRIFTS_PER_DAY = 3.0
NETWORK_SEED_OFFSET = 1  # the archive world's seed: the live seed + this


def planted_path(run) -> Path:
    return Path(run.settings.state_dir) / "demo" / "network-planted.json"


def network_history(run) -> dict[str, Any]:
    """Replay the archive world's network events through the KPI logic, then train the degradation model."""
    from pipelines.assurance.history import replay_network
    from pipelines.assurance.model import train
    from pipelines.simulate import SimConfig

    live = SimConfig.from_settings(run.settings)
    cfg = replace(live, subscribers=NETWORK_SUBSCRIBERS, days=NETWORK_DAYS, seed=live.seed + NETWORK_SEED_OFFSET,
                  start=live.start - timedelta(days=NETWORK_DAYS), incidents_per_day=NETWORK_INCIDENTS_PER_DAY,
                  drifts_per_day=NETWORK_DRIFTS_PER_DAY)
    r = replay_network(run.settings, cfg)
    path = planted_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r.planted))
    model = train(run.settings)
    return {"days": NETWORK_DAYS, "arrival_days": r.days, "network_events": r.events, "kpi_rows": r.kpi_rows, "incidents": len(r.planted["incidents"]),
            "with_precursors": len(r.planted["precursors"]), "drifts": len(r.planted["drifts"]), "model": f"v{model.model_version}",
            "threshold": model.threshold, "window_roc_auc": round(model.window_roc_auc, 3),
            "test": f"{model.test_from:%Y-%m-%d %H:%M}..{model.test_to:%Y-%m-%d %H:%M}"}


def predict_evaluate(run) -> dict[str, Any]:
    """The model's figures on its held-out days against the planted incidents, and what it raised in the live week."""
    import polars as pl

    from pipelines.assurance.evaluate import evaluate
    from pipelines.assurance.scoring import RULE
    from pipelines.core.lake import Lake
    from pipelines.simulate import SimConfig
    from pipelines.streams.config import ALERTS_TABLE

    e = evaluate(run.settings, planted_path(run))
    live_from = datetime.combine(SimConfig.from_settings(run.settings).start, time(), UTC)
    alerts = pl.from_arrow(Lake.from_settings(run.settings).read(ALERTS_TABLE, columns=["rule", "status", "raised_at"]))
    live = alerts.filter(pl.col("rule") == RULE, pl.col("raised_at") >= live_from)
    m, b = e.model, e.baseline
    return {"incidents": e.incidents, "with_precursors": e.incidents_with_precursor, "threshold": e.threshold,
            "precision": m.precision, "recall_precursors": m.recall_precursor, "recall_all": m.recall_all,
            "median_lead_min": m.median_lead_minutes, "p10_lead_min": m.p10_lead_minutes,
            "baseline_precision": b.precision, "baseline_recall_precursors": b.recall_precursor,
            "reactive_delay_min": e.reactive_median_delay_minutes, "targets_met": e.targets_met,
            "live_week_raised": live.height, "live_week_open": int((live["status"] == "open").sum())}

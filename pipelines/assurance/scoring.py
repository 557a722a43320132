"""Scoring in the stream: the KPI flow's step that turns closed windows into ``predicted_degradation`` alerts.

:class:`Scorer` keeps each cell's feature state (:func:`~pipelines.assurance.features.advance`)
and, once every cell of a site closed a minute (but for cells more than ``site_wait_minutes``
behind the site's most advanced one: a cell that stopped reporting), adds the site features, scores the windows with the current model and follows the alert lifecycle
(:class:`~pipelines.streams.alerts.Episodes`: raised after ``raise_after_windows`` windows at
risk, ``updated`` every ``update_every_windows``, cleared after ``clear_after_windows`` calm
ones). Its state is part of the KPI flow's checkpoint, so a recomputed batch gives the same
alerts (exactly once, like the flow's other outputs).

Windows that get no prediction are counted by reason (``predict_<reason>``). No model trained
turns the step off quietly; a trained model whose file is missing or does not match its
checksum, or one of another feature version, disables only this step: :func:`make_scorer` logs
one warning line and the KPI flow goes on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.assurance.dataset import windows
from pipelines.assurance.features import (
    REASONS,
    STATE,
    TS,
    Gates,
    advance,
    empty_state,
    with_site_features,
)
from pipelines.assurance.model import MODEL_RUNS, load_model, predict, top_features
from pipelines.assurance.settings import PredictSettings
from pipelines.core.config import Settings
from pipelines.core.errors import PredictError
from pipelines.core.lake import Lake
from pipelines.streams.alerts import Episodes
from pipelines.streams.config import AlertRules

RULE = "predicted_degradation"
PREDICTIONS_TABLE = "gold/assurance/predictions"
PREDICTION_SCHEMA = pa.schema([
    ("alert_id", pa.string()), ("cell_id", pa.string()), ("site_id", pa.string()), ("model_version", pa.int64()),
    ("horizon_minutes", pa.int64()), ("probability", pa.float64()), ("peak_probability", pa.float64()),
    ("top_features", pa.string()), ("last_seen_at", pa.timestamp("us", tz="UTC")),
])
PREDICTION_KEYS = ("alert_id",)
log = logging.getLogger("telcolake.predict")


class Scorer:
    """One KPI shard's prediction step (its sites' cells)."""

    def __init__(self, cfg: PredictSettings, rules: AlertRules, model: dict, model_version: int) -> None:
        self.cfg, self.rules, self.model, self.model_version = cfg, rules, model, model_version
        self.gates = Gates.of(cfg)
        self.state = empty_state()
        self.pending: pl.DataFrame | None = None  # per-cell feature rows waiting for their site's minute to close
        self.episodes = Episodes(RULE, severity="warning", need=cfg.raise_after_windows, update_every=cfg.update_every_windows,
                                 max_gap=timedelta(minutes=rules.window_gap_minutes), clear_after=cfg.clear_after_windows)

    def step(self, kpi: pl.DataFrame, alerts: pl.DataFrame, ready: pl.DataFrame) -> tuple[list[tuple[str, dict]], pa.Table | None, dict]:
        """Feed the batch's closed windows.

        Args:
            kpi: the batch's KPI rows (``cell_kpi_1m`` columns plus ``_end``).
            alerts: drop-rate and uncleared-alarm alerts open before the batch or changed in it
                (``alert_id, rule, entity_id, raised_at, cleared_at``).
            ready: ``site_id, ready``: every live cell of the site closed the minutes up to ``ready``.

        Returns:
            (lifecycle events, prediction rows, counts).
        """
        counts: dict[str, int] = {}
        if kpi.height:
            rows = windows(self.rules, kpi.select([c for c in kpi.columns if c != "_end"]), alerts)
            feats, self.state = advance(self.state, rows, self.gates)
            self.pending = feats if self.pending is None else pl.concat([self.pending, feats], how="vertical_relaxed")
        if self.pending is None or not self.pending.height:
            return [], None, counts
        pending = self.pending.join(ready, on="site_id", how="left")
        done = pending.filter(pl.col("_end") <= pl.col("ready")).drop("ready")
        self.pending = pending.filter(pl.col("ready").is_null() | (pl.col("_end") > pl.col("ready"))).drop("ready")
        if not done.height:
            return [], None, counts
        done = with_site_features(done).sort("cell_id", "_end")
        for reason in REASONS:
            n = int((done["reason"] == reason).sum())
            if n:
                counts[f"predict_{reason}"] = n
        scored = done["reason"].is_null().to_numpy()
        p = np.full(done.height, np.nan)
        p[scored] = predict(self.model, done.filter(pl.col("reason").is_null()))
        counts["predict_scored"] = int(scored.sum())
        at_risk = scored & (p >= self.model["threshold"])
        frame = done.select(pl.col("cell_id").alias("entity_id"), "site_id", pl.col("window_start").alias("start"),
                            pl.col("_end").alias("end")).with_columns(pl.Series("flag", at_risk),
                                                                      pl.Series("value", p, nan_to_null=True))
        events = self.episodes.step(frame)
        if not events:
            return [], None, counts
        # top features of the windows that raised or updated an alert (by cell and window end)
        keyed = done.with_columns(pl.Series("p", p, nan_to_null=True))
        wanted = pl.DataFrame([(r["entity_id"], r["last_seen_at"]) for _, r in events], schema={"cell_id": pl.String, "_end": TS},
                              orient="row").unique()
        hit = keyed.join(wanted, on=["cell_id", "_end"], how="semi")
        tops = dict(zip(zip(hit["cell_id"].to_list(), hit["_end"].to_list(), strict=True),
                        top_features(self.model, hit, self.cfg.top_features), strict=True))
        horizon = self.cfg.horizon_minutes
        out, preds = [], {}
        latest: dict[str, str | None] = {}
        for ev, row in events:
            # a cleared alert keeps the top features of its last window at risk (from this batch, or from its state)
            if ev == "cleared":
                tf = latest.get(row["alert_id"], row.get("top_features"))
            else:
                tf = latest[row["alert_id"]] = tops.get((row["entity_id"], row["last_seen_at"]))
            row = dict(row, horizon_minutes=horizon, top_features=tf)
            out.append((ev, row))
            preds[row["alert_id"]] = {"alert_id": row["alert_id"], "cell_id": row["entity_id"], "site_id": row["site_id"],
                                      "model_version": self.model_version, "horizon_minutes": horizon, "probability": row["last_value"],
                                      "peak_probability": row["peak_value"], "top_features": row.get("top_features"),
                                      "last_seen_at": row["last_seen_at"]}
        for st in self.episodes.state.values():
            if st.get("alert") is not None and st["alert"]["alert_id"] in latest:
                st["alert"]["top_features"] = latest[st["alert"]["alert_id"]]
        counts["predicted_raised"] = sum(ev == "raised" for ev, _ in out)
        return out, pa.Table.from_pylist(list(preds.values()), schema=PREDICTION_SCHEMA), counts

    def fresh(self) -> Scorer:
        """A scorer with the same model and no state (one per shard)."""
        return Scorer(self.cfg, self.rules, self.model, self.model_version)

    def snapshot(self) -> dict[str, pa.Table]:
        pending = self.pending if self.pending is not None else pl.DataFrame()
        return {"p_state": self.state.to_arrow(), "p_pending": pending.to_arrow(), "p_episodes": self.episodes.snapshot()}

    def restore(self, parts: dict[str, pa.Table]) -> None:
        """Resume from a checkpoint; one written without this step (or by another feature version) starts afresh."""
        if "p_state" not in parts:
            return
        state = pl.from_arrow(parts["p_state"])
        if dict(state.schema) != STATE:
            log.warning("prediction state in the checkpoint is of another feature version: cells start a new history")
            return
        self.state = state
        pending = pl.from_arrow(parts["p_pending"])
        self.pending = pending if pending.width else None
        self.episodes.restore(parts["p_episodes"])


def make_scorer(settings: Settings, rules: AlertRules) -> Scorer | None:
    """The scorer for the latest trained model, or None (one logged line saying why) when prediction is off or impossible."""
    cfg = PredictSettings.from_settings(settings)
    if not cfg.enabled:
        return None
    if not Lake.from_settings(settings).exists(MODEL_RUNS):
        log.info("predicted_degradation alerts are off: no degradation model trained yet")  # the usual state: not a warning
        return None
    try:
        model, run = load_model(settings)
    except PredictError as exc:
        log.warning("predicted_degradation alerts are off: %s", exc)
        return None
    return Scorer(cfg, rules, dict(model, threshold=cfg.threshold or model["threshold"]), int(run["model_version"]))

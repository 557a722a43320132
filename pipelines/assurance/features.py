"""Point-in-time features per cell and closed KPI window, computed the same way in training and in the stream.

A cell's features at a window use only that cell's windows up to and including it (and, for the
site features, the other cells' windows of the same minute): nothing later. Levels are
exponentially weighted means in event time over three half-lives (15 min, 1 h, 4 h); a slope is
the difference of two such means divided by the difference of their lags (the lag of an EW mean
behind a linear trend is half-life / ln 2), so a signal rising steadily by ``a`` per hour has a
slope of ``a``.

:func:`advance` takes the per-cell state (the EW means at the cell's last window, its history
start, its last incident) and a batch of closed windows, and returns the features and the new
state: a batch cut anywhere gives the same features as one call over the whole history, bit for
bit (an EW mean continues from the state row as its first value; tested). Training calls it
once over months of ``gold/network/cell_kpi_1m``; the KPI flow calls it for every batch.

Windows that get no prediction carry a ``reason``: ``missing_kpi`` (no KPI sample or a missing
latency / PRB value), ``new_cell`` (less than ``min_history_minutes`` of history), ``gap`` (back
after more than ``max_gap_minutes`` without windows, history restarts), ``incident`` (a drop-rate
alert open, a critical alarm active, or the window itself over the drop-rate rule) and
``recovering`` (within ``cooldown_minutes`` of an incident).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from pipelines.assurance.settings import PredictSettings

FEATURE_VERSION = 1
TS = pl.Datetime("us", "UTC")
HALF_LIVES = {"15m": 15, "1h": 60, "4h": 240}  # minutes
SIGNALS = {"lat": "latency_ms_mean", "prb": "prb_utilization_mean", "drops": "dropped_calls", "calls": "call_attempts",
           "alarms": "active_alarms"}
# the EW means the features use (dropped calls and attempts only over 1 h and 4 h, alarms over 1 h)
EW_PAIRS = [(s, h) for s in SIGNALS for h in HALF_LIVES
            if (s, h) not in {("drops", "15m"), ("calls", "15m"), ("alarms", "15m"), ("alarms", "4h")}]
EW = [f"ew_{s}_{h}" for s, h in EW_PAIRS]
# The model's inputs, in this order (the feature version names this list and how it is computed).
FEATURES = [
    "lat_15m", "lat_1h", "lat_4h", "lat_slope_short", "lat_slope_long",
    "prb_15m", "prb_1h", "prb_4h", "prb_slope_short", "prb_slope_long",
    "drop_rate_1h", "drop_rate_4h", "drop_rate_slope", "calls_1h",
    "alarms_now", "alarms_1h",
    "site_lat_dev", "site_prb_dev", "site_lat_slope_dev",
    "hour_of_day",
]
REASONS = ("missing_kpi", "new_cell", "gap", "incident", "recovering")
# Columns a batch of closed windows must have (``flag``: the window is over the drop-rate rule;
# ``drop_open``: a drop-rate alert is open at it; ``critical``: critical alarms active at it).
INPUT = {"cell_id": pl.String, "site_id": pl.String, "window_start": TS, "_end": TS, "call_attempts": pl.Int64,
         "dropped_calls": pl.Int64, "latency_ms_mean": pl.Float64, "prb_utilization_mean": pl.Float64,
         "kpi_samples": pl.Int64, "active_alarms": pl.Int64, "flag": pl.Boolean, "drop_open": pl.Boolean, "critical": pl.Int64}
STATE = {"cell_id": pl.String, "last_end": TS, "seg_start": TS, "ever_gap": pl.Boolean, "last_incident": TS,
         **{c: pl.Float64 for c in EW}}


def empty_state() -> pl.DataFrame:
    return pl.DataFrame(schema=STATE)


def _lag_h(half_life_min: int) -> float:
    """Hours an EW mean of this half-life lags behind a linear trend."""
    return half_life_min / 60 / math.log(2)


@dataclass(frozen=True)
class Gates:
    """The thresholds that decide which windows are scored (from ``[predict]``), in microseconds."""

    cooldown: int
    min_history: int
    max_gap: int

    @classmethod
    def of(cls, cfg: PredictSettings) -> Gates:
        us = lambda minutes: int(timedelta(minutes=minutes) / timedelta(microseconds=1))  # noqa: E731
        return cls(cooldown=us(cfg.cooldown_minutes), min_history=us(cfg.min_history_minutes), max_gap=us(cfg.max_gap_minutes))


def advance(state: pl.DataFrame, rows: pl.DataFrame, gates: Gates) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features of a batch of closed windows, and the state after them.

    Args:
        state: per-cell state (:data:`STATE`), as returned by the previous call (or :func:`empty_state`).
        rows: closed windows (:data:`INPUT` columns), each cell's in window order and after its
            windows of earlier batches.

    Returns:
        (one row per input window: ``cell_id, site_id, window_start, _end, reason`` and the per-cell
        features (site features are added by :func:`with_site_features`), the new state).
    """
    if not rows.height:
        return _cell_frame(rows.head(0)), state
    rows = rows.select([pl.col(c).cast(t) for c, t in INPUT.items()]).sort("cell_id", "_end", maintain_order=True)
    us = pl.col("_end").dt.epoch("us")
    prior = state.select("cell_id", pl.col("last_incident").dt.epoch("us").alias("_inc0"), pl.col("last_end").dt.epoch("us").alias("_last0"),
                         pl.col("seg_start").dt.epoch("us").alias("_seg0"), pl.col("ever_gap").alias("_gap0"))
    rows = rows.join(prior, on="cell_id", how="left", maintain_order="left")
    active = pl.col("drop_open") | (pl.col("critical") > 0)
    rows = rows.with_columns(
        pl.max_horizontal(pl.col("_inc0"), pl.when(active).then(us).otherwise(None).forward_fill().over("cell_id")).alias("_inc"),
        ((pl.col("kpi_samples") > 0) & pl.col("latency_ms_mean").is_not_null() & pl.col("prb_utilization_mean").is_not_null()
         & pl.col("call_attempts").is_not_null() & pl.col("dropped_calls").is_not_null() & pl.col("active_alarms").is_not_null())
        .alias("_valid"),
    )
    valid = rows.filter(pl.col("_valid"))
    prev = pl.col("_end").dt.epoch("us").shift(1).over("cell_id")
    valid = valid.with_columns(pl.coalesce(prev, pl.col("_last0")).alias("_prev"))
    gap = pl.col("_prev").is_not_null() & (pl.col("window_start").dt.epoch("us") - pl.col("_prev") > gates.max_gap)
    new = pl.col("_prev").is_null()
    valid = valid.with_columns((gap | new).cast(pl.Int32).cum_sum().over("cell_id").alias("_seg"), gap.alias("_is_gap"))
    valid = valid.with_columns(
        pl.when(pl.col("_seg") == 0).then(pl.col("_seg0")).otherwise(pl.col("window_start").dt.epoch("us").first().over("cell_id", "_seg"))
        .alias("_seg_start"),
        (pl.col("_gap0").fill_null(False) | pl.col("_is_gap").cum_max().over("cell_id")).alias("_ever_gap"),
    )
    valid = _ew(valid, state)
    feats = _per_cell_features(valid)

    out = rows.join(feats, on=["cell_id", "_end"], how="left", maintain_order="left")
    recovering = pl.col("_inc").is_not_null() & (us - pl.col("_inc") <= gates.cooldown)
    young = us - pl.col("_seg_start") < gates.min_history
    reason = (pl.when(~pl.col("_valid")).then(pl.lit("missing_kpi"))
              .when(active | pl.col("flag")).then(pl.lit("incident"))
              .when(recovering).then(pl.lit("recovering"))
              .when(young & pl.col("_ever_gap")).then(pl.lit("gap"))
              .when(young).then(pl.lit("new_cell"))
              .otherwise(None))
    out = out.with_columns(reason.alias("reason"))

    last = valid.group_by("cell_id", maintain_order=True).agg(
        pl.col("_end").last().alias("last_end"), pl.col("_seg_start").last().cast(TS).alias("seg_start"),
        pl.col("_ever_gap").last().alias("ever_gap"), *[pl.col(c).last() for c in EW])
    inc = rows.group_by("cell_id", maintain_order=True).agg(pl.col("_inc").last().cast(TS).alias("last_incident"))
    new_state = last.join(inc, on="cell_id", how="full", coalesce=True)
    kept = state.join(new_state.select("cell_id"), on="cell_id", how="anti")
    old_inc = state.join(new_state.filter(pl.col("last_end").is_null()).select("cell_id"), on="cell_id", how="semi")
    new_state = new_state.join(old_inc.select("cell_id", *[c for c in STATE if c not in ("cell_id", "last_incident")]),
                               on="cell_id", how="left", suffix="_old")
    new_state = new_state.with_columns([pl.coalesce(c, f"{c}_old").alias(c) for c in STATE if c not in ("cell_id", "last_incident")])
    new_state = pl.concat([kept, new_state.select(list(STATE))], how="vertical_relaxed").select([pl.col(c).cast(t) for c, t in STATE.items()])
    return _cell_frame(out), new_state


def _ew(valid: pl.DataFrame, state: pl.DataFrame) -> pl.DataFrame:
    """EW means of every signal and half-life, continuing from the state for rows of segment 0."""
    x = [pl.col(SIGNALS[s]).cast(pl.Float64).alias(f"ew_{s}_{h}") for s, h in EW_PAIRS]
    cont = valid.filter(pl.col("_seg") == 0).select("cell_id").unique()
    seed = state.join(cont, on="cell_id", how="semi").select(
        "cell_id", pl.col("last_end").alias("_end"), *EW, _seg=pl.lit(0, pl.Int32), _ord=pl.lit(0, pl.Int8))
    batch = valid.select("cell_id", "_end", *x, "_seg", _ord=pl.lit(1, pl.Int8))
    both = pl.concat([seed, batch], how="vertical_relaxed").sort("cell_id", "_seg", "_ord", "_end")
    ew = both.with_columns([pl.col(f"ew_{s}_{h}").ewm_mean_by("_end", half_life=f"{HALF_LIVES[h]}m").over("cell_id", "_seg")
                            for s, h in EW_PAIRS]).filter(pl.col("_ord") == 1)
    # ``valid`` is in (cell, window end) order, and so are the batch rows of ``ew`` (segments grow with the end)
    return valid.hstack(ew.select(EW))


def _per_cell_features(valid: pl.DataFrame) -> pl.DataFrame:
    c = pl.col

    def slope(s: str, short: str, long: str) -> pl.Expr:
        return (c(f"ew_{s}_{short}") - c(f"ew_{s}_{long}")) / (_lag_h(HALF_LIVES[long]) - _lag_h(HALF_LIVES[short]))

    rate = lambda h: pl.when(c(f"ew_calls_{h}") > 0).then(c(f"ew_drops_{h}") / c(f"ew_calls_{h}"))  # noqa: E731
    return valid.select(
        "cell_id", "_end",
        c("ew_lat_15m").alias("lat_15m"), c("ew_lat_1h").alias("lat_1h"), c("ew_lat_4h").alias("lat_4h"),
        slope("lat", "15m", "1h").alias("lat_slope_short"), slope("lat", "1h", "4h").alias("lat_slope_long"),
        c("ew_prb_15m").alias("prb_15m"), c("ew_prb_1h").alias("prb_1h"), c("ew_prb_4h").alias("prb_4h"),
        slope("prb", "15m", "1h").alias("prb_slope_short"), slope("prb", "1h", "4h").alias("prb_slope_long"),
        rate("1h").alias("drop_rate_1h"), rate("4h").alias("drop_rate_4h"),
        ((rate("1h") - rate("4h")) / (_lag_h(240) - _lag_h(60))).alias("drop_rate_slope"),
        c("ew_calls_1h").alias("calls_1h"),
        c("active_alarms").cast(pl.Float64).alias("alarms_now"), c("ew_alarms_1h").alias("alarms_1h"),
        (c("_end").dt.hour() + c("_end").dt.minute() / 60).cast(pl.Float64).alias("hour_of_day"),
        c("_seg_start"), c("_ever_gap"),
    )


def _cell_frame(out: pl.DataFrame) -> pl.DataFrame:
    cell_features = [f for f in FEATURES if not f.startswith("site_")]
    if not out.height:
        return pl.DataFrame(schema={"cell_id": pl.String, "site_id": pl.String, "window_start": TS, "_end": TS, "reason": pl.String,
                                    **{f: pl.Float64 for f in cell_features}})
    return out.select("cell_id", "site_id", "window_start", "_end", "reason", *cell_features)


def with_site_features(rows: pl.DataFrame) -> pl.DataFrame:
    """Add the site features: the cell's level and slope against the mean of its site's other cells in the same minute.

    ``rows`` holds every cell of a site for the minutes given (the stream waits until the site's
    cells all closed a minute); sums run in cell order, so the result does not depend on row order.
    """
    rows = rows.sort("site_id", "_end", "cell_id")
    group = ("site_id", "_end")
    devs = []
    for name, col in (("site_lat_dev", "lat_1h"), ("site_prb_dev", "prb_1h"), ("site_lat_slope_dev", "lat_slope_long")):
        n = pl.col(col).count().over(group)
        total = pl.col(col).sum().over(group)
        others = pl.when(pl.col(col).is_not_null() & (n > 1)).then((total - pl.col(col)) / (n - 1))
        devs.append((pl.col(col) - others).alias(name))
    return rows.with_columns(devs)


def matrix(rows: pl.DataFrame) -> np.ndarray:
    """The model's input (rows x FEATURES) as float64, NaN for a missing value."""
    return rows.select([pl.col(f).cast(pl.Float64).fill_null(float("nan")) for f in FEATURES]).to_numpy()

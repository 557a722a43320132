"""The degradation model: HistGradientBoosting on point-in-time KPI features, a trend-rule baseline, model runs.

Training reads the whole KPI history, computes every window's features with
:func:`~pipelines.assurance.features.advance` (the stream's own code), labels them with
:func:`~pipelines.assurance.dataset.label`, and splits in time: the last ``test_days`` days are
held out, and training windows end at least ``horizon_hours`` before the test starts (a label
looks that far ahead, so nothing of the test period leaks into training). Only windows that
would be scored (no ``reason``) are used. A ``negative_share`` of the windows without an
incident ahead is kept (a fixed seed), weighted back so probabilities stay calibrated. The trees
are small (7 leaves, a leaf holds at least 1/400 of the rows): larger ones learned the training
drifts by heart and were sure of every drift in the test period.

The threshold: the training period is cut into blocks of ``validation_days`` (two at least); each block is
scored by a model fitted on the other blocks (less the windows whose labels look into the
block), so every training window gets a score from a model that did not see it. Those scores
become warnings with the stream's lifecycle (:func:`episodes`) and are matched to the incident
onsets of the lake's alerts, as in production (no planted summary): the threshold (of 0.2,
0.225, ... 0.95) with the best F1 of warning precision and onset recall is the model's own.
(A precision target was tried first: out of fold, precision hardly moves with the threshold on
these worlds, 0.56-0.65 from 0.4 to 0.85, so a target picked thresholds that caught almost
nothing.) The model kept is then fitted on all training windows.

The baseline is one trend rule: latency rising faster than a threshold (ms per hour over the
1 h vs 4 h means), the threshold picked on the training windows for the best F1.

Each run is a row of ``gold/assurance/model_runs`` and a pickled file (its sha256 in the row)
holding the model, the feature list and :data:`~pipelines.assurance.features.FEATURE_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score

from pipelines.assurance.dataset import label, load_history
from pipelines.assurance.features import (
    FEATURE_VERSION,
    FEATURES,
    TS,
    Gates,
    advance,
    empty_state,
    matrix,
    with_site_features,
)
from pipelines.assurance.settings import PredictSettings
from pipelines.core.config import Settings
from pipelines.core.errors import PredictError
from pipelines.core.lake import Lake
from pipelines.core.model_files import load_run
from pipelines.streams.alerts import Episodes
from pipelines.streams.config import KPI_TABLE, stream_config

MODEL_RUNS = "gold/assurance/model_runs"
BASELINE_FEATURE = "lat_slope_long"
SEED = 20261201


@dataclass
class TrainResult:
    """One training run, as stored in ``gold/assurance/model_runs``."""

    model_version: int
    trained_at: datetime
    feature_version: int
    horizon_hours: float
    threshold: float
    validation_precision: float | None
    validation_recall: float | None
    history_version: int
    train_from: datetime
    train_to: datetime
    test_from: datetime
    test_to: datetime
    rows_train: int
    positives_train: int
    rows_test: int
    positives_test: int
    window_roc_auc: float
    baseline_feature: str
    baseline_threshold: float
    baseline_window_roc_auc: float
    importance: str
    model_path: str
    model_sha256: str


def featurize(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Every window of the history with its features and reason, the incident onsets, and the history's table version."""
    cfg = PredictSettings.from_settings(settings)
    rows, onset = load_history(settings)
    feats, _state = advance(empty_state(), rows, Gates.of(cfg))
    version = Lake.from_settings(settings).version(KPI_TABLE)
    return with_site_features(feats).sort("cell_id", "_end"), onset, int(version or 0)


def split(feats: pl.DataFrame, cfg: PredictSettings) -> tuple[datetime, datetime, datetime]:
    """(last training window end, first and last test window end).

    Raises:
        PredictError: less history than the test period plus a day of training.
    """
    first, last = feats["_end"].min(), feats["_end"].max()
    test_from = last - timedelta(days=cfg.test_days)
    train_to = test_from - cfg.horizon
    if first is None or train_to - first < timedelta(days=1):
        span = (last - first) if first is not None else timedelta(0)
        raise PredictError(f"{span} of KPI history is too short for predict.test_days = {cfg.test_days} plus a day of training; "
                           "simulate a longer window or lower predict.test_days")
    return train_to, test_from, last


def _best_f1_threshold(x: np.ndarray, y: np.ndarray) -> float:
    """The threshold on ``x`` (flag when x >= t) with the best F1 over ``y`` (among 200 quantiles)."""
    ok = ~np.isnan(x)
    x, y = x[ok], y[ok]
    best, best_t = -1.0, float(np.nanmax(x))
    positives = y.sum()
    for t in np.unique(np.quantile(x, np.linspace(0.5, 0.9995, 200))):
        flagged = x >= t
        tp = (flagged & y).sum()
        if not tp:
            continue
        f1 = 2 * tp / (flagged.sum() + positives)
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def _fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray, cfg: PredictSettings) -> HistGradientBoostingClassifier:
    """Small regularised trees (see the module notes), NaN-aware."""
    model = HistGradientBoostingClassifier(max_iter=cfg.max_iter, learning_rate=0.1, max_leaf_nodes=7, l2_regularization=1.0,
                                           min_samples_leaf=max(50, len(y) // 400), random_state=SEED)
    return model.fit(x, y, sample_weight=weight)


def episodes(rows: pl.DataFrame, flag: np.ndarray, value: np.ndarray, cfg: PredictSettings, max_gap: timedelta) -> pl.DataFrame:
    """``cell_id, raised_at`` of the warnings the stream's lifecycle makes of per-window flags (rows in window order per cell)."""
    ep = Episodes("predicted_degradation", severity="warning", need=cfg.raise_after_windows, update_every=cfg.update_every_windows,
                  max_gap=max_gap, clear_after=cfg.clear_after_windows)
    frame = rows.select(pl.col("cell_id").alias("entity_id"), "site_id", pl.col("window_start").alias("start"),
                        pl.col("_end").alias("end")).with_columns(pl.Series("flag", flag), pl.Series("value", value))
    raised = [(r["entity_id"], r["raised_at"]) for ev, r in ep.step(frame) if ev == "raised"]
    return pl.DataFrame(raised, schema={"cell_id": pl.String, "raised_at": TS}, orient="row")


def out_of_fold(feats: pl.DataFrame, tr: pl.DataFrame, ytr: np.ndarray, keep: np.ndarray, weight: np.ndarray,
                cfg: PredictSettings) -> np.ndarray:
    """Each window of ``feats`` (the training period, every window) scored by a model that did not learn from its block.

    The period is cut into blocks of ``validation_days`` (at most half the period); a block is scored by a model fitted on
    the other blocks' windows, less those within ``horizon_hours`` before the block (their labels
    look into it). Unscored windows get 0.
    """
    lo, hi = feats["_end"].min(), feats["_end"].max()
    step = min(timedelta(days=cfg.validation_days), (hi - lo) / 2)
    p = np.zeros(feats.height)
    x = matrix(tr)
    scored_rows = feats.with_row_index("_i").filter(pl.col("reason").is_null())
    start = lo - timedelta(microseconds=1)
    while start < hi:
        stop = start + step
        outside = tr.select((pl.col("_end") <= start - cfg.horizon) | (pl.col("_end") > stop)).to_series().to_numpy()
        train_mask = keep & outside
        if ytr[train_mask].any():
            m = _fit(x[train_mask], ytr[train_mask], weight[train_mask], cfg)
            block = scored_rows.filter(pl.col("_end") > start, pl.col("_end") <= stop)
            if block.height:
                p[block["_i"].to_numpy()] = m.predict_proba(matrix(block))[:, 1]
        start = stop
    return p


def raised_at(rows: pl.DataFrame, flag: np.ndarray, cfg: PredictSettings, max_gap: timedelta) -> pl.DataFrame:
    """``cell_id, raised_at``: what :func:`episodes` returns, from runs of flags instead of window by window.

    The lifecycle, per cell and stretch without a gap: a run of ``raise_after_windows`` flagged
    windows raises a warning (at its last window); it stays open while fewer than
    ``clear_after_windows`` calm windows separate the next flagged run. So only the flagged runs
    are walked (tested equal to :func:`episodes`); the threshold search calls it once per candidate.
    """
    df = rows.select("cell_id", "window_start", "_end").with_columns(pl.Series("flag", flag, dtype=pl.Boolean))
    prev_end = pl.col("_end").shift(1)
    df = df.with_columns(((pl.col("cell_id") != pl.col("cell_id").shift(1)).fill_null(True) | prev_end.is_null()
                          | (pl.col("window_start") - prev_end > max_gap) | (pl.col("window_start") < prev_end)).alias("_brk"))
    df = df.with_columns(pl.col("_brk").cum_sum().alias("_seg"))
    df = df.with_columns((pl.col("_brk") | (pl.col("flag") != pl.col("flag").shift(1))).fill_null(True).cum_sum().alias("_run"))
    runs = df.group_by("_run", maintain_order=True).agg(
        pl.col("_seg").first(), pl.col("flag").first(), pl.len().alias("n"), pl.col("cell_id").first(),
        pl.col("_end").slice(cfg.raise_after_windows - 1, 1).first().alias("_raise"))
    # calm windows between a flagged run and the flagged run before it in the same stretch
    runs = runs.with_columns(pl.when(~pl.col("flag")).then(pl.col("n")).otherwise(0).alias("_calm"))
    flagged = runs.with_columns(pl.col("_calm").shift(1).fill_null(0).alias("_gap_before"),
                                (pl.col("_seg") == pl.col("_seg").shift(1)).fill_null(False).alias("_same"),
                                (pl.col("_seg") == pl.col("_seg").shift(2)).fill_null(False).alias("_same2"),
                                pl.col("flag").shift(2).fill_null(False).alias("_flag2")).filter(pl.col("flag"))
    # the flagged run before this one in the stretch: two runs back (a calm run between), or none
    linked = (flagged["_same"] & flagged["_same2"] & flagged["_flag2"]).to_numpy()
    calm = flagged["_gap_before"].to_numpy()
    n = flagged["n"].to_numpy()
    need, clear = cfg.raise_after_windows, cfg.clear_after_windows
    raise_idx, is_open = [], False
    for i in range(len(n)):
        if linked[i] and is_open and calm[i] < clear:
            continue  # the warning of the run before stays open
        is_open = bool(n[i] >= need)
        if is_open:
            raise_idx.append(i)
    out = flagged[raise_idx] if raise_idx else flagged.head(0)
    return out.select("cell_id", pl.col("_raise").cast(TS).alias("raised_at"))


def choose_threshold(feats: pl.DataFrame, tr: pl.DataFrame, ytr: np.ndarray, keep: np.ndarray, weight: np.ndarray, onset: pl.DataFrame,
                     cfg: PredictSettings, gap: timedelta) -> tuple[float, float | None, float | None]:
    """(threshold, its precision, its recall) on out-of-fold scores of the training period against the lake's incident onsets.

    Precision: warnings followed by an onset of their cell within the horizon; recall: onsets
    with a warning in the horizon before them. The threshold (of 0.2, 0.225, ... 0.95, while it
    gives at least 10 warnings) with the best F1 of the two.

    Raises:
        PredictError: no threshold gives 10 warnings.
    """
    p = out_of_fold(feats, tr, ytr, keep, weight, cfg)
    scored = feats["reason"].is_null().to_numpy()
    horizon = pl.duration(minutes=cfg.horizon_minutes)
    first, last = feats["_end"].min(), feats["_end"].max()
    targets = onset.filter(pl.col("onset_at") >= first + cfg.horizon, pl.col("onset_at") <= last).sort("onset_at")
    best: tuple[float, float, float, float] | None = None
    for t in np.round(np.arange(0.2, 0.951, 0.025), 3):
        eps = raised_at(feats, scored & (p >= t), cfg, gap).sort("raised_at")
        if eps.height < 10:
            break
        nxt = eps.join_asof(onset.sort("onset_at"), left_on="raised_at", right_on="onset_at", by="cell_id", strategy="forward",
                            check_sortedness=False)
        precision = nxt.select((pl.col("onset_at").is_not_null() & (pl.col("onset_at") - pl.col("raised_at") <= horizon)).mean()).item()
        before = targets.join_asof(eps, left_on="onset_at", right_on="raised_at", by="cell_id", strategy="backward", check_sortedness=False)
        caught = before.select((pl.col("raised_at").is_not_null() & (pl.col("onset_at") - pl.col("raised_at") <= horizon)).sum()).item()
        recall = caught / targets.height if targets.height else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if best is None or f1 > best[0]:
            best = (f1, float(t), precision, recall)
    if best is None:
        raise PredictError("out-of-fold scores of the training period give fewer than 10 warnings at every threshold: "
                           "set predict.threshold, or train on a longer history")
    return best[1], round(best[2], 3), round(best[3], 3)


def train(settings: Settings) -> TrainResult:
    """Train the model and the baseline on a time split of the KPI history and record the run.

    Raises:
        PredictError: no history, too short a history, or a split without incidents on one side.
    """
    cfg = PredictSettings.from_settings(settings)
    feats, onset, history_version = featurize(settings)
    feats = feats.with_columns(label(feats, onset, cfg.horizon_minutes))
    train_to, test_from, test_to = split(feats, cfg)
    scored = feats.filter(pl.col("reason").is_null())
    tr = scored.filter(pl.col("_end") <= train_to)
    te = scored.filter(pl.col("_end") > test_from)
    ytr, yte = tr["incident_within_h"].to_numpy(), te["incident_within_h"].to_numpy()
    if ytr.sum() == 0 or yte.sum() == 0:
        raise PredictError(f"the split needs windows before an incident on both sides: train {int(ytr.sum())}, test {int(yte.sum())}; "
                           "simulate more incidents (simulate.incidents_per_day) or a longer window")
    gap = timedelta(minutes=stream_config(settings).alerts.window_gap_minutes)
    rng = np.random.default_rng(SEED)
    keep = ytr | (rng.random(len(ytr)) < cfg.negative_share)
    weight = np.where(ytr, 1.0, 1.0 / cfg.negative_share)
    if cfg.threshold > 0:
        threshold, v_precision, v_recall = cfg.threshold, None, None
    else:
        threshold, v_precision, v_recall = choose_threshold(feats.filter(pl.col("_end") <= train_to), tr, ytr, keep, weight, onset,
                                                            cfg, gap)
    xtr = matrix(tr)[keep]
    model = _fit(xtr, ytr[keep], weight[keep], cfg)
    xte = matrix(te)
    auc = float(roc_auc_score(yte, model.predict_proba(xte)[:, 1]))
    b = FEATURES.index(BASELINE_FEATURE)
    b_threshold = _best_f1_threshold(matrix(tr)[:, b], ytr)
    b_auc = float(roc_auc_score(yte, np.nan_to_num(xte[:, b], nan=-1e9)))
    sample = rng.choice(len(xtr), size=min(20_000, len(xtr)), replace=False)
    imp = permutation_importance(model, xtr[sample], ytr[keep][sample], scoring="roc_auc", n_repeats=2, random_state=SEED)
    importance = {f: round(max(float(v), 0.0), 5) for f, v in zip(FEATURES, imp.importances_mean, strict=True)}
    normal = xtr[~ytr[keep]]
    median = np.nanmedian(normal, axis=0)
    spread = np.nanquantile(normal, 0.75, axis=0) - np.nanquantile(normal, 0.25, axis=0)
    lake = Lake.from_settings(settings)
    version = (lake.read(MODEL_RUNS, columns=["model_version"]).num_rows if lake.exists(MODEL_RUNS) else 0) + 1
    path = settings.state_dir / "assurance" / f"model-v{version}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = pickle.dumps({"model": model, "features": list(FEATURES), "feature_version": FEATURE_VERSION, "version": version,
                         "horizon_hours": cfg.horizon_hours, "threshold": threshold, "median": median,
                         "spread": np.where(spread > 0, spread, 1.0), "importance": np.array([importance[f] for f in FEATURES]),
                         "baseline_threshold": b_threshold})
    path.write_bytes(blob)
    result = TrainResult(
        model_version=version, trained_at=datetime.now(UTC), feature_version=FEATURE_VERSION, horizon_hours=cfg.horizon_hours,
        threshold=threshold, validation_precision=v_precision, validation_recall=v_recall, history_version=history_version, train_from=feats["_end"].min(), train_to=train_to,
        test_from=test_from, test_to=test_to, rows_train=int(keep.sum()), positives_train=int(ytr.sum()), rows_test=len(yte),
        positives_test=int(yte.sum()), window_roc_auc=auc, baseline_feature=BASELINE_FEATURE, baseline_threshold=b_threshold,
        baseline_window_roc_auc=b_auc, importance=json.dumps(importance), model_path=str(path),
        model_sha256=hashlib.sha256(blob).hexdigest(),
    )
    lake.write(MODEL_RUNS, pa.Table.from_pylist([asdict(result)]))
    return result


def load_model(settings: Settings, version: int | None = None) -> tuple[dict, dict]:
    """The pickled model of ``version`` (latest when None) and its model_runs row.

    Raises:
        PredictError: no model trained, an unknown version, a missing file, a file that does not
            match its checksum, or a model of another feature version.
    """
    model, run = load_run(Lake.from_settings(settings), MODEL_RUNS, version, error=PredictError, what="degradation model",
                          train="telcolake predict train")
    check_model(model)
    return model, run


def check_model(model: dict) -> None:
    """Refuse a model built for other features.

    Raises:
        PredictError: its feature version or feature list is not this code's.
    """
    if model.get("feature_version") != FEATURE_VERSION or model.get("features") != FEATURES:
        raise PredictError(f"model version {model.get('version')} was trained on feature version {model.get('feature_version')}, "
                           f"this code computes version {FEATURE_VERSION}: train again (`telcolake predict train`)")


def predict(model: dict, rows: pl.DataFrame) -> np.ndarray:
    """Probability of an incident within the horizon, per row (rows with features)."""
    if not rows.height:
        return np.zeros(0)
    return model["model"].predict_proba(matrix(rows))[:, 1]


def top_features(model: dict, rows: pl.DataFrame, k: int) -> list[str]:
    """Per row, the ``k`` features that push it furthest from normal, as ``name=value`` joined by commas.

    Contribution of a feature = its distance from the training median of windows without an
    incident ahead (in interquartile ranges) x its permutation importance.
    """
    if not rows.height:
        return []
    x = matrix(rows)
    score = np.nan_to_num(np.abs(x - model["median"]) / model["spread"]) * model["importance"]
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    return [",".join(f"{FEATURES[j]}={x[i, j]:.3g}" for j in order[i]) for i in range(len(x))]

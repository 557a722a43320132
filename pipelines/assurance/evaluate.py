"""Evaluation against planted incidents: precision, recall and lead time of the warnings, beside the reactive rule.

On the model run's held-out period, every window is scored (model and trend-rule baseline) and
turned into ``predicted_degradation`` episodes with the stream's lifecycle
(:class:`~pipelines.streams.alerts.Episodes`: raised after ``raise_after_windows`` at-risk windows,
cleared after ``clear_after_windows`` calm ones). Then, against the simulator's planted summary
(``telcolake simulate --json``):

- a planted incident is **caught** when an episode of its cell was raised in the ``horizon_hours``
  before the incident started (windows inside an incident are never scored);
- **precision**: share of episodes followed by an incident of their cell within the horizon
  (``precision_distinct`` counts the warnings before one incident once: caught incidents over
  caught incidents plus false episodes);
- **recall**: share of incidents caught, over the incidents with precursors (the target) and
  over all of them (sudden failures cannot be foreseen);
- **lead time**: the reactive alert's ``raised_at`` (first ``drop_rate`` or ``alarm_uncleared``
  alert of the cell in the incident) minus the episode's ``raised_at``; also against the
  incident's start;
- the reactive rule's **detection delay**: its first alert minus the incident's start.

Only incidents starting at least ``horizon_hours`` into the test period count (their warning
window lies inside it). Results are printed and appended to ``gold/assurance/evaluations``, one row
per incident and method (warned or not, when, the lead) to ``gold/assurance/evaluation_incidents``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.assurance.features import FEATURES, TS, matrix
from pipelines.assurance.model import episodes, featurize, load_model, predict
from pipelines.assurance.settings import PredictSettings
from pipelines.core.config import Settings
from pipelines.core.errors import PredictError
from pipelines.core.lake import Lake
from pipelines.streams.config import ALERTS_TABLE, stream_config

EVALUATIONS = "gold/assurance/evaluations"
EVALUATION_INCIDENTS = "gold/assurance/evaluation_incidents"
TARGET = {"recall": 0.7, "precision": 0.6, "median_lead_minutes": 30.0}


@dataclass
class MethodScore:
    """One method's figures on the held-out period."""

    method: str
    episodes: int
    true_episodes: int
    precision: float | None
    precision_distinct: float | None
    recall_precursor: float | None
    recall_all: float | None
    caught: int
    median_lead_minutes: float | None
    p10_lead_minutes: float | None
    median_lead_vs_start_minutes: float | None
    drift_episodes: int


@dataclass
class Evaluation:
    """What ``telcolake predict evaluate`` prints and writes."""

    model_version: int
    evaluated_at: datetime
    test_from: datetime
    test_to: datetime
    horizon_hours: float
    threshold: float
    incidents: int
    incidents_with_precursor: int
    reactive_detected: int
    reactive_median_delay_minutes: float | None
    reactive_p90_delay_minutes: float | None
    model: MethodScore
    baseline: MethodScore
    targets_met: bool

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("evaluated_at", "test_from", "test_to"):
            d[k] = d[k].isoformat()
        return d


def _at(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _quantile(values: list[float], q: float) -> float | None:
    return round(float(np.quantile(values, q)), 1) if values else None


def score_method(name: str, eps: pl.DataFrame, incidents: pl.DataFrame, drifts: pl.DataFrame, horizon: timedelta,
                 detail: list[dict] | None = None) -> MethodScore:
    """Match episodes to the planted incidents (``cell_id, start_at, precursor, reactive_at``).

    ``detail``, when given, gets one row per incident: whether and when it was warned of, and the lead.
    """
    true = 0
    drift_hits = 0
    for cell, raised in eps.iter_rows():
        own = incidents.filter((pl.col("cell_id") == cell) & (pl.col("start_at") >= raised) & (pl.col("start_at") - raised <= horizon))
        true += own.height > 0
        if not own.height:
            drift_hits += drifts.filter((pl.col("cell_id") == cell) & (pl.col("start_at") - horizon <= raised)
                                        & (raised <= pl.col("end_at"))).height > 0
    leads, leads_start, caught_pre, caught = [], [], 0, 0
    for cell, start, precursor, reactive in incidents.select("cell_id", "start_at", "precursor", "reactive_at").iter_rows():
        own = eps.filter((pl.col("cell_id") == cell) & (pl.col("raised_at") <= start) & (start - pl.col("raised_at") <= horizon))
        first = own["raised_at"].min() if own.height else None
        if detail is not None:
            detail.append({"method": name, "cell_id": cell, "start_at": start, "precursor": bool(precursor), "reactive_at": reactive,
                           "warned_at": first, "lead_minutes": (reactive - first) / timedelta(minutes=1) if first and reactive else None,
                           "lead_vs_start_minutes": (start - first) / timedelta(minutes=1) if first else None})
        if first is None:
            continue
        caught += 1
        caught_pre += bool(precursor)
        leads_start.append((start - first) / timedelta(minutes=1))
        if reactive is not None:
            leads.append((reactive - first) / timedelta(minutes=1))
    n_pre = int(incidents["precursor"].sum())
    return MethodScore(
        method=name, episodes=eps.height, true_episodes=true, precision=round(true / eps.height, 3) if eps.height else None,
        precision_distinct=round(caught / (caught + eps.height - true), 3) if caught + eps.height - true else None,
        recall_precursor=round(caught_pre / n_pre, 3) if n_pre else None,
        recall_all=round(caught / incidents.height, 3) if incidents.height else None, caught=caught,
        median_lead_minutes=_quantile(leads, 0.5), p10_lead_minutes=_quantile(leads, 0.1),
        median_lead_vs_start_minutes=_quantile(leads_start, 0.5), drift_episodes=drift_hits,
    )


def evaluate(settings: Settings, planted_path: Path, *, version: int | None = None, threshold: float | None = None,
             write: bool = True) -> Evaluation:
    """Evaluate model ``version`` (latest when None) and the baseline on the run's held-out period.

    ``threshold`` replaces the one the stream uses (``[predict] threshold``, or the model's own when 0) for this evaluation.

    Raises:
        PredictError: no model, an unreadable planted summary, or no planted incident in the test period.
    """
    cfg = PredictSettings.from_settings(settings)
    try:
        planted = json.loads(Path(planted_path).read_text())
        raw_incidents, raw_pre, raw_drifts = planted["incidents"], planted.get("precursors", []), planted.get("drifts", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PredictError(f"{planted_path}: not a planted summary of `telcolake simulate --json` ({exc})") from None
    model, run = load_model(settings, version)
    horizon = timedelta(hours=run["horizon_hours"])
    test_from, test_to = run["test_from"].astimezone(UTC), run["test_to"].astimezone(UTC)
    feats, _onset, _v = featurize(settings)
    te = feats.filter((pl.col("_end") > test_from) & (pl.col("_end") <= test_to))
    scored = te["reason"].is_null().to_numpy()
    p = np.zeros(te.height)
    p[scored] = predict(model, te.filter(pl.col("reason").is_null()))
    b = matrix(te)[:, FEATURES.index("lat_slope_long")]
    b_flag = scored & (np.nan_to_num(b, nan=-np.inf) >= model["baseline_threshold"])
    gap = timedelta(minutes=stream_config(settings).alerts.window_gap_minutes)
    threshold = threshold if threshold is not None else cfg.threshold if cfg.threshold > 0 else model["threshold"]
    model_eps = episodes(te, scored & (p >= threshold), p, cfg, gap)
    base_eps = episodes(te, b_flag, np.nan_to_num(b), cfg, gap)

    pre = {(c, _at(b_)) for c, _a, b_ in raw_pre}
    inc = pl.DataFrame([(c, _at(a), _at(e), (c, _at(a)) in pre) for c, a, e in raw_incidents],
                       schema={"cell_id": pl.String, "start_at": TS, "end_at": TS, "precursor": pl.Boolean}, orient="row")
    inc = inc.filter((pl.col("start_at") >= test_from + horizon) & (pl.col("start_at") <= test_to))
    if not inc.height:
        raise PredictError(f"no planted incident starts between {test_from + horizon} and {test_to}: nothing to evaluate against")
    lake = Lake.from_settings(settings)
    alerts = pl.from_arrow(lake.read(ALERTS_TABLE, columns=["rule", "entity_id", "raised_at"])) if lake.exists(ALERTS_TABLE) else None
    reactive = []
    for cell, start, end in inc.select("cell_id", "start_at", "end_at").iter_rows():
        hit = None
        if alerts is not None:
            own = alerts.filter(pl.col("rule").is_in(["drop_rate", "alarm_uncleared"]) & (pl.col("entity_id") == cell)
                                & pl.col("raised_at").is_between(start, end))
            hit = own["raised_at"].min()
        reactive.append(hit)
    inc = inc.with_columns(pl.Series("reactive_at", reactive, dtype=TS))
    delays = [(r - s) / timedelta(minutes=1) for s, r in inc.select("start_at", "reactive_at").iter_rows() if r is not None]
    drifts = pl.DataFrame([(c, _at(a), _at(e)) for c, a, e in raw_drifts], schema={"cell_id": pl.String, "start_at": TS, "end_at": TS},
                          orient="row")
    detail: list[dict] = []
    m = score_method("model", model_eps, inc, drifts, horizon, detail)
    bl = score_method("baseline", base_eps, inc, drifts, horizon, detail)
    met = (m.recall_precursor or 0) >= TARGET["recall"] and (m.precision or 0) >= TARGET["precision"] \
        and (m.median_lead_minutes or 0) >= TARGET["median_lead_minutes"]
    result = Evaluation(
        model_version=run["model_version"], evaluated_at=datetime.now(UTC), test_from=test_from, test_to=test_to,
        horizon_hours=run["horizon_hours"], threshold=threshold, incidents=inc.height, incidents_with_precursor=int(inc["precursor"].sum()),
        reactive_detected=len(delays), reactive_median_delay_minutes=_quantile(delays, 0.5), reactive_p90_delay_minutes=_quantile(delays, 0.9),
        model=m, baseline=bl, targets_met=bool(met),
    )
    if write:
        rows = []
        for score in (m, bl):
            rows.append({"model_version": result.model_version, "evaluated_at": result.evaluated_at, "test_from": test_from,
                         "test_to": test_to, "horizon_hours": result.horizon_hours, "threshold": threshold, "incidents": result.incidents,
                         "incidents_with_precursor": result.incidents_with_precursor,
                         "reactive_median_delay_minutes": result.reactive_median_delay_minutes,
                         "targets_met": result.targets_met if score is m else None, **asdict(score)})
        lake.write(EVALUATIONS, pa.Table.from_pylist(rows, schema=EVALUATION_SCHEMA))
        keys = {"model_version": result.model_version, "evaluated_at": result.evaluated_at}
        lake.write(EVALUATION_INCIDENTS, pa.Table.from_pylist([{**keys, **d} for d in detail], schema=INCIDENT_SCHEMA))
    return result


EVALUATION_SCHEMA = pa.schema([
    ("model_version", pa.int64()), ("evaluated_at", pa.timestamp("us", tz="UTC")), ("test_from", pa.timestamp("us", tz="UTC")),
    ("test_to", pa.timestamp("us", tz="UTC")), ("horizon_hours", pa.float64()), ("threshold", pa.float64()), ("incidents", pa.int64()),
    ("incidents_with_precursor", pa.int64()), ("reactive_median_delay_minutes", pa.float64()), ("targets_met", pa.bool_()),
    ("method", pa.string()), ("episodes", pa.int64()), ("true_episodes", pa.int64()), ("precision", pa.float64()),
    ("precision_distinct", pa.float64()), ("recall_precursor", pa.float64()), ("recall_all", pa.float64()), ("caught", pa.int64()), ("median_lead_minutes", pa.float64()),
    ("p10_lead_minutes", pa.float64()), ("median_lead_vs_start_minutes", pa.float64()), ("drift_episodes", pa.int64()),
])
INCIDENT_SCHEMA = pa.schema([
    ("model_version", pa.int64()), ("evaluated_at", pa.timestamp("us", tz="UTC")), ("method", pa.string()), ("cell_id", pa.string()),
    ("start_at", pa.timestamp("us", tz="UTC")), ("precursor", pa.bool_()), ("reactive_at", pa.timestamp("us", tz="UTC")),
    ("warned_at", pa.timestamp("us", tz="UTC")), ("lead_minutes", pa.float64()), ("lead_vs_start_minutes", pa.float64()),
])

"""Score one as-of date with a trained churn model; give the top-risk subscribers an offer with reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.churn.features import FEATURES, ChurnSettings, write_day
from pipelines.churn.model import FEATURE_COLUMNS, OFFERS, SCORES, load_model, matrix, offer_rules
from pipelines.churn.retention import retention_offers
from pipelines.core.config import Settings
from pipelines.core.errors import ChurnError
from pipelines.core.lake import Lake

TOP_REASONS = 3


@dataclass
class ScoreRun:
    """What one ``churn score`` run wrote."""

    as_of_date: str
    model_version: int
    scored: int
    offers: int
    retention_offers: int = 0
    retention_by_source: dict[str, int] | None = None


def contributions(model, x: np.ndarray) -> np.ndarray:
    """Per row and feature, coefficient x transformed value: how much each feature moved the log-odds."""
    return model[:-1].transform(x) * model[-1].coef_[0]


def reasons(contrib: np.ndarray, x: np.ndarray) -> tuple[list[list[str]], list[str]]:
    """The top contributing features of each row (strongest first, positive only) and a readable text."""
    order = np.argsort(-contrib, axis=1)[:, :TOP_REASONS]
    names, texts = [], []
    for row, idx in enumerate(order):
        picked = [int(i) for i in idx if contrib[row, i] > 0]
        names.append([FEATURE_COLUMNS[i] for i in picked])
        texts.append("; ".join(f"{FEATURE_COLUMNS[i]}={x[row, i]:.4g} (+{contrib[row, i]:.2f})" for i in picked))
    return names, texts


def score(settings: Settings, as_of: date, *, version: int | None = None) -> ScoreRun:
    """Write gold/churn/scores, gold/churn/offers and gold/offers/retention for ``as_of`` (each replacing that day).

    gold/offers/retention joins the day's model offers with the stream's dropped-call triggers of
    the week before (:mod:`pipelines.churn.retention`).

    Raises:
        ChurnError: no model, or no feature rows for ``as_of``.
    """
    cfg = ChurnSettings.from_settings(settings)
    lake = Lake.from_settings(settings)
    bundle, run = load_model(settings, version)
    model, model_version = bundle["model"], run["model_version"]
    if bundle["features"] != FEATURE_COLUMNS:
        raise ChurnError(f"model version {model_version} was trained on other features; retrain with `telcolake churn train`")
    feats = lake.read(FEATURES, filter=pc.field("as_of_date") == pa.scalar(as_of, pa.date32())) if lake.exists(FEATURES) else None
    if feats is None or feats.num_rows == 0:
        raise ChurnError(f"no features for {as_of}: run `telcolake features --as-of {as_of}` first")
    feats = feats.sort_by("subscriber_id")
    x = matrix(feats)
    prob = model.predict_proba(x)[:, 1]
    by_risk = np.argsort(-prob, kind="stable")
    rank = np.empty(len(prob), dtype=np.int64)
    rank[by_risk] = np.arange(1, len(prob) + 1)
    scores = pa.table({
        "subscriber_id": feats["subscriber_id"], "account_id": feats["account_id"], "as_of_date": feats["as_of_date"],
        "model_version": pa.array(np.full(len(prob), model_version), pa.int64()), "churn_score": pa.array(prob, pa.float64()),
        "risk_rank": pa.array(rank),
    })
    write_day(lake, SCORES, as_of, scores, model_version=model_version)

    top_k = max(1, int(np.ceil(len(prob) * cfg.offer_top_pct / 100)))
    top = by_risk[:top_k]
    names, texts = reasons(contributions(model, x[top]), x[top])
    default, rules = offer_rules()
    chosen = [next((r for r in rules if r["reason"] in found), default) for found in names]
    idx = pa.array(top)
    offers = pa.table({
        "subscriber_id": feats["subscriber_id"].take(idx), "account_id": feats["account_id"].take(idx),
        "as_of_date": feats["as_of_date"].take(idx), "model_version": pa.array(np.full(top_k, model_version), pa.int64()),
        "churn_score": pa.array(prob[top], pa.float64()), "risk_rank": pa.array(rank[top]),
        "top_reason": pa.array([n[0] if n else None for n in names], pa.string()),
        "reasons": pa.array(texts, pa.string()),
        "offer_id": pa.array([r["offer_id"] for r in chosen], pa.string()),
        "offer_text": pa.array([r["text"] for r in chosen], pa.string()),
    })
    write_day(lake, OFFERS, as_of, offers, model_version=model_version)
    retention = retention_offers(settings, as_of)
    return ScoreRun(as_of_date=as_of.isoformat(), model_version=model_version, scored=len(prob), offers=top_k,
                    retention_offers=retention.offers, retention_by_source=retention.by_source)

"""End to end on the simulator's planted churners: land, features, train, score; beats tenure alone."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow.compute as pc
import pytest

from pipelines.churn.features import FEATURES, build_features
from pipelines.churn.model import OFFERS, train
from pipelines.churn.scoring import score
from pipelines.core.lake import Lake
from pipelines.simulate import SimConfig
from tests.unit.churn.simulated import land

START = date(2026, 6, 1)


@pytest.mark.slow
def test_planted_churners_are_found_better_than_by_tenure(local_settings):
    result = land(local_settings, SimConfig(subscribers=500, days=105, seed=5, churn_rate=0.2, start=START, kpi_interval_s=3600))
    lake = Lake.from_settings(local_settings)
    last = START + timedelta(days=75)
    build_features(local_settings, START + timedelta(days=35), last)
    features = lake.read(FEATURES)
    churned_before = {s for s, t in result.planted.churn_at.items() if t.date() < START + timedelta(days=35)}
    assert churned_before and not churned_before & set(features["subscriber_id"].to_pylist())

    run = train(local_settings)
    print(f"\nsimulated: ROC AUC {run.roc_auc:.3f} vs tenure {run.tenure_roc_auc:.3f}; "
          f"precision@5% {run.precision_at_5pct:.3f} vs {run.tenure_precision_at_5pct:.3f}")
    assert run.positives_test >= 20
    assert run.roc_auc >= run.tenure_roc_auc + 0.1 and run.roc_auc >= 0.7
    assert run.precision_at_5pct > 2 * run.tenure_precision_at_5pct

    score(local_settings, last)
    offers = lake.read(OFFERS)
    upcoming = {s for s, t in result.planted.churn_at.items() if t.date() >= last}
    hits = sum(s in upcoming for s in offers["subscriber_id"].to_pylist())
    assert hits >= offers.num_rows // 3
    assert pc.all(pc.greater(pc.utf8_length(offers["reasons"]), 0)).as_py()

"""Labels, training (time-based split), scoring and offers on synthetic data, through the CLI."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from pipelines.churn import synthetic
from pipelines.churn.model import LABELS, MODEL_RUNS, OFFERS, SCORES, offer_rules, split_dates
from pipelines.cli import app
from pipelines.core.lake import Lake

CFG = synthetic.SynthConfig(subscribers=300, days=100, events_per_day=4, churn_share=0.25, seed=3)


@pytest.fixture
def synthetic_lake(local_settings):
    lake = Lake.from_settings(local_settings)
    pop = synthetic.Population(CFG)
    lake.write("silver/usage", pa.concat_tables(list(synthetic.usage_days(pop))), partition_by=["event_date"])
    lake.write("bronze/bss.events", synthetic.bss_events(pop), partition_by=["event_month"])
    lake.write("bronze/network.events", synthetic.kpi_samples(CFG), partition_by=["event_date"])
    return lake, pop


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_train_score_offers(synthetic_lake):
    lake, pop = synthetic_lake
    first, last = CFG.start + timedelta(days=28), CFG.start + timedelta(days=70)
    r = run("features", "--from", str(first), "--to", str(last), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["days"][-1] == str(last)

    r = run("churn", "score", "--as-of", str(last))
    assert r.exit_code == 1 and "churn train" in r.output

    r = run("churn", "train", "--json")
    assert r.exit_code == 0, r.output
    trained = json.loads(r.output)
    assert trained["model_version"] == 1 and trained["positives_test"] > 0
    assert trained["train_to"] <= str(date_minus(trained["test_from"], 30))
    assert trained["roc_auc"] > trained["tenure_roc_auc"] + 0.1 and trained["roc_auc"] > 0.75
    assert lake.read(MODEL_RUNS).num_rows == 1

    # labels: exactly the planted churners terminating in (d, d + 30 days]
    labels = lake.read(LABELS).to_pylist()
    index = {s: i for i, s in enumerate(pop.ids.to_pylist())}
    for row in labels:
        churn_day = pop.churn_day[index[row["subscriber_id"]]]
        days_ahead = churn_day - (row["as_of_date"] - CFG.start).days
        assert row["churned_within_30d"] == (churn_day >= 0 and 0 <= days_ahead < 30), row
    assert max(r["as_of_date"] for r in labels) == CFG.start + timedelta(days=70)

    r = run("churn", "score", "--as-of", str(last), "--json")
    assert r.exit_code == 0, r.output
    scored = json.loads(r.output)
    scores = lake.read(SCORES)
    assert scores.num_rows == scored["scored"] > 200
    assert pc.min(scores["churn_score"]).as_py() >= 0 and pc.max(scores["churn_score"]).as_py() <= 1
    assert sorted(scores["risk_rank"].to_pylist()) == list(range(1, scores.num_rows + 1))
    offers = lake.read(OFFERS).to_pylist()
    assert len(offers) == scored["offers"] == math.ceil(scores.num_rows * 0.05)
    default, rules = offer_rules()
    allowed = {default["offer_id"]} | {r["offer_id"] for r in rules}
    top_scores = sorted(scores["churn_score"].to_pylist(), reverse=True)[: len(offers)]
    assert sorted(o["churn_score"] for o in offers) == sorted(top_scores)
    for o in offers:
        assert o["offer_id"] in allowed and o["reasons"] and o["reasons"].startswith(o["top_reason"] + "=")
        rule = next((x for x in rules if x["reason"] in o["reasons"].split("=")[0]), None)
        if rule is not None:
            assert o["offer_id"] == rule["offer_id"]
    # the top risks are mostly churners-to-be
    churning = {pop.ids[i].as_py() for i in range(pop.n) if pop.churn_day[i] >= 0}
    assert sum(o["subscriber_id"] in churning for o in offers) >= len(offers) // 2

    # rescoring replaces the day; a second training is version 2
    assert run("churn", "score", "--as-of", str(last)).exit_code == 0
    assert lake.read(SCORES).num_rows == scores.num_rows
    assert json.loads(run("churn", "train", "--json").output)["model_version"] == 2


def date_minus(text: str, days: int):
    from datetime import date

    return date.fromisoformat(text) - timedelta(days=days)


def test_split_dates_and_cli_errors(local_settings):
    from datetime import date

    dates = [date(2026, 9, 1) + timedelta(days=i) for i in range(50)]
    train, test = split_dates(dates * 3, 7, 30)
    assert test == dates[-7:] and train == dates[: 50 - 7 - 30 + 1] and train[-1] == test[0] - timedelta(days=30)
    r = run("features", "--as-of", "2026-13-01")
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output
    r = run("features", "--from", "2026-10-01")
    assert r.exit_code == 2 and "--to" in r.output
    r = run("churn", "train")
    assert r.exit_code == 1 and "features" in r.output

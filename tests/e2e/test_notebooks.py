"""`telcolake demo` as a user runs it (the README's quick start), then every analyst notebook top to bottom.

The demo runs once per session (``demo_lake`` in conftest.py; its full story: months of dumps
through the backfill path, the live week through its own embedded broker, bill runs, a rerate,
the churn model, scores and offers). The story is checked in the tables it wrote and what it
printed, then each notebook in ``notebooks/`` must run (nbclient) without an error cell and
draw its charts.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pyarrow.compute as pc
import pytest
from nbclient import NotebookClient

from pipelines.core.lake import Lake

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHARTS = {"billing_revenue.ipynb": 5, "churn_risk.ipynb": 4, "network_kpis.ipynb": 6, "order_to_activation.ipynb": 3}


def test_the_demo_tells_the_whole_story(demo_lake):
    lake, printed = Lake(demo_lake.env["TELCOLAKE_LAKE"]), demo_lake.printed
    runs = {r["cycle"]: r for r in lake.read("gold/billing/bill_runs").to_pylist()}
    # three finished months from the dumps, and the live month billed early
    assert sorted(runs) == ["2026-07", "2026-08", "2026-09", "2026-10"]
    assert lake.read("bronze/usage.events").filter(pc.is_valid(pc.field("_delivered_at"))).num_rows > 500_000
    # usage of a month that arrived in the next one was billed there, as late lines
    rated = lake.read("gold/billing/rated_usage", columns=["cycle", "billed_cycle", "is_late"])
    late = rated.filter(pc.field("is_late")).to_pylist()
    assert {"2026-08", "2026-09", "2026-10"} <= {r["billed_cycle"] for r in late} and all(r["cycle"] < r["billed_cycle"] for r in late)
    # the demo's rerate (the first of 2026-10; the README test may run more) credits the world-call fix on November's invoices
    rerates = [a for a in lake.read("gold/billing/adjustments").to_pylist() if a["adjustment_id"].startswith("rerate-2026-10-1-")]
    assert rerates and {a["billed_cycle"] for a in rerates} == {"2026-11"} and sum(a["amount"] for a in rerates) < 0
    # the model on the documented split beat tenure alone; the last day scored; offers from both sources
    model = lake.read("gold/churn/model_runs").to_pylist()[-1]
    assert model["roc_auc"] > model["tenure_roc_auc"] and model["positives_test"] > 0
    offers = lake.read("gold/offers/retention").to_pylist()
    assert offers and all(o["reason"] for o in offers) and {str(o["as_of_date"]) for o in offers} == {"2026-10-08"}
    assert {"churn_model", "dropped_calls"} <= {s for o in offers for s in o["source"].split("+")}
    assert re.search(r"ROC AUC 0\.\d+ \(tenure only 0\.\d+\), precision@5% [\d.]+", printed), printed[-3000:]
    # predictive maintenance: a model trained on the network archive before the live week, evaluated on its held-out days
    assert lake.read("gold/assurance/model_runs").num_rows == 1 and lake.read("gold/assurance/evaluation_incidents").num_rows > 0
    assert re.search(r"predictive maintenance \(model v1 on 28 days of cell KPIs, threshold [\d.]+; held out .*: \d+ incidents", printed), \
        printed[-3000:]
    assert "peak RSS" in printed and "failed=0" in printed
    print(next(line for line in printed.splitlines() if line.startswith("time:")))


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs_top_to_bottom_after_the_demo(name: str, demo_lake, monkeypatch: pytest.MonkeyPatch) -> None:
    env = demo_lake.env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    charts = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(charts) >= CHARTS.get(name, 3), f"{name} drew {len(charts)} charts"
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert f"lake: {env['TELCOLAKE_LAKE']}" in text
    if name == "churn_risk.ipynb":
        assert "ROC AUC" in text and "tenure only" in text
    if name == "network_kpis.ipynb":  # the predictive maintenance section: the demo's evaluation, lead times and one timeline
        assert re.search(r"\d+ incidents held out, \d+ with precursors; \d+ warned of, median lead \d+ min", text), text[-2000:]

"""`telcolake demo` as a user runs it, then every analyst notebook top to bottom (nbclient) on its lake.

The demo runs once per session (its full story: months of dumps through the backfill path, the
live week through the embedded broker, bill runs, rerate, churn model, scores and offers); the
story's numbers are checked from its ``--json`` line, then each notebook in ``notebooks/`` must
run without an error cell and draw its charts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.core.lake import Lake

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHARTS = {"billing_revenue.ipynb": 5, "churn_risk.ipynb": 4, "network_kpis.ipynb": 3, "order_to_activation.ipynb": 3}


def _config(tmp: Path) -> Path:
    """The repository config with uuid-suffixed topics, so this lake sees only its own records."""
    suffix = uuid.uuid4().hex[:8]
    text = (REPO / "telcolake.toml").read_text()
    for topic in ("usage.events", "network.events", "bss.events", "network.alerts", "fraud.alerts", "offers.triggers",
                  "orders.events", "provisioning.commands", "provisioning.results", "orders.clock", "orders.state", "orders.jeopardy"):
        text = text.replace(f'"{topic}" =', f'"{topic}.{suffix}" =')
    path = tmp / "telcolake.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory, kafka: str) -> tuple[dict[str, str], dict, str]:
    """(environment for the notebooks, the demo's --json results, its printed output) of one `telcolake demo`.

    ``TELCOLAKE_NOTEBOOK_LAKE`` (with ``TELCOLAKE_NOTEBOOK_STATE``) names an existing demo lake to use instead.
    """
    existing = os.environ.get("TELCOLAKE_NOTEBOOK_LAKE")
    if existing:
        return {"TELCOLAKE_LAKE": existing, "TELCOLAKE_STATE_DIR": os.environ.get("TELCOLAKE_NOTEBOOK_STATE", ".telcolake")}, {}, ""
    tmp = tmp_path_factory.mktemp("demo_lake")
    env = {**os.environ, "TELCOLAKE_LAKE": str(tmp / "lake"), "TELCOLAKE_STATE_DIR": str(tmp / "state"),
           "TELCOLAKE_KAFKA_BOOTSTRAP": kafka, "TELCOLAKE_CONFIG": str(_config(tmp)),
           "TELCOLAKE_SECRETS_FILE": str(tmp / "secrets.toml"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--json"], env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stderr or proc.stdout)[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: env[k] for k in ("TELCOLAKE_LAKE", "TELCOLAKE_STATE_DIR", "TELCOLAKE_CONFIG")}, results, proc.stdout


def test_the_demo_tells_the_whole_story(demo_lake):
    env, results, printed = demo_lake
    if not results:
        pytest.skip("an existing lake was given: its demo output is not known")
    steps = results["steps"]
    lake = Lake(env["TELCOLAKE_LAKE"])
    history, billing, churn = steps["backfill + bill runs"], steps["billing"], steps["churn"]
    # three finished months backfilled from dumps and billed in order; each later month billed late usage of earlier ones
    assert [c["cycle"] for c in history["cycles"]] == ["2026-07", "2026-08", "2026-09"]
    assert history["landed"] + history["quarantined"] == steps["history dumps"]["dump_records"]
    assert history["cycles"][0]["late_records"] == 0 and all(c["late_records"] > 0 for c in history["cycles"][1:])
    assert billing["late_records"] > 0 and billing["rerated_records"] > 0 and billing["adjustments_for"] == "2026-11"
    rerate = lake.read("gold/billing/adjustments").to_pylist()
    assert sum(1 for a in rerate if a["billed_cycle"] == "2026-11") == billing["rerate_adjustments"] > 0
    # the model on the documented split, the last day scored, offers from both sources with their reasons
    assert churn["roc_auc"] > churn["tenure_roc_auc"] and churn["positives_test"] > 0
    assert churn["scored_as_of"] == "2026-10-08" and churn["scored"] > 0
    offers = lake.read("gold/offers/retention").to_pylist()
    assert len(offers) == churn["retention_offers"] and all(o["reason"] for o in offers)
    assert {o["source"] for o in offers} >= {"churn_model"} and any("dropped_calls" in o["source"] for o in offers)
    assert "ROC AUC" in printed and "precision@5%" in printed and "peak RSS" in printed
    assert steps["quality"]["failed"] == 0, steps["quality"]["failures"]


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs_top_to_bottom_after_the_demo(name: str, demo_lake, monkeypatch: pytest.MonkeyPatch) -> None:
    env, _, _ = demo_lake
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

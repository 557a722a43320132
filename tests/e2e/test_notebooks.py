"""Execute every analyst notebook top to bottom (nbclient) against a demo lake built by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.core.lake import Lake
from pipelines.ops.jobs import error_tail

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NEEDS = {
    "billing_revenue.ipynb": ["gold/billing/rated_usage", "gold/billing/invoices", "gold/billing/invoice_lines",
                              "gold/billing/adjustments", "reference/tariff_allowances"],
    "churn_risk.ipynb": ["gold/churn/features_daily", "gold/churn/scores", "silver/subscribers"],
    "network_kpis.ipynb": ["gold/network/cell_kpi_1m", "gold/network/alerts"],
    "order_to_activation.ipynb": ["gold/oss/orders", "gold/oss/order_transitions", "gold/oss/jeopardy"],
}
CYCLE = "2026-10"  # the month of [simulate] start in telcolake.toml
# Steps run after `telcolake demo` only for tables it did not produce (the demo grows to cover them).
FOLLOW_UPS = [
    ("gold/network/cell_kpi_1m", [["stream", "--until-caught-up", "--json"]]),
    ("gold/billing/invoices", [["catalog", "load", "--json"], ["bill-run", "--cycle", CYCLE, "--early", "--json"]]),
    ("gold/oss/orders", [["orders", "simulate", "--fulfil", "--json"]]),
]


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
def demo_lake(tmp_path_factory: pytest.TempPathFactory, kafka: str) -> tuple[dict[str, str], dict[str, str]]:
    """(environment for the notebooks, failed step -> error tail) for a demo lake of 300 subscribers x 3 days.

    ``TELCOLAKE_NOTEBOOK_LAKE`` names an existing lake to use instead of building one.
    """
    existing = os.environ.get("TELCOLAKE_NOTEBOOK_LAKE")
    if existing:
        return {"TELCOLAKE_LAKE": existing}, {}
    tmp = tmp_path_factory.mktemp("notebook_lake")
    env = {**os.environ, "TELCOLAKE_LAKE": str(tmp / "lake"), "TELCOLAKE_STATE_DIR": str(tmp / "state"),
           "TELCOLAKE_KAFKA_BOOTSTRAP": kafka, "TELCOLAKE_CONFIG": str(_config(tmp))}
    failures: dict[str, str] = {}

    def cli(args: list[str]) -> None:
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            failures[" ".join(args)] = error_tail(proc.stderr.strip() or proc.stdout.strip())[-300:]

    cli(["demo", "--subscribers", "300", "--days", "3"])
    lake = Lake(env["TELCOLAKE_LAKE"])
    for table, steps in FOLLOW_UPS:
        if not lake.exists(table):
            for args in steps:
                cli(args)
    return {k: env[k] for k in ("TELCOLAKE_LAKE", "TELCOLAKE_STATE_DIR", "TELCOLAKE_CONFIG")}, failures


@pytest.fixture(scope="module")
def churn_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str]]:
    """A lake with enough history for the churn model: 300 subscribers x 100 days landed through
    the real landing code (no Kafka: months of KPI samples would dominate), features, model, scores."""
    from datetime import date, timedelta

    from pipelines.churn.features import build_features
    from pipelines.churn.model import train
    from pipelines.churn.scoring import score
    from pipelines.core.config import load_settings
    from pipelines.simulate import SimConfig
    from tests.unit.churn.simulated import land

    tmp = tmp_path_factory.mktemp("churn_lake")
    env = {"TELCOLAKE_LAKE": str(tmp / "lake"), "TELCOLAKE_STATE_DIR": str(tmp / "state"), "TELCOLAKE_CONFIG": str(REPO / "telcolake.toml")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        settings = load_settings()
        start = date(2026, 6, 1)
        land(settings, SimConfig(subscribers=300, days=100, seed=5, churn_rate=0.2, start=start, kpi_interval_s=3600))
        last = start + timedelta(days=75)
        build_features(settings, start + timedelta(days=35), last)
        train(settings)
        score(settings, last)
    return env, {}


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_notebook_runs_top_to_bottom(name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    env, failures = request.getfixturevalue("churn_lake" if name == "churn_risk.ipynb" else "demo_lake")
    lake = Lake(env["TELCOLAKE_LAKE"])
    missing = [t for t in NEEDS[name] if not lake.exists(t)]
    if missing:
        why = "; ".join(f"`telcolake {k}` failed: {v.splitlines()[-1] if v else ''}" for k, v in failures.items())
        pytest.skip(f"{name}: table(s) {', '.join(missing)} missing from the demo lake" + (f" ({why})" if why else ""))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    charts = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(charts) >= 3, f"{name} drew {len(charts)} charts"
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert f"lake: {env['TELCOLAKE_LAKE']}" in text

"""Every job shipped in telcolake.toml succeeds on a small demo-like lake, run as the scheduler runs it."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from pipelines.core.contracts import CONTRACTS
from pipelines.core.lake import Lake
from pipelines.ops.jobgraph import order
from pipelines.ops.jobs import Recorder, history, load_jobs, run_job


@pytest.mark.slow
def test_each_shipped_job_succeeds_on_a_demo_lake(env, kafka, tmp_path, monkeypatch):
    from pipelines.billing.reference import load_catalog
    from pipelines.sharing.registry import init_secrets
    from pipelines.simulate import SimConfig, produce, simulate

    monkeypatch.setenv("TELCOLAKE_SECRETS_FILE", str(tmp_path / "secrets.toml"))
    init_secrets(env)
    load_catalog(env, None)
    result = simulate(SimConfig.from_settings(env, subscribers=150, days=2))
    produce(result, kafka, {t: env.topic(t) for t in CONTRACTS})

    lake = Lake.from_settings(env)
    recorder = Recorder(lake)
    jobs = load_jobs(env)
    assert set(jobs) == {"ingest", "streams", "bill_run", "churn_features", "quality", "partner_publish", "maintenance"}
    # the day after the simulated October closes: bill-run --cycle 2026-10, features --as-of 2026-11-03
    when = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)
    outcomes = {}
    for name in order(jobs):
        job = dataclasses.replace(jobs[name], retries=0)
        record = run_job(env, job, scheduled_for=when, trigger="manual", recorder=recorder)
        outcomes[name] = (record["status"], record["error"])
    assert {n: s for n, (s, _) in outcomes.items()} == dict.fromkeys(jobs, "ok"), outcomes
    changed = {r["job"]: json.loads(r["output_versions"]) for r in history(lake, limit=100)}
    assert "bronze/usage.events" in changed["ingest"] and "silver/usage" in changed["ingest"]
    assert "gold/network/cell_kpi_1m" in changed["streams"]
    assert "gold/billing/invoices" in changed["bill_run"] and "gold/churn/features_daily" in changed["churn_features"]
    assert "ops/quality_results" in changed["quality"]
    assert any(t.startswith("shares/") for t in changed["partner_publish"])

"""The demo end to end at a reduced size: every step runs and its numbers reconcile with the tables."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from rich.console import Console

from pipelines.core.duck import connect, query
from pipelines.core.lake import Lake
from pipelines.ops.demo import STEPS, run_demo


@pytest.mark.slow
def test_demo_runs_every_step_and_its_summary_reconciles(env, tmp_path, monkeypatch):
    monkeypatch.setenv("TELCOLAKE_SECRETS_FILE", str(tmp_path / "secrets.toml"))
    out = io.StringIO()
    run = run_demo(env, Console(file=out, width=200), quick=True, subscribers=150, days=2)
    assert list(run.results)[: len(STEPS)] == [name for name, _ in STEPS]
    lake = Lake.from_settings(env)
    r = run.results
    summary = r["summary"]

    # ingest: everything produced landed in bronze or quarantine; planted defects are accounted for
    planted = r["simulate"]["planted"]
    bronze = sum(lake.dataset(f"bronze/{t}").count_rows() for t in ("usage.events", "network.events", "bss.events"))
    quarantined = sum(lake.dataset(f"quarantine/{t}").count_rows() for t in ("usage.events", "network.events", "bss.events"))
    assert bronze + quarantined == r["simulate"]["produced"] == r["ingest"]["landed"] + r["ingest"]["quarantined"]
    assert quarantined == planted["malformed"]
    assert r["ingest"]["duplicates_removed"] == planted["duplicates"] == lake.dataset("silver/usage_duplicates").count_rows()
    con = connect(lake, {"bronze": "bronze/usage.events", "silver": "silver/usage", "rated": "gold/billing/rated_usage",
                         "unrated": "gold/billing/unrated", "invoices": "gold/billing/invoices"})
    distinct = query(con, "select count(distinct record_id) as n from bronze")["n"][0].as_py()
    assert summary["rows"]["silver/usage"] == distinct

    # billing: unique usage = rated + unrated; the summary's invoice totals are the table's
    assert r["billing"]["rated"] + r["billing"]["unrated"] == distinct
    totals = query(con, "select count(*) as n, sum(amount_incl_tax) as total from invoices").to_pylist()[0]
    assert summary["invoices"][0]["invoices"] == totals["n"] == r["billing"]["invoices"]
    assert Decimal(summary["invoices"][0]["incl_tax"]) == totals["total"] == Decimal(r["billing"]["invoiced_incl_tax"])

    # churn: one feature row per subscriber active at each as-of date; two days cannot label, so no model
    assert r["churn"]["as_of_dates"] == 2 and r["churn"]["feature_rows"] == summary["rows"]["gold/churn/features_daily"] > 0
    assert r["churn"]["model"] == "not trained" and "labelled as-of dates (0)" in r["churn"]["why_no_model"]
    assert "gold/churn/scores" not in summary["rows"] and summary["top_churn_risk"] is None

    # streams, quality, shares
    assert summary["rows"]["gold/network/cell_kpi_1m"] > 0
    assert r["quality"]["failed"] == 0, r["quality"]["failures"]
    assert r["publish"]["refused"] == 0
    assert r["read share"]["rows"] == lake.dataset(f"shares/{r['read share']['partner']}/{r['read share']['read'].rsplit('.', 1)[1]}").count_rows()
    printed = out.getvalue()
    assert "invoices" in printed and "next:" in printed and "no model or scores" in printed

    # fulfilment: every simulated order ended as planted; the figures are printed
    f, planted = r["fulfilment"], r["fulfilment"]["planted"]
    assert (f["completed"], f["failed"], f["held"], f["cancelled"]) == (
        planted["expect_completed"], planted["expect_failed"], planted["expect_held"], planted["expect_cancelled"])
    assert f["completed"] + f["failed"] + f["held"] + f["cancelled"] == f["orders"] == summary["rows"]["gold/oss/orders"]
    assert f["jeopardy_alerts"] == planted["expect_jeopardy"] and f["lead_time_p95_s"] >= f["lead_time_p50_s"] > 0
    assert "fulfilment" in printed and "lead time p50" in printed
    print(f"fulfilment step: {run.seconds['fulfilment']:.1f} s for {f['orders']} orders")

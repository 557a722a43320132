"""The billing quality suites (quality/billing.py) on a real bill run; skipped until quality.core exists."""

from __future__ import annotations

from decimal import Decimal as D

import pyarrow as pa
import pytest

from pipelines.billing.reference import load_catalog
from pipelines.billing.run import INVOICES, bill_run
from pipelines.core.lake import Lake
from tests.billing_data import TEST_CATALOG, interval, ts, usage, write_subscribers, write_usage

pytest.importorskip("quality.core", reason="quality/core.py (the quality engineer's) is not there yet")
from quality import billing as suites  # noqa: E402


@pytest.fixture
def billed(local_settings, tmp_path) -> Lake:
    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG)
    load_catalog(local_settings, path)
    lake = Lake.from_settings(local_settings)
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")])
    write_usage(lake, [usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=700, called_number="4930111"),
                       usage("SUB8", "sms", "2026-10-05T10:00:00", called_number="4930111")])
    bill_run(local_settings, "2026-10", now=ts("2027-01-01T00:00:00"))
    return lake


def test_balances_hold_after_a_bill_run_and_break_when_an_invoice_is_wrong(billed):
    balance = suites.usage_balance(billed, {})
    assert balance.to_pylist() == [{"cycle": "2026-10", "diff_unaccounted": 0, "count_in_both": 0}]
    assert set(suites.invoice_balance(billed, {})["diff_total"].to_pylist()) == {0}
    bad = billed.read(INVOICES).to_pylist()[0] | {"bill_no": "INV-BAD", "amount_incl_tax": D("1.0000")}
    billed.write(INVOICES, pa.Table.from_pylist([bad], schema=billed.read(INVOICES).schema))
    diffs = {r["bill_no"]: r["diff_total"] for r in suites.invoice_balance(billed, {}).to_pylist()}
    assert diffs["INV-BAD"] != 0 and diffs["INV-202610-ACC1"] == 0
    assert {s.table for s in suites.SUITES} >= {"gold/billing/rated_usage", INVOICES}
    assert all(s.expectations() for s in suites.SUITES)  # every expectation builds with GE 1.x


def test_the_gate_passes_on_a_clean_bill_run_and_fails_on_a_wrong_invoice(billed, local_settings):
    runner = pytest.importorskip("quality.runner")
    tables = ["gold/billing/rated_usage", "gold/billing/unrated", INVOICES, "gold/billing/invoice_lines"]
    result = runner.run_gate(local_settings, tables, raise_on_failure=False)
    assert result.ok, result.failures
    assert set(tables) <= set(result.versions)
    bad = billed.read(INVOICES).to_pylist()[0] | {"bill_no": "INV-BAD", "amount_incl_tax": D("1.0000")}
    billed.write(INVOICES, pa.Table.from_pylist([bad], schema=billed.read(INVOICES).schema))
    result = runner.run_gate(local_settings, [INVOICES], raise_on_failure=False)
    assert not result.ok and any("invoice" in f for f in result.failures), result.failures

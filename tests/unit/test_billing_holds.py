"""One bad account never blocks a bill run: it is held, the rest is invoiced, and it is billed once later."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest

from pipelines.billing.reference import load_catalog
from pipelines.billing.run import bill_run, quality_gate, rerate
from pipelines.core.errors import ConfigError, QualityGateFailed
from tests.billing_data import (
    CORRECTION,
    TEST_CATALOG,
    billed,
    bss,
    interval,
    load_test_catalog,
    ts,
    usage,
    write_bss,
    write_subscribers,
    write_usage,
)

NOW = ts("2027-06-01T00:00:00")
SUB1 = interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")


def call(subscriber_id, at, seconds, number="4930111"):
    return usage(subscriber_id, "voice", at, duration_s=seconds, called_number=number)


def test_a_held_account_is_billed_once_by_the_run_that_finds_it_fixed(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path)
    # SUB2 (ACC2) is activated on plus on Oct 10 in Switzerland, a country the catalog has no VAT for
    write_subscribers(lake, [SUB1, interval("SUB2", "ACC2", "plus", "2026-10-10T00:00:00", country="CH")])
    write_bss(lake, [bss("E2", "SUB2", "ACC2", "activated", "2026-10-10T00:00:00", plan_id="plus")])
    held_call = call("SUB2", "2026-10-12T10:00:00", 120)
    write_usage(lake, [call("SUB1", "2026-10-05T10:00:00", 60), held_call])
    october = bill_run(local_settings, "2026-10", now=NOW)
    out = billed(lake, "2026-10")
    assert (october.invoices, october.held_accounts) == (1, 1) and set(out["invoices"]) == {"ACC1"}
    held = out["held"]["ACC2"]
    # waiting: 1 usage record; 2 charges (the plan fee and the connection fee)
    assert (held["reason"], held["count_records"], held["count_charges"]) == ("no_vat_rate", 1, 2)
    assert held["detail"] == "no_vat_rate: country CH has no rate in [vat] of tariff version 1"
    assert held_call["record_id"] not in out["rated"] and not lake.read("gold/billing/one_off_charges").num_rows

    # the account's country is corrected; November bills October's charges as late lines
    write_subscribers(lake, [SUB1, interval("SUB2", "ACC2", "plus", "2026-10-10T00:00:00")])
    november = bill_run(local_settings, "2026-11", now=NOW)
    nov = billed(lake, "2026-11")
    assert november.held_accounts == 0 and not nov["held"]
    lines = {k[1]: (v["amount"], v["description"], v["for_cycle"]) for k, v in nov["lines"].items() if k[0] == "ACC2"}
    assert lines == {
        "recurring:SUB2:plus": (D("19.99"), "Plus (30/30 days)", None),
        # Oct 10-31 = 22 days: 19.99 x 22/31 = 14.1865 -> 14.19
        "recurring:SUB2:plus:2026-10": (D("14.19"), "Plus (22/31 days, late for 2026-10)", "2026-10"),
        "one_off:E2": (D("25.00"), "Connection fee (activated 2026-10-10, late for 2026-10)", "2026-10"),
        # 120 s on plus (no allowance): 0.05 + 60 s x 0.10/60 + 60 s x 0.10/60 = 0.25
        "adjustment:LATE-2026-11-ACC2-2026-10-voice": (D("0.25"), "Late usage voice for 2026-10", "2026-10"),
        # 19.99 + 14.19 + 25.00 + 0.25 = 59.43; VAT 19 % = 11.2917 -> 11.29
        "tax": (D("11.29"), "VAT DE 19.00%", None),
    }
    assert nov["invoices"]["ACC2"]["amount_incl_tax"] == D("70.72")
    assert nov["rated"][held_call["record_id"]]["is_late"] and nov["rated"][held_call["record_id"]]["cycle"] == "2026-10"

    # December: nothing of October again
    bill_run(local_settings, "2026-12", now=NOW)
    dec = billed(lake, "2026-12")
    assert {k[1] for k in dec["lines"] if k[0] == "ACC2"} == {"recurring:SUB2:plus", "tax"}
    assert [r["event_id"] for r in lake.read("gold/billing/one_off_charges").to_pylist()] == ["E2"]


@pytest.mark.parametrize(
    ("subscribers", "reason", "detail"),
    [
        ([interval("SUB3", "ACC3", "lite", "2026-09-01T00:00:00"), interval("SUB3", "ACC3", "plus", "2026-10-01T00:00:00")],
         "overlapping_intervals", "overlapping_intervals: SUB3 has intervals from 2026-09-01T00:00 and 2026-10-01T00:00 at once"),
        ([interval("SUB3", "ACC3", "lite", "2026-09-01T00:00:00"), interval("SUB4", "ACC3", "lite", "2026-09-01T00:00:00", country="AT")],
         "conflicting_country", "conflicting_country: subscribers in AT, DE"),
        ([interval("SUB3", "ACC3", "gold", "2026-09-01T00:00:00")],
         "unknown_plan", "unknown_plan: SUB3 is on plan gold, which tariff version 1 does not have"),
    ],
    ids=["overlapping_intervals", "conflicting_country", "unknown_plan"],
)
def test_each_per_account_problem_holds_only_that_account(local_settings, tmp_path, subscribers, reason, detail):
    lake = load_test_catalog(local_settings, tmp_path)
    write_subscribers(lake, [SUB1, *subscribers])
    write_usage(lake, [call("SUB1", "2026-10-05T10:00:00", 60), call("SUB3", "2026-10-06T10:00:00", 60)])
    result = bill_run(local_settings, "2026-10", now=NOW)
    out = billed(lake)
    assert set(out["invoices"]) == {"ACC1"} and result.held_accounts == 1
    assert (out["held"]["ACC3"]["reason"], out["held"]["ACC3"]["detail"]) == (reason, detail)
    assert len(out["rated"]) == 1 and not out["unrated"]  # SUB3's call waits


def test_the_gate_reports_held_accounts_and_fails_only_above_the_configured_share(local_settings, tmp_path):
    pytest.importorskip("quality.runner")
    lake = load_test_catalog(local_settings, tmp_path)
    write_subscribers(lake, [SUB1, interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00", country="CH")])
    write_usage(lake, [call("SUB1", "2026-10-05T10:00:00", 60), call("SUB2", "2026-10-06T10:00:00", 60)])
    gate = quality_gate()
    # 1 of 2 accounts held = 50 %, above the default 1 %: the cycle stays open
    with pytest.raises(QualityGateFailed, match="billing.held_accounts"):
        bill_run(local_settings, "2026-10", now=NOW, gate=gate)
    assert not lake.exists("gold/billing/bill_runs")
    relaxed = dataclasses.replace(local_settings, raw={**local_settings.raw, "billing": {"max_held_share": 0.5}})
    result = bill_run(relaxed, "2026-10", now=NOW, gate=gate)
    assert (result.quality_gate, result.held_accounts, result.invoices) == ("passed", 1, 1)
    rows = [r for r in lake.read("ops/quality_results").to_pylist() if r["suite"] == "billing.held_accounts" and r["success"]]
    assert {r["observed_value"] for r in rows} >= {"1", "0.5"}  # the held count and share are on record
    bad = dataclasses.replace(local_settings, raw={**local_settings.raw, "billing": {"max_held_share": 2}})
    with pytest.raises(ConfigError, match=r"billing\.max_held_share = 2: expected a finite number in \[0, 1\]"):
        bill_run(bad, "2026-11", now=NOW)


def test_a_rerate_credit_waits_for_a_held_accounts_next_invoice(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path)
    path = tmp_path / "catalog.toml"
    write_subscribers(lake, [SUB1, interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")])
    write_usage(lake, [call("SUB2", "2026-10-05T10:00:00", 300)])
    bill_run(local_settings, "2026-10", now=NOW)
    path.write_text(TEST_CATALOG + CORRECTION)
    load_catalog(local_settings, path)
    # 300 s at 0.10/min: 0.05 + 0.10 + 240 s x 0.10/60 = 0.55; at 0.08: 0.05 + 0.08 + 0.32 = 0.45 -> credit -0.10
    assert rerate(local_settings, "2026-10").net_amount == D("-0.10")
    write_subscribers(lake, [SUB1, interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00", country="CH")])
    bill_run(local_settings, "2026-11", now=NOW)  # ACC2 held: the credit is not lost, it waits
    assert "ACC2" in billed(lake, "2026-11")["held"]
    write_subscribers(lake, [SUB1, interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")])
    bill_run(local_settings, "2026-12", now=NOW)
    dec = billed(lake, "2026-12")["lines"]
    assert dec[("ACC2", "adjustment:rerate-2026-10-1-ACC2-voice")]["amount"] == D("-0.10")
    # ...and November's fee, owed since the hold, arrives with it
    assert dec[("ACC2", "recurring:SUB2:plus:2026-11")]["amount"] == D("19.99")
    bill_run(local_settings, "2027-01", now=NOW)
    assert not [k for k in billed(lake, "2027-01")["lines"] if k[1].startswith("adjustment:")]

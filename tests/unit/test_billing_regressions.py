"""Three bugs an independent rater found on small crafted lakes, each as a hand-worked scenario."""

from __future__ import annotations

from decimal import Decimal as D

from pipelines.billing.catalog import parse_catalog
from pipelines.billing.run import bill_run
from pipelines.core.lake import Lake
from pipelines.ingest.silver import refresh_subscribers
from tests import billing_reference as ref
from tests.billing_data import (
    billed,
    bss,
    catalog_with,
    interval,
    load_test_catalog,
    ts,
    usage,
    write_bss,
    write_subscribers,
    write_usage,
)

NOW = ts("2027-06-01T00:00:00")

# voice_eu and sms get a minimum charge of 0.30 and no max_cost; version 2 (from Oct 15) adds a
# minimum of 0.20 to voice_mobile, which has no max_cost either.
MINIMUMS = catalog_with(
    ('price = "0.15"\nrate_unit = 60\nincrement = 1\nrounding = "half_up"', 'price = "0.15"\nrate_unit = 60\nincrement = 1\nmin_charge = "0.30"\nrounding = "half_up"'),
    ('price = "0.09"\nrate_unit = 1', 'price = "0.09"\nmin_charge = "0.30"\nrate_unit = 1'),
    extra='''
[[versions]]
version = 2
valid_from = "2026-10-15T00:00:00Z"
description = "a minimum charge on mobile calls"
[versions.changes.rates.voice_mobile]
min_charge = "0.20"
''',
)


def test_min_charge_applies_to_rates_without_max_cost(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path, MINIMUMS)
    subscribers = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")]
    write_subscribers(lake, subscribers)
    eu10 = usage("SUB2", "voice", "2026-10-05T10:00:00", duration_s=10, called_number="3310000")
    sms = usage("SUB2", "sms", "2026-10-05T11:00:00", called_number="4930111")
    mobile_before = usage("SUB2", "voice", "2026-10-10T10:00:00", duration_s=10, called_number="4915000")
    mobile_after = usage("SUB2", "voice", "2026-10-20T10:00:00", duration_s=10, called_number="4915001")
    rows = [eu10, sms, mobile_before, mobile_after]
    write_usage(lake, rows)
    bill_run(local_settings, "2026-10", now=NOW)
    out = billed(lake)
    charge = {k: out["rated"][r["record_id"]]["charge"] for k, r in locals().items() if isinstance(r, dict) and "record_id" in r}
    # voice_eu: 10 s x 0.15/60 = 0.025 -> half-up 0.03, below the minimum 0.30 -> 0.30
    assert charge["eu10"] == D("0.30")
    # sms: 1 x 0.09 = 0.09 -> minimum 0.30
    assert charge["sms"] == D("0.30")
    # voice_mobile: 10 s x 0.15/60 = 0.025 -> up 0.03; from Oct 15 (version 2) its minimum 0.20 applies
    assert (charge["mobile_before"], charge["mobile_after"]) == (D("0.03"), D("0.20"))
    assert {r["record_id"]: r["tariff_version"] for r in out["rated"].values()}[mobile_after["record_id"]] == 2
    # plus 19.99 + usage 0.30 + 0.30 + 0.03 + 0.20 = 0.83 -> 20.82; VAT 19 % = 3.9558 -> 3.96
    inv = out["invoices"]["ACC2"]
    assert (inv["amount_excl_tax"], inv["tax"], inv["amount_incl_tax"]) == (D("20.82"), D("3.96"), D("24.78"))
    expected, _ = ref.rate_usage(parse_catalog(MINIMUMS), subscribers, rows)
    assert {k: v.charge for k, v in expected.items()} == {k: r["charge"] for k, r in out["rated"].items()}


def test_usage_before_the_first_billed_cycle_is_history_not_late_usage(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path)
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-08-01T00:00:00")])
    september = usage("SUB1", "voice", "2026-09-20T10:00:00", duration_s=900, called_number="4930111")
    october = usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=700, called_number="4930111")
    write_usage(lake, [september, october])
    first = bill_run(local_settings, "2026-10", now=NOW)
    out = billed(lake)
    # billing starts with October: the September call is neither rated nor unrated, and no
    # "Late usage voice for 2026-09" line appears on the first invoice
    assert set(out["rated"]) == {october["record_id"]} and not out["unrated"] and first.late == 0
    assert not [k for k in out["lines"] if k[1].startswith("adjustment:")]
    # October: 700 s, 600 s included, 100 s charged: 0.05 + 60 s x 0.10/60 + 40 s x 0.10/60 = 0.2167;
    # 9.99 + 0.22 = 10.21
    assert out["invoices"]["ACC1"]["amount_excl_tax"] == D("10.21")
    # a November run still does not reach back before the first billed cycle
    bill_run(local_settings, "2026-11", now=NOW)
    assert september["record_id"] not in billed(lake)["rated"]


def test_a_lifecycle_event_before_the_activation_starts_no_interval(local_settings):
    lake = Lake.from_settings(local_settings)
    attrs = {"country": "DE", "currency": "EUR", "msisdn": "491510000001"}
    # SUB1's plan change (Oct 12) reaches Kafka on Oct 12, its activation (Oct 3) only on Oct 14;
    # SUB3 has a plan change dated before its own activation
    write_bss(lake, [
        bss("E1", "SUB1", "ACC1", "plan_changed", "2026-10-12T08:00:00", plan_id="plus", offset=1),
        bss("E7", "SUB3", "ACC3", "activated", "2026-10-02T00:00:00", plan_id="lite", attributes=attrs, offset=2),
        bss("E8", "SUB3", "ACC3", "plan_changed", "2026-09-20T00:00:00", plan_id="plus", offset=3),
    ])
    refresh_subscribers(local_settings)
    rows = lake.read("silver/subscribers").to_pylist()
    # no interval without an activation: SUB1 waits; SUB3's state starts at its activation
    assert [(r["subscriber_id"], r["plan_id"], r["valid_from"], r["country"]) for r in rows] == [
        ("SUB3", "lite", ts("2026-10-02T00:00:00"), "DE")]
    write_bss(lake, [bss("E0", "SUB1", "ACC1", "activated", "2026-10-03T09:00:00", plan_id="lite", attributes=attrs,
                         arrived_at="2026-10-14T00:00:00", offset=4)])
    refresh_subscribers(local_settings)
    sub1 = sorted((r for r in lake.read("silver/subscribers").to_pylist() if r["subscriber_id"] == "SUB1"), key=lambda r: r["valid_from"])
    assert [(r["plan_id"], r["valid_from"], r["valid_to"], r["country"], r["activated_at"]) for r in sub1] == [
        ("lite", ts("2026-10-03T09:00:00"), ts("2026-10-12T08:00:00"), "DE", ts("2026-10-03T09:00:00")),
        ("plus", ts("2026-10-12T08:00:00"), None, "DE", ts("2026-10-03T09:00:00")),
    ]


def test_an_interval_without_country_holds_its_account_only(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path)
    # what silver wrote before the fix for a lone plan_changed: active, no country, no activation
    broken = interval("SUB9", "ACC9", "plus", "2026-10-12T08:00:00", country=None) | {"activated_at": None}
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00"), broken])
    call = usage("SUB9", "voice", "2026-10-13T10:00:00", duration_s=60, called_number="4930111")
    write_usage(lake, [call, usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=60, called_number="4930111")])
    result = bill_run(local_settings, "2026-10", now=NOW)
    out = billed(lake)
    # ACC1 is invoiced (9.99, its call inside the allowance) and the cycle closes; ACC9 is held
    assert set(out["invoices"]) == {"ACC1"} and out["invoices"]["ACC1"]["amount_excl_tax"] == D("9.99")
    assert (result.held_accounts, result.invoices) == (1, 1) and lake.exists("gold/billing/bill_runs")
    held = out["held"]["ACC9"]
    assert (held["reason"], held["count_records"], held["count_charges"]) == ("missing_state", 1, 1)
    assert held["detail"] == "missing_state: SUB9 interval from 2026-10-12T08:00 has no country"
    assert call["record_id"] not in out["rated"] and call["record_id"] not in out["unrated"]


def test_cli_errors_print_bracketed_words(local_settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipelines.cli import app

    config = tmp_path / "telcolake.toml"
    config.write_text('[billing]\nmemory_limit = "lots"\n')
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(config))
    lake = load_test_catalog(local_settings, tmp_path)
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")])
    write_usage(lake, [usage("SUB1", "sms", "2026-10-05T10:00:00", called_number="4930111")])
    out = CliRunner().invoke(app, ["bill-run", "--cycle", "2026-10", "--no-gate"])
    assert out.exit_code == 2  # refused when the config loads, before any input is read
    assert "config error: billing.memory_limit = 'lots': expected a memory size" in " ".join(out.output.split())

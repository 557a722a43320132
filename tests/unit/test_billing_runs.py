"""Bill runs over time: idempotence, a crashed run, late usage, rerates, refusals."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from pipelines.billing.reference import load_catalog
from pipelines.billing.run import INVOICE_LINES, INVOICES, ONE_OFF, RATED, UNRATED, bill_run, rerate
from pipelines.core.errors import BillingError
from pipelines.core.lake import Lake
from tests.billing_data import (
    CORRECTION,
    TEST_CATALOG,
    bss,
    interval,
    ts,
    usage,
    write_bss,
    write_subscribers,
    write_usage,
)

NOW = ts("2027-06-01T00:00:00")


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG)
    return path


@pytest.fixture
def lake(local_settings, catalog) -> Lake:
    load_catalog(local_settings, catalog)
    lake = Lake.from_settings(local_settings)
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")])
    return lake


def rows(lake, name, **where):
    out = [r for r in lake.read(name).to_pylist() if all(r[k] == v for k, v in where.items())]
    return sorted(out, key=lambda r: tuple(str(v) for v in r.values()))


def call(at, seconds, number="4930111", **kw):
    return usage("SUB1", "voice", at, duration_s=seconds, called_number=number, **kw)


def test_bill_run_is_idempotent_and_a_crashed_run_completes(lake, local_settings):
    write_usage(lake, [call("2026-10-05T10:00:00", 480), call("2026-10-06T10:00:00", 300), usage("SUB7", "sms", "2026-10-06T10:00:00")])

    def crash(_settings, _tables):
        raise RuntimeError("gate down")

    with pytest.raises(RuntimeError):  # outputs written, cycle not closed
        bill_run(local_settings, "2026-10", now=NOW, gate=crash)
    first = {t: rows(lake, t) for t in (RATED, UNRATED, INVOICES, INVOICE_LINES)}
    done = bill_run(local_settings, "2026-10", now=NOW, gate=lambda s, t: None)
    assert not done.already_closed and done.quality_gate == "passed"
    after = {t: rows(lake, t) for t in first}
    strip = lambda rs: [{k: v for k, v in r.items() if k != "closed_at"} for r in rs]  # noqa: E731
    assert strip(after[INVOICES]) == strip(first[INVOICES]) and after[INVOICE_LINES] == first[INVOICE_LINES]
    assert after[RATED] == first[RATED] and after[UNRATED] == first[UNRATED]
    versions = {t: lake.version(t) for t in first}
    again = bill_run(local_settings, "2026-10", now=NOW)
    assert again.already_closed and again.invoices == 1 and again.amount_incl_tax == done.amount_incl_tax
    assert {t: lake.version(t) for t in first} == versions  # a closed cycle is never rewritten
    assert [r["bill_no"] for r in rows(lake, INVOICES)] == ["INV-202610-ACC1"]
    assert done.input_versions["silver/usage"] == lake.version("silver/usage")


def test_late_usage_is_billed_once_as_an_adjustment_on_the_next_cycle(lake, local_settings):
    write_usage(lake, [call("2026-10-05T10:00:00", 480)])
    bill_run(local_settings, "2026-10", now=NOW)
    october = rows(lake, INVOICES, cycle="2026-10")
    # a record for Oct 20 arrives after October was billed, plus normal November usage
    late = call("2026-10-20T10:00:00", 300)
    write_usage(lake, [late, call("2026-11-03T10:00:00", 60)])
    nov = bill_run(local_settings, "2026-11", now=NOW)
    assert nov.late == 1 and rows(lake, INVOICES, cycle="2026-10") == october
    r = rows(lake, RATED, record_id=late["record_id"])[0]
    # rated in its own cycle and tariff: 120 s of October's allowance were left -> 180 s charged = 0.35
    assert (r["cycle"], r["billed_cycle"], r["is_late"], r["included_base"], r["charge"]) == ("2026-10", "2026-11", True, 120, D("0.35"))
    lines = {x["line_id"]: x for x in rows(lake, INVOICE_LINES, cycle="2026-11")}
    adj = lines["adjustment:LATE-2026-11-ACC1-2026-10-voice"]
    assert (adj["amount"], adj["for_cycle"], adj["line_type"]) == (D("0.35"), "2026-10", "adjustment")
    # November: 9.99 fee + 0 usage (60 s inside November's fresh allowance) + 0.35 adjustment = 10.34
    inv = rows(lake, INVOICES, cycle="2026-11")[0]
    assert (inv["amount_excl_tax"], inv["tax"]) == (D("10.34"), D("1.96"))
    # December: nothing new; the late record is not billed twice
    bill_run(local_settings, "2026-12", now=NOW)
    dec_lines = rows(lake, INVOICE_LINES, cycle="2026-12")
    assert not [x for x in dec_lines if x["line_type"] == "adjustment"]
    assert len(rows(lake, RATED, record_id=late["record_id"])) == 1


def test_one_off_charges_are_idempotent_across_a_crashed_run(lake, local_settings):
    # SUB2 is activated on plus on Oct 12 09:30: connection fee 25.00 + plus 19.99 x 20/31 = 12.8968 -> 12.90
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00"),
                             interval("SUB2", "ACC2", "plus", "2026-10-12T09:30:00")])
    write_bss(lake, [bss("E1", "SUB2", "ACC2", "activated", "2026-10-12T09:30:00", plan_id="plus")])
    write_usage(lake, [call("2026-10-05T10:00:00", 60)])  # inside SUB1's allowance: 0

    def crash(_settings, _tables):
        raise RuntimeError("gate down")

    with pytest.raises(RuntimeError):
        bill_run(local_settings, "2026-10", now=NOW, gate=crash)
    first = {t: rows(lake, t) for t in (ONE_OFF, INVOICES, INVOICE_LINES)}
    bill_run(local_settings, "2026-10", now=NOW)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "closed_at"} for r in rs]  # noqa: E731
    assert {t: strip(rows(lake, t)) for t in first} == {t: strip(v) for t, v in first.items()}
    assert [(r["event_id"], r["amount"]) for r in rows(lake, ONE_OFF)] == [("E1", D("25.0000"))]
    inv = rows(lake, INVOICES, billing_account_id="ACC2")[0]
    # 25.00 + 12.90 = 37.90; VAT 19% = 7.201 -> 7.20; total 45.10
    assert (inv["bill_no"], inv["amount_excl_tax"], inv["tax"], inv["amount_incl_tax"]) == ("INV-202610-ACC2", D("37.90"), D("7.20"), D("45.10"))
    lines = {x["line_id"]: x for x in rows(lake, INVOICE_LINES, billing_account_id="ACC2")}
    assert (lines["one_off:E1"]["line_type"], lines["one_off:E1"]["amount"], lines["one_off:E1"]["description"]) == (
        "one_off", D("25.00"), "Connection fee (activated 2026-10-12)")


def test_a_late_plan_change_is_charged_once_on_the_next_open_cycle(lake, local_settings):
    write_usage(lake, [call("2026-10-05T10:00:00", 60)])  # inside SUB1's allowance: 0
    bill_run(local_settings, "2026-10", now=NOW)
    assert not rows(lake, ONE_OFF)
    # SUB1's change to plus on Oct 20 reaches the lake on Nov 2, after October was closed
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00", "2026-10-20T10:00:00"),
                             interval("SUB1", "ACC1", "plus", "2026-10-20T10:00:00")])
    write_bss(lake, [bss("E9", "SUB1", "ACC1", "plan_changed", "2026-10-20T10:00:00", plan_id="plus", arrived_at="2026-11-02T08:00:00")])
    october = rows(lake, INVOICE_LINES, cycle="2026-10")
    bill_run(local_settings, "2026-11", now=NOW)
    assert rows(lake, INVOICE_LINES, cycle="2026-10") == october  # a closed cycle is never rewritten
    (charge,) = rows(lake, ONE_OFF)
    assert (charge["event_id"], charge["cycle"], charge["billed_cycle"], charge["is_late"], charge["amount"]) == (
        "E9", "2026-10", "2026-11", True, D("5.0000"))
    lines = {x["line_id"]: x for x in rows(lake, INVOICE_LINES, cycle="2026-11")}
    late = lines["one_off:E9"]
    assert (late["amount"], late["for_cycle"], late["description"]) == (D("5.00"), "2026-10", "Plan change fee (plan_changed 2026-10-20, late for 2026-10)")
    # November: plus 19.99 (30/30 days) + late plan-change fee 4.995 -> 5.00 = 24.99; VAT 4.7481 -> 4.75
    inv = rows(lake, INVOICES, cycle="2026-11")[0]
    assert (inv["amount_excl_tax"], inv["tax"], inv["amount_incl_tax"]) == (D("24.99"), D("4.75"), D("29.74"))
    # December: the late event is not billed twice
    bill_run(local_settings, "2026-12", now=NOW)
    assert not [x for x in rows(lake, INVOICE_LINES, cycle="2026-12") if x["line_type"] == "one_off"]
    assert [r["event_id"] for r in rows(lake, ONE_OFF)] == ["E9"]


def test_rerate_after_a_tariff_fix_credits_the_difference_on_the_next_invoice(lake, local_settings, catalog):
    write_usage(lake, [call("2026-10-05T10:00:00", 480), call("2026-10-06T10:00:00", 300), call("2026-10-07T10:00:00", 61)])
    bill_run(local_settings, "2026-10", now=NOW)
    # at 0.10/min: call 2 charges 180 s = 0.05 + 0.10 + 0.20 = 0.35; call 3: 0.05 + 0.10 + 1 s x 0.10/60 = 0.1517
    assert sum(r["charge"] for r in rows(lake, RATED)) == D("0.5017")
    catalog.write_text(TEST_CATALOG + CORRECTION)
    assert load_catalog(local_settings, catalog).loaded == [2]
    result = rerate(local_settings, "2026-10")
    # at 0.08/min: 0.05 + 0.08 + 0.16 = 0.29 and 0.05 + 0.08 + 0.0013 = 0.1313 -> 0.4213;
    # difference -0.0804 -> credit -0.08 on November (the next open cycle); all 3 records now
    # carry tariff version 2 (the included call's charge stays 0)
    assert (result.target_cycle, result.changed_records, result.net_amount) == ("2026-11", 3, D("-0.08"))
    assert rerate(local_settings, "2026-10").changed_records == 0  # same catalog: nothing more
    assert rows(lake, INVOICES, cycle="2026-10")[0]["amount_excl_tax"] == D("10.49")  # 9.99 + 0.50 unchanged
    bill_run(local_settings, "2026-11", now=NOW)
    lines = {x["line_id"]: x["amount"] for x in rows(lake, INVOICE_LINES, cycle="2026-11")}
    assert lines["adjustment:rerate-2026-10-1-ACC1-voice"] == D("-0.08")
    assert rows(lake, INVOICES, cycle="2026-11")[0]["amount_excl_tax"] == D("9.91")  # 9.99 - 0.08


def test_refusals(lake, local_settings, catalog):
    write_usage(lake, [call("2026-10-05T10:00:00", 60)])
    with pytest.raises(BillingError, match="has not ended yet"):
        bill_run(local_settings, "2026-10", now=ts("2026-10-20T00:00:00"))
    with pytest.raises(BillingError, match="expected YYYY-MM"):
        bill_run(local_settings, "2026-13", now=NOW)
    with pytest.raises(BillingError, match="is not closed"):
        rerate(local_settings, "2026-10")
    bill_run(local_settings, "2026-10", now=NOW)
    with pytest.raises(BillingError, match="2026-10 is already closed"):
        bill_run(local_settings, "2026-09", now=NOW)


def test_whole_run_problems_refuse_the_run(lake, local_settings, catalog):
    # per-account problems hold one account (tests/unit/test_billing_holds.py); an input the run
    # cannot read at all refuses it
    with pytest.raises(BillingError, match="input table silver/usage does not exist"):
        bill_run(local_settings, "2026-10", now=NOW)
    assert not lake.exists("gold/billing/bill_runs")


def test_cli_catalog_load_bill_run_and_rerate(local_settings, tmp_path):
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG)
    runner = CliRunner()
    loaded = runner.invoke(app, ["catalog", "load", "--file", str(path), "--json"])
    assert loaded.exit_code == 0 and json.loads(loaded.stdout)["loaded"] == [1]
    lake = Lake.from_settings(local_settings)
    write_subscribers(lake, [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")])
    write_usage(lake, [call("2026-10-05T10:00:00", 700)])
    billed = runner.invoke(app, ["bill-run", "--cycle", "2026-10", "--json"])
    assert billed.exit_code == 0, billed.output
    summary = json.loads(billed.stdout)
    # 100 s over the allowance: 0.05 + 60 s (0.10) + 40 s (0.0667) = 0.2167; 9.99 + 0.22 = 10.21
    assert (summary["rated"], summary["invoices"], summary["amount_excl_tax"]) == (1, 1, "10.2100")
    assert summary["quality_gate"] in ("passed", "skipped (quality.runner not installed)")
    bad = runner.invoke(app, ["bill-run", "--cycle", "2026-13"])
    assert bad.exit_code == 1 and "expected YYYY-MM" in bad.output
    rerated = runner.invoke(app, ["rerate", "--cycle", "2026-10", "--json"])
    assert rerated.exit_code == 0 and json.loads(rerated.stdout)["changed_records"] == 0


def test_output_columns_have_plain_types(lake, local_settings):
    write_usage(lake, [call("2026-10-05T10:00:00", 700), call("2026-10-06T10:00:00", 30, direction="mt")])
    bill_run(local_settings, "2026-10", now=NOW)
    write_usage(lake, [call("2026-10-20T10:00:00", 90)])
    bill_run(local_settings, "2026-11", now=NOW)  # writes a late-usage adjustment
    import pyarrow as pa

    for name in (RATED, UNRATED, INVOICES, INVOICE_LINES, "gold/billing/adjustments"):
        schema = lake.read(name).schema
        for f in schema:  # money is decimal(18,4); counts and quantities are int64, never decimal(38,0)
            assert not (pa.types.is_decimal(f.type) and f.type.scale == 0), (name, f)
            if pa.types.is_decimal(f.type):
                assert (f.type.precision, f.type.scale) == (18, 4), (name, f)

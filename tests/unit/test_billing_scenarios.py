"""Hand-worked rating and invoice scenarios: the expected numbers are worked out in comments."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from pipelines.billing.catalog import parse_catalog
from pipelines.billing.reference import load_catalog
from pipelines.billing.run import bill_run
from pipelines.core.lake import Lake
from tests import billing_reference as ref
from tests.billing_data import (
    TEST_CATALOG,
    bss,
    interval,
    ts,
    usage,
    write_bss,
    write_subscribers,
    write_usage,
)

CYCLE = "2026-10"


@pytest.fixture
def lake(local_settings, tmp_path) -> Lake:
    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG)
    load_catalog(local_settings, path)
    return Lake.from_settings(local_settings)


SUBSCRIBERS = [
    interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00"),
    interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00"),
    interval("SUB3", "ACC3", "plus", "2026-09-01T00:00:00"),
    # SUB4: lite, changes to plus on Oct 15 10:00
    interval("SUB4", "ACC4", "lite", "2026-09-01T00:00:00", "2026-10-15T10:00:00"),
    interval("SUB4", "ACC4", "plus", "2026-10-15T10:00:00"),
    # SUB5 (Austria): activated Oct 10 15:00, terminated Oct 20 12:00
    interval("SUB5", "ACC5", "plus", "2026-10-10T15:00:00", "2026-10-20T12:00:00", country="AT"),
    interval("SUB5", "ACC5", "plus", "2026-10-20T12:00:00", status="terminated", country="AT", activated_at="2026-10-10T15:00:00"),
]


def bill(settings, rows, events=()):
    lake = Lake.from_settings(settings)
    write_subscribers(lake, SUBSCRIBERS)
    write_usage(lake, rows)
    if events:
        write_bss(lake, list(events))
    result = bill_run(settings, CYCLE, now=ts("2027-01-01T00:00:00"))
    rated = {r["record_id"]: r for r in lake.read("gold/billing/rated_usage").to_pylist()}
    unrated = {r["record_id"]: r["reason"] for r in lake.read("gold/billing/unrated").to_pylist()}
    invoices = {r["billing_account_id"]: r for r in lake.read("gold/billing/invoices").to_pylist()}
    lines = {(r["billing_account_id"], r["line_id"]): r["amount"] for r in lake.read("gold/billing/invoice_lines").to_pylist()}
    # the independent reference rater must agree on every record and every invoice
    versions = parse_catalog(TEST_CATALOG)
    ref_rated, ref_unrated = ref.rate_usage(versions, SUBSCRIBERS, rows)
    assert {k: v.charge for k, v in ref_rated.items()} == {k: r["charge"] for k, r in rated.items()}
    assert {k: v.included for k, v in ref_rated.items()} == {k: r["included_base"] for k, r in rated.items()}
    assert ref_unrated == unrated
    ref_invoices = ref.invoices(versions, SUBSCRIBERS, ref_rated, CYCLE, events)
    assert {a: (v["excl"], v["tax"], v["incl"]) for a, v in ref_invoices.items()} == {
        a: (r["amount_excl_tax"], r["tax"], r["amount_incl_tax"]) for a, r in invoices.items()
    }
    return result, rated, unrated, invoices, lines


def test_call_crossing_the_allowance_boundary_is_split(lake, local_settings):
    a = usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=480, called_number="4930111")
    b = usage("SUB1", "voice", "2026-10-06T10:00:00", duration_s=300, called_number="4930222")
    _, rated, _, invoices, lines = bill(local_settings, [b, a])  # order of arrival does not matter
    # lite: 10 min = 600 s national allowance. A uses 480 s, all included.
    assert (rated[a["record_id"]]["included_base"], rated[a["record_id"]]["charge"]) == (480, D("0"))
    assert rated[a["record_id"]]["rating_tag"] == "included"
    # B: 120 s left -> 120 s included, 180 s charged at 60/60 then 60/1, 0.10/min + 0.05 connect:
    #   0.05 + 60 s x 0.10/60 (0.10) + 120 s x 0.10/60 (0.20) = 0.35
    rb = rated[b["record_id"]]
    assert (rb["included_base"], rb["charged_base"], rb["charge"], rb["rating_tag"]) == (120, 180, D("0.35"), "non-included")
    # invoice: 9.99 fee + 0.35 usage = 10.34; VAT 19% = 1.9646 -> 1.96; total 12.30
    inv = invoices["ACC1"]
    assert (inv["amount_excl_tax"], inv["tax"], inv["amount_incl_tax"]) == (D("10.34"), D("1.96"), D("12.30"))
    assert lines[("ACC1", "usage:voice")] == D("0.35") and lines[("ACC1", "recurring:SUB1:lite")] == D("9.99")
    assert inv["bill_no"] == "INV-202610-ACC1"


def test_increments_max_cost_and_rounding(lake, local_settings):
    mobile61 = usage("SUB2", "voice", "2026-10-05T10:00:00", duration_s=61, called_number="4915000")
    world61 = usage("SUB2", "voice", "2026-10-05T11:00:00", duration_s=61, called_number="1555000")
    world400 = usage("SUB2", "voice", "2026-10-05T12:00:00", duration_s=400, called_number="1555001")
    eu50 = usage("SUB2", "voice", "2026-10-05T13:00:00", duration_s=50, called_number="3310000")
    eu49 = usage("SUB2", "voice", "2026-10-05T14:00:00", duration_s=49, called_number="3310001")
    mobile49 = usage("SUB2", "voice", "2026-10-05T15:00:00", duration_s=49, called_number="4915001")
    _, rated, _, invoices, _ = bill(local_settings, [mobile61, world61, world400, eu50, eu49, mobile49])
    charge = {k: rated[r["record_id"]]["charge"] for k, r in locals().items() if isinstance(r, dict) and "record_id" in r}
    assert charge["mobile61"] == D("0.16")  # 60/1: 61 x 0.15/60 = 0.1525, rounding up -> 0.16
    assert charge["world61"] == D("1.20")  # 60/60: 61 s -> 120 s x 0.60/60 = 1.20
    assert charge["world400"] == D("3.00")  # 420 s x 0.60/60 = 4.20, max_cost 3.00
    assert charge["eu50"] == D("0.13")  # 50 x 0.15/60 = 0.125, half-up -> 0.13
    assert charge["eu49"] == D("0.12")  # 49 x 0.15/60 = 0.1225, half-up -> 0.12
    assert charge["mobile49"] == D("0.13")  # 0.1225, up -> 0.13
    # usage 0.16+1.20+3.00+0.13+0.12+0.13 = 4.74; + 19.99 fee = 24.73; VAT 4.6987 -> 4.70
    assert (invoices["ACC2"]["amount_excl_tax"], invoices["ACC2"]["tax"]) == (D("24.73"), D("4.70"))


def test_roaming_data_and_graduated_vs_volume_tiers(lake, local_settings):
    us = usage("SUB2", "data", "2026-10-07T09:00:00", bytes_down=25_000_001, bytes_up=50_000, visited_plmn="310-260")
    fr = usage("SUB2", "data", "2026-10-08T09:00:00", bytes_down=1_000_000, visited_plmn="208-01")
    home1 = usage("SUB3", "data", "2026-10-05T09:00:00", bytes_down=800_000_000)
    home2 = usage("SUB3", "data", "2026-10-06T09:00:00", bytes_down=700_000_000)
    vol1 = usage("SUB3", "data", "2026-10-07T09:00:00", bytes_down=60_000_000, visited_plmn="310-260")
    vol2 = usage("SUB3", "data", "2026-10-08T09:00:00", bytes_down=60_000_000, visited_plmn="310-260")
    _, rated, unrated, _, _ = bill(local_settings, [us, fr, home1, home2, vol1, vol2])
    # US session: 25,050,001 bytes -> 100 KB increments -> 25,100,000 bytes = 25.1 MB;
    # volume tiers, cycle total 25.1 MB <= 100 MB -> 2.00/MB -> 50.20
    assert (rated[us["record_id"]]["roaming_zone"], rated[us["record_id"]]["charge"]) == ("world", D("50.20"))
    assert unrated[fr["record_id"]] == "no_tariff"  # no data rate for roaming zone eu in this catalog
    # graduated: 800 MB at 0.01 = 8.00; then 200 MB at 0.01 + 500 MB at 0.005 = 2.00 + 2.50 = 4.50
    assert rated[home1["record_id"]]["charge"] == D("8.00")
    assert rated[home2["record_id"]]["charge"] == D("4.50")
    # volume: cycle total 120 MB reaches tier 2 (<= 1000 MB at 1.50): 60 x 1.50 = 90.00 each
    # (graduated would have given 120.00 and 40 x 2.00 + 20 x 1.50 = 110.00)
    assert rated[vol1["record_id"]]["charge"] == rated[vol2["record_id"]]["charge"] == D("90.00")


def test_proration_band_direction_and_unrated_reasons(lake, local_settings):
    weekend = usage("SUB2", "voice", "2026-10-03T12:00:00", duration_s=90, called_number="4930999")
    mt = usage("SUB2", "voice", "2026-10-05T12:00:00", duration_s=600, called_number="1555000", direction="mt")
    sms = usage("SUB2", "sms", "2026-10-05T12:00:00", called_number="4915123")
    unknown = usage("SUB9", "sms", "2026-10-05T12:00:00", called_number="4915123")
    early = usage("SUB5", "sms", "2026-10-09T12:00:00", called_number="4915123")
    late = usage("SUB5", "sms", "2026-10-25T12:00:00", called_number="4915123")
    nodest = usage("SUB2", "sms", "2026-10-05T13:00:00", called_number="7000")
    result, rated, unrated, invoices, lines = bill(local_settings, [weekend, mt, sms, unknown, early, late, nodest])
    # Saturday 14:00 Berlin -> weekend band: 90 s x 0.02/60 = 0.03
    assert (rated[weekend["record_id"]]["band"], rated[weekend["record_id"]]["charge"]) == ("weekend", D("0.03"))
    assert rated[mt["record_id"]]["charge"] == D("0") and sms["record_id"] in rated
    assert unrated == {unknown["record_id"]: "unknown_subscriber", early["record_id"]: "before_activation",
                       late["record_id"]: "after_termination", nodest["record_id"]: "unknown_destination"}
    assert result.rated + result.unrated == 7
    # SUB4: lite 9.99 for Oct 1-14 (14 days): 9.99 x 14/31 = 4.5116 -> 4.51;
    #       plus 19.99 for Oct 15-31 (17 days): 19.99 x 17/31 = 10.9623 -> 10.96; total 15.47
    assert (lines[("ACC4", "recurring:SUB4:lite")], lines[("ACC4", "recurring:SUB4:plus")]) == (D("4.51"), D("10.96"))
    assert (invoices["ACC4"]["amount_excl_tax"], invoices["ACC4"]["tax"], invoices["ACC4"]["amount_incl_tax"]) == (D("15.47"), D("2.94"), D("18.41"))
    # SUB5 (AT, 20% VAT): billed Oct 10-19 (activation day yes, termination day no) = 10 days:
    #   19.99 x 10/31 = 6.4484 -> 6.45; VAT 1.29; total 7.74
    assert (invoices["ACC5"]["amount_excl_tax"], invoices["ACC5"]["tax"], invoices["ACC5"]["amount_incl_tax"]) == (D("6.45"), D("1.29"), D("7.74"))


def test_one_off_charges_for_an_activation_and_a_plan_change(lake, local_settings):
    events = [
        bss("E0", "SUB1", "ACC1", "activated", "2026-09-01T00:00:00", plan_id="lite"),  # before billing started
        bss("E1", "SUB5", "ACC5", "activated", "2026-10-10T15:00:00", plan_id="plus", offset=1),
        bss("E1", "SUB5", "ACC5", "activated", "2026-10-10T15:00:00", plan_id="plus", offset=7),  # redelivered copy
        bss("E2", "SUB4", "ACC4", "plan_changed", "2026-10-15T10:00:00", plan_id="plus", offset=2),
        bss("E3", "SUB5", "ACC5", "terminated", "2026-10-20T12:00:00", offset=3),  # no one-time price for it
        bss("E4", "SUB2", "ACC2", "payment", "2026-10-05T09:00:00", offset=4),  # not a lifecycle event
    ]
    _, _, _, invoices, lines = bill(local_settings, [], events)
    one_offs = {k: v for k, v in lines.items() if k[1].startswith("one_off:")}
    assert one_offs == {("ACC5", "one_off:E1"): D("25.00"), ("ACC4", "one_off:E2"): D("5.00")}
    # ACC5 (AT, 20% VAT): SUB5 activated Oct 10 15:00 on plus, terminated Oct 20 12:00.
    #   recurring: Oct 10-19 = 10 days, 19.99 x 10/31 = 6.4484 -> 6.45
    #   connection fee 25.00 (once, though E1 was delivered twice)
    #   excl 6.45 + 25.00 = 31.45; VAT 31.45 x 0.20 = 6.29; total 37.74
    assert (invoices["ACC5"]["amount_excl_tax"], invoices["ACC5"]["tax"], invoices["ACC5"]["amount_incl_tax"]) == (D("31.45"), D("6.29"), D("37.74"))
    # ACC4: lite Oct 1-14 4.51 + plus Oct 15-31 10.96 + plan-change fee 4.995 half-up -> 5.00 = 20.47;
    #   VAT 20.47 x 0.19 = 3.8893 -> 3.89; total 24.36
    assert (invoices["ACC4"]["amount_excl_tax"], invoices["ACC4"]["tax"], invoices["ACC4"]["amount_incl_tax"]) == (D("20.47"), D("3.89"), D("24.36"))
    # ACC1's activation in September is history from before the first billed cycle: no fee
    assert invoices["ACC1"]["amount_excl_tax"] == D("9.99")
    charges = {r["event_id"]: r for r in Lake.from_settings(local_settings).read("gold/billing/one_off_charges").to_pylist()}
    assert set(charges) == {"E1", "E2"}
    e2 = charges["E2"]
    assert (e2["cycle"], e2["billed_cycle"], e2["is_late"], e2["price_id"], e2["tariff_version"]) == ("2026-10", "2026-10", False, "plan_change", 1)

"""Each rule docs/billing.md decides ("Rules at a glance"), as the hand-worked example the docs give."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

from pipelines.billing.catalog import parse_catalog
from pipelines.billing.run import bill_run
from pipelines.ingest.silver import refresh_subscribers
from tests import billing_reference as ref
from tests.billing_data import (
    TEST_CATALOG,
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
CYCLE = "2026-10"


def bill(settings, folder, subscribers, rows, *, catalog=TEST_CATALOG, events=(), cycle=CYCLE):
    """Bill ``cycle`` on a fresh lake and check the reference rater agrees on every record and invoice."""
    lake = load_test_catalog(settings, folder, catalog)
    write_subscribers(lake, subscribers)
    write_usage(lake, rows)
    if events:
        write_bss(lake, list(events))
    bill_run(settings, cycle, now=NOW)
    out = billed(lake, cycle)
    versions = parse_catalog(catalog)
    expected, expected_unrated = ref.rate_usage(versions, subscribers, rows)
    assert {k: (v.charge, v.included) for k, v in expected.items()} == {
        k: (r["charge"], r["included_base"]) for k, r in out["rated"].items()}
    assert expected_unrated == out["unrated"]
    invoices = ref.invoices(versions, subscribers, expected, cycle, events)
    assert {a: (v["excl"], v["tax"]) for a, v in invoices.items()} == {
        a: (r["amount_excl_tax"], r["tax"]) for a, r in out["invoices"].items()}
    return lake, out


def charges(out, **records):
    return {name: out["rated"][r["record_id"]]["charge"] for name, r in records.items()}


def mb(n: float) -> int:
    return int(n * 1_000_000)


def test_volume_tiers_price_at_the_cycle_total_and_late_records_at_the_new_total(local_settings, tmp_path):
    subs = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")]
    first = usage("SUB2", "data", "2026-10-07T09:00:00", bytes_down=mb(60), visited_plmn="310-260")
    lake, out = bill(local_settings, tmp_path, subs, [first])
    # data_world, volume tiers: October's total 60 MB is in the first tier (<= 100 MB at 2.00): 120.00
    assert charges(out, first=first) == {"first": D("120.00")}
    late = usage("SUB2", "data", "2026-10-20T09:00:00", bytes_down=mb(60), visited_plmn="310-260")
    write_usage(lake, [late])
    bill_run(local_settings, "2026-11", now=NOW)
    nov = billed(lake, "2026-11")
    # the late record makes October's total 120 MB: tier 2 (1.50): 60 x 1.50 = 90.00; the billed
    # record keeps its 120.00 (a rerate would reprice both at the cycle total: 90.00 each)
    assert nov["rated"][late["record_id"]]["charge"] == D("90.00")
    assert billed(lake)["rated"][first["record_id"]]["charge"] == D("120.00")


def test_a_tier_upto_is_inclusive(local_settings, tmp_path):
    subs = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00"), interval("SUB3", "ACC3", "plus", "2026-09-01T00:00:00")]
    world100 = usage("SUB2", "data", "2026-10-07T09:00:00", bytes_down=mb(100), visited_plmn="310-260")
    home1000 = usage("SUB3", "data", "2026-10-05T09:00:00", bytes_down=mb(1000))
    home1 = usage("SUB3", "data", "2026-10-06T09:00:00", bytes_down=mb(1))
    _, out = bill(local_settings, tmp_path, subs, [world100, home1000, home1])
    # volume: a cycle total of exactly upto = 100 MB is still tier 1: 100 x 2.00 = 200.00
    # graduated: the first 1000 MB are tier 1 (0.01): 10.00; the next MB is tier 2: 0.005 -> 0.0050
    assert charges(out, world100=world100, home1000=home1000, home1=home1) == {
        "world100": D("200.00"), "home1000": D("10.00"), "home1": D("0.005")}


def test_a_mobile_terminated_call_to_an_unknown_number_is_rated_at_zero(local_settings, tmp_path):
    subs = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")]
    mt = usage("SUB2", "voice", "2026-10-05T10:00:00", duration_s=60, called_number="7000", direction="mt")
    mo = usage("SUB2", "voice", "2026-10-05T11:00:00", duration_s=60, called_number="7000")
    _, out = bill(local_settings, tmp_path, subs, [mt, mo])
    r = out["rated"][mt["record_id"]]
    assert (r["charge"], r["zone"], r["rate_id"], r["included_base"]) == (D("0"), None, None, 0)
    assert out["unrated"] == {mo["record_id"]: "unknown_destination"}


def test_zero_usage_lines_are_shown_as_included(local_settings, tmp_path):
    subs = [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")]
    rows = [usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=60, called_number="4930111"),
            usage("SUB1", "voice", "2026-10-06T10:00:00", duration_s=30, called_number="4930111", direction="mt"),
            usage("SUB1", "sms", "2026-10-06T11:00:00", called_number="4930111")]
    _, out = bill(local_settings, tmp_path, subs, rows)
    voice, sms = out["lines"][("ACC1", "usage:voice")], out["lines"][("ACC1", "usage:sms")]
    # both calls are free (inside the allowance, mobile-terminated): one line, 2 records, included
    assert (voice["description"], voice["quantity"], voice["amount"]) == ("Usage: voice (included)", 2, D("0"))
    assert (sms["description"], sms["quantity"], sms["amount"]) == ("Usage: sms", 1, D("0.09"))


def test_a_plan_change_at_midnight_starts_the_new_plan_that_day(local_settings, tmp_path):
    subs = [interval("SUB4", "ACC4", "lite", "2026-09-01T00:00:00", "2026-10-15T00:00:00"),
            interval("SUB4", "ACC4", "plus", "2026-10-15T00:00:00")]
    before = usage("SUB4", "voice", "2026-10-14T23:59:59", duration_s=60, called_number="4930111")
    at = usage("SUB4", "voice", "2026-10-15T00:00:00", duration_s=60, called_number="4930111")
    _, out = bill(local_settings, tmp_path, subs, [before, at])
    # Oct 14 ends on lite (14 days: 9.99 x 14/31 = 4.5116 -> 4.51), Oct 15 on plus (17 days: 10.96);
    # lite's allowance is 600 s x 14/31 = 270.97 -> 271 s: the 23:59:59 call is included, the
    # midnight call is plus usage: 0.05 + 60 s x 0.10/60 = 0.15
    assert (out["lines"][("ACC4", "recurring:SUB4:lite")]["amount"], out["lines"][("ACC4", "recurring:SUB4:plus")]["amount"]) == (
        D("4.51"), D("10.96"))
    assert charges(out, before=before, at=at) == {"before": D("0"), "at": D("0.15")}
    assert out["rated"][before["record_id"]]["plan_id"] == "lite" and out["rated"][at["record_id"]]["plan_id"] == "plus"


def test_vat_is_the_cycle_end_versions_and_the_country_the_cycles_intervals(local_settings, tmp_path):
    catalog = catalog_with(extra='''
[[versions]]
version = 2
valid_from = "2026-10-20T00:00:00Z"
description = "DE VAT 16 %"
[versions.changes.vat]
DE = "0.16"
''')
    # SUB1 moved from Austria to Germany on Sep 30: only the German interval overlaps October
    subs = [interval("SUB1", "ACC1", "lite", "2026-06-01T00:00:00", "2026-09-30T00:00:00", country="AT"),
            interval("SUB1", "ACC1", "lite", "2026-09-30T00:00:00")]
    _, out = bill(local_settings, tmp_path, subs, [], catalog=catalog)
    # 9.99 x 16 % (version 2, in force when October ends) = 1.5984 -> 1.60
    assert (out["invoices"]["ACC1"]["tax"], out["lines"][("ACC1", "tax")]["description"]) == (D("1.60"), "VAT DE 16.00%")


def test_the_second_interval_starts_where_the_first_intervals_increments_end(local_settings, tmp_path):
    catalog = catalog_with(('group2_start = 60\nprice2 = "0.10"', 'group2_start = 30\nprice2 = "0.05"'))
    subs = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")]
    call = usage("SUB2", "voice", "2026-10-05T10:00:00", duration_s=100, called_number="4930111")
    _, out = bill(local_settings, tmp_path, subs, [call], catalog=catalog)
    # first interval: 30 s rounded up to one 60 s increment = 60 s at 0.10/60 = 0.10; the second
    # prices the remaining 40 s (not 70 s): 40 x 0.05/60 = 0.0333; + 0.05 connect = 0.1833
    r = out["rated"][call["record_id"]]
    assert (r["charge"], r["rated_base"]) == (D("0.1833"), 100)


def test_usage_while_suspended_is_rated_and_suspended_days_are_billed(local_settings, tmp_path):
    subs = [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00", "2026-10-10T00:00:00"),
            interval("SUB1", "ACC1", "lite", "2026-10-10T00:00:00", "2026-10-20T00:00:00", status="suspended"),
            interval("SUB1", "ACC1", "lite", "2026-10-20T00:00:00")]
    suspended = usage("SUB1", "voice", "2026-10-15T10:00:00", duration_s=700, called_number="4930111")
    _, out = bill(local_settings, tmp_path, subs, [suspended])
    # all 31 days are lite days (full 600 s allowance, full 9.99 fee); 100 s charged = 0.2167
    assert (out["rated"][suspended["record_id"]]["included_base"], out["rated"][suspended["record_id"]]["charge"]) == (600, D("0.2167"))
    assert out["lines"][("ACC1", "recurring:SUB1:lite")]["amount"] == D("9.99")


def test_the_first_arrival_of_a_redelivered_lifecycle_event_counts(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path)
    attrs = {"country": "DE", "currency": "EUR"}
    write_bss(lake, [
        bss("E1", "SUB4", "ACC4", "activated", "2026-09-01T00:00:00", plan_id="lite", attributes=attrs, offset=1),
        bss("E5", "SUB4", "ACC4", "plan_changed", "2026-10-15T10:00:00", plan_id="plus", arrived_at="2026-10-15T10:01:00", offset=2),
        # a redelivered copy that differs: it arrived later, so it does not count
        bss("E5", "SUB4", "ACC4", "plan_changed", "2026-10-15T10:00:00", plan_id="lite", arrived_at="2026-10-16T00:00:00", offset=3),
    ])
    refresh_subscribers(local_settings)
    write_usage(lake, [])
    rows = sorted(lake.read("silver/subscribers").to_pylist(), key=lambda r: r["valid_from"])
    assert [(r["plan_id"], r["valid_from"]) for r in rows] == [("lite", ts("2026-09-01T00:00:00")), ("plus", ts("2026-10-15T10:00:00"))]
    bill_run(local_settings, CYCLE, now=NOW)
    # the change to plus carries the 4.995 -> 5.00 plan-change fee (a change to lite would not)
    assert billed(lake)["lines"][("ACC4", "one_off:E5")]["amount"] == D("5.00")


def test_unrated_reasons_are_checked_in_order(local_settings, tmp_path):
    catalog = catalog_with(('valid_from = "2026-01-01T00:00:00Z"', 'valid_from = "2026-10-10T00:00:00Z"'))
    subs = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00"),
            interval("SUB5", "ACC5", "plus", "2026-09-01T00:00:00", "2026-10-20T00:00:00"),
            interval("SUB5", "ACC5", "plus", "2026-10-20T00:00:00", status="terminated")]
    mt_before_tariff = usage("SUB2", "voice", "2026-10-05T10:00:00", duration_s=60, called_number="4930111", direction="mt")
    terminated_nowhere = usage("SUB5", "voice", "2026-10-25T10:00:00", duration_s=60, called_number="7000")
    roaming_nowhere = usage("SUB2", "voice", "2026-10-12T10:00:00", duration_s=60, called_number="7000", visited_plmn="999-99")
    _, out = bill(local_settings, tmp_path, subs, [mt_before_tariff, terminated_nowhere, roaming_nowhere], catalog=catalog)
    assert out["unrated"] == {
        mt_before_tariff["record_id"]: "no_tariff",  # no tariff version yet beats "mobile-terminated: zero"
        terminated_nowhere["record_id"]: "after_termination",  # before unknown_destination
        roaming_nowhere["record_id"]: "unknown_destination",  # before unknown_roaming_zone
    }


def test_a_cycle_is_start_inclusive_and_end_exclusive(local_settings, tmp_path):
    subs = [interval("SUB2", "ACC2", "plus", "2026-09-01T00:00:00")]
    first = usage("SUB2", "sms", "2026-10-01T00:00:00", called_number="4930111")
    next_cycle = usage("SUB2", "sms", "2026-11-01T00:00:00", called_number="4930111")
    lake = load_test_catalog(local_settings, tmp_path)
    write_subscribers(lake, subs)
    write_usage(lake, [first, next_cycle])
    bill_run(local_settings, CYCLE, now=NOW)
    out = billed(lake)
    inv = out["invoices"]["ACC2"]
    assert (inv["period_start"], inv["period_end"], inv["bill_date"]) == (ts("2026-10-01T00:00:00"), ts("2026-11-01T00:00:00"),
                                                                         datetime(2026, 11, 1).date())
    assert set(out["rated"]) == {first["record_id"]}  # Nov 1 00:00:00 is November's


def test_late_usage_lines_sum_exactly_and_round_once(local_settings, tmp_path):
    lake = load_test_catalog(local_settings, tmp_path)
    write_subscribers(lake, [interval("SUB3", "ACC3", "plus", "2026-09-01T00:00:00")])
    write_usage(lake, [usage("SUB3", "sms", "2026-10-05T10:00:00", called_number="4930111")])
    bill_run(local_settings, CYCLE, now=NOW)
    late = [usage("SUB3", "data", f"2026-10-2{i}T09:00:00", bytes_down=500_000) for i in (1, 2)]
    write_usage(lake, late)
    bill_run(local_settings, "2026-11", now=NOW)
    nov = billed(lake, "2026-11")
    # each 0.5 MB at 0.01/MB = 0.0050; the line is 0.0100 -> 0.01 (cents per record would give 0.02)
    assert [nov["rated"][r["record_id"]]["charge"] for r in late] == [D("0.005"), D("0.005")]
    line = nov["lines"][("ACC3", "adjustment:LATE-2026-11-ACC3-2026-10-data")]
    assert (line["amount"], line["quantity"], line["for_cycle"], line["description"]) == (D("0.01"), 2, "2026-10", "Late usage data for 2026-10")


def test_the_allowance_follows_the_version_valid_at_each_event(local_settings, tmp_path):
    catalog = catalog_with(extra='''
[[versions]]
version = 2
valid_from = "2026-10-15T00:00:00Z"
description = "lite: 20 national minutes"
[versions.changes.plans.lite.allowances.voice]
quantity = 20
unit = "min"
zones = ["national"]
roaming = ["home"]
''')
    subs = [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")]
    a = usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=480, called_number="4930111")
    b = usage("SUB1", "voice", "2026-10-09T10:00:00", duration_s=300, called_number="4930111")
    c = usage("SUB1", "voice", "2026-10-20T10:00:00", duration_s=300, called_number="4930111")
    _, out = bill(local_settings, tmp_path, subs, [a, b, c], catalog=catalog)
    included = {k: out["rated"][r["record_id"]]["included_base"] for k, r in {"a": a, "b": b, "c": c}.items()}
    # before Oct 15 the pool is 600 s: a 480, b 120 (180 s charged, 0.35); from Oct 15 it is 1200 s
    # of which 780 s are used: c is included in full
    assert included == {"a": 480, "b": 120, "c": 300}
    assert charges(out, b=b, c=c) == {"b": D("0.35"), "c": D("0")}


def test_the_allowance_is_prorated_like_the_fee(local_settings, tmp_path):
    subs = [interval("SUB1", "ACC1", "lite", "2026-10-21T00:00:00")]
    call = usage("SUB1", "voice", "2026-10-22T10:00:00", duration_s=300, called_number="4930111")
    _, out = bill(local_settings, tmp_path, subs, [call])
    # Oct 21-31 = 11 days: fee 9.99 x 11/31 = 3.5448 -> 3.54; allowance 600 s x 11/31 = 212.9 -> 213 s;
    # 87 s charged: 0.05 + 60 s x 0.10/60 + 27 s x 0.10/60 = 0.195
    r = out["rated"][call["record_id"]]
    assert (r["included_base"], r["charge"]) == (213, D("0.195"))
    assert out["lines"][("ACC1", "recurring:SUB1:lite")]["amount"] == D("3.54")


def test_records_starting_at_the_same_instant_use_the_allowance_in_record_id_order(local_settings, tmp_path):
    subs = [interval("SUB1", "ACC1", "lite", "2026-09-01T00:00:00")]
    first = usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=500, called_number="4930111", record_id="R-B")
    tied = usage("SUB1", "voice", "2026-10-05T10:00:00", duration_s=500, called_number="4930222", record_id="R-A")
    _, out = bill(local_settings, tmp_path, subs, [first, tied])
    # same started_at: R-A comes first (record_id order) and takes 500 s of the 600 s allowance;
    # R-B gets the last 100 s and 400 s are charged: 0.05 + 60 s x 0.10/60 + 340 s x 0.10/60 = 0.7167
    assert (out["rated"]["R-A"]["included_base"], out["rated"]["R-B"]["included_base"]) == (500, 100)
    assert out["rated"]["R-B"]["charge"] == D("0.7167")

"""SQL rating and bill run vs the reference rater on generated data built to hit every path."""

from __future__ import annotations

import dataclasses
from collections import Counter

from pipelines.billing.catalog import DEFAULT_CATALOG, read_catalog
from pipelines.billing.reference import load_catalog
from pipelines.billing.run import bill_run
from pipelines.billing.synthetic import cycle_start, subscribers, usage
from pipelines.core.lake import Lake
from tests import billing_reference as ref
from tests.billing_data import ts


def test_sql_and_reference_agree_to_the_cent_on_generated_usage_in_buckets(local_settings):
    lake = Lake.from_settings(local_settings)
    load_catalog(local_settings)
    start = cycle_start("2026-10")
    subs = subscribers(1000, accounts=800, start=start, seed=7)
    records = usage(30_000, subscribers=1000, start=start, days=7, seed=8)
    lake.write("silver/subscribers", subs)
    lake.write("silver/usage", records, partition_by=["event_date"])
    # bucket_rows 12,000 splits the 30,000 records into 3 subscriber buckets rated one by one
    settings = dataclasses.replace(local_settings, raw={**local_settings.raw, "billing": {"bucket_rows": 12_000}})
    steps: list[str] = []
    result = bill_run(settings, "2026-10", now=ts("2027-01-01T00:00:00"), on_step=steps.append)
    assert "[3/3] usage_context" in steps and "[4/3] usage_context" not in steps
    assert result.rated + result.unrated == records.num_rows  # unique usage = rated + unrated

    versions = read_catalog(DEFAULT_CATALOG)
    sub_rows, usage_rows = subs.to_pylist(), records.to_pylist()
    expected, expected_unrated = ref.rate_usage(versions, sub_rows, usage_rows)
    rated = {r["record_id"]: r for r in lake.read("gold/billing/rated_usage").to_pylist()}
    unrated = {r["record_id"]: r["reason"] for r in lake.read("gold/billing/unrated").to_pylist()}
    assert unrated == expected_unrated
    assert set(rated) == set(expected)
    wrong = [(k, e.charge, rated[k]["charge"]) for k, e in expected.items() if rated[k]["charge"] != e.charge]
    assert not wrong, wrong[:5]
    wrong = [(k, e.included, rated[k]["included_base"]) for k, e in expected.items() if rated[k]["included_base"] != e.included]
    assert not wrong, wrong[:5]
    # the week exercises every path: split events, charged events, tiers, roaming, mt, unrated
    tags = Counter((r["rating_tag"], r["included_base"] > 0, r["charged_base"] > 0) for r in rated.values())
    assert tags[("non-included", True, True)] > 10 and tags[("non-included", False, True)] > 500
    assert {r["tiers_id"] for r in rated.values()} >= {"data_graduated", "data_roaming_volume"}
    assert set(unrated.values()) >= {"unknown_subscriber", "before_activation", "after_termination"}

    invoices = {r["billing_account_id"]: r for r in lake.read("gold/billing/invoices").to_pylist()}
    expected_invoices = ref.invoices(versions, sub_rows, expected, "2026-10")
    assert set(invoices) == set(expected_invoices)
    wrong = [(a, e, invoices[a]["amount_incl_tax"]) for a, e in expected_invoices.items()
             if (invoices[a]["amount_excl_tax"], invoices[a]["tax"], invoices[a]["amount_incl_tax"]) != (e["excl"], e["tax"], e["incl"])]
    assert not wrong, wrong[:5]

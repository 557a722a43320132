"""SQL vs the reference rater to the cent on the simulator's week of 2,000 subscribers.

The week goes the product's own way into the lake: simulator -> Parquet mediation dumps ->
backfill dataflow (decoder, quarantine, bronze) -> silver -> bill run.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from bytewax.testing import run_main

from dataflows.backfill import build_flow, describe
from pipelines.billing.catalog import read_catalog
from pipelines.billing.reference import load_catalog
from pipelines.billing.run import bill_run
from pipelines.core.lake import Lake
from pipelines.ingest.silver import refresh
from pipelines.simulate import SimConfig, simulate, write_dir
from tests import billing_reference as ref
from tests.billing_data import ts


@pytest.mark.slow
def test_sql_and_reference_agree_on_the_simulated_week(local_settings, tmp_path):
    result = simulate(SimConfig(subscribers=2000, days=7, seed=42, start=date(2026, 10, 1)))
    dumps = write_dir(result, tmp_path / "dumps", "parquet")
    run_main(build_flow(local_settings, [describe(p) for p in dumps if "network.events" not in str(p)]))
    refresh(local_settings)
    load_catalog(local_settings)
    lake = Lake.from_settings(local_settings)
    columns = ["record_id", "event_type", "subscriber_id", "started_at", "duration_s", "bytes_up", "bytes_down",
               "called_number", "direction", "visited_plmn"]
    usage = lake.read("silver/usage", columns=columns).to_pylist()
    subscribers = lake.read("silver/subscribers").to_pylist()
    assert len(usage) > 500_000 and {s["status"] for s in subscribers} == {"active", "suspended", "terminated"}

    settings = dataclasses.replace(local_settings, raw={**local_settings.raw, "billing": {"bucket_rows": 250_000}})
    run = bill_run(settings, "2026-10", now=ts("2027-01-01T00:00:00"))
    assert run.rated + run.unrated == len(usage)  # every unique record rated or unrated, once

    versions = read_catalog()
    expected, expected_unrated = ref.rate_usage(versions, subscribers, usage)
    rated = {r["record_id"]: r for r in lake.read("gold/billing/rated_usage", columns=["record_id", "charge", "included_base"]).to_pylist()}
    unrated = {r["record_id"]: r["reason"] for r in lake.read("gold/billing/unrated", columns=["record_id", "reason"]).to_pylist()}
    assert unrated == expected_unrated and set(rated) == set(expected)
    wrong = [(k, e.charge, rated[k]["charge"]) for k, e in expected.items() if (rated[k]["charge"], rated[k]["included_base"]) != (e.charge, e.included)]
    assert not wrong, wrong[:5]
    assert sum(1 for e in expected.values() if e.charge > 0) > 10_000  # the week is not all allowance

    invoices = {r["billing_account_id"]: r for r in lake.read("gold/billing/invoices").to_pylist()}
    events = lake.read("bronze/bss.events", columns=["event_id", "subscriber_id", "occurred_at", "kind", "plan_id"]).to_pylist()
    expected_invoices = ref.invoices(versions, subscribers, expected, "2026-10", events)
    # the week's plan changes to lite or plus carry the plan-change fee (catalog version 2);
    # the simulated subscribers were all activated before the week (history: no connection fee)
    charges = lake.read("gold/billing/one_off_charges", columns=["event_id", "price_id"]).to_pylist()
    assert {c["price_id"] for c in charges} == {"plan_change_fee"}
    assert {c["event_id"] for c in charges} == set(ref.one_offs(versions, subscribers, events, "2026-10"))
    assert set(invoices) == set(expected_invoices)
    wrong = [(a, e, invoices[a]["amount_incl_tax"]) for a, e in expected_invoices.items()
             if (invoices[a]["amount_excl_tax"], invoices[a]["tax"], invoices[a]["amount_incl_tax"]) != (e["excl"], e["tax"], e["incl"])]
    assert not wrong, wrong[:5]

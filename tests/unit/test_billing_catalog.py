"""The tariff catalog: validation with one-line errors, append-only versions in Delta."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from pipelines.billing.catalog import parse_catalog, read_catalog, version_for
from pipelines.billing.reference import REFERENCE_TABLES, load_catalog
from pipelines.core.errors import CatalogError
from pipelines.core.lake import Lake
from tests.billing_data import CORRECTION, TEST_CATALOG


def test_the_shipped_catalog_is_valid():
    v1, v2, v3 = read_catalog()
    # one-time prices came as version 2, so version 1 stays as loaded
    assert v1.one_time == {} and v2.plans == v1.plans and v2.rates == v1.rates
    # version 3 fixes one rate from the same day and keeps version 2's one-time prices
    assert v3.valid_from == v2.valid_from and v3.one_time == v2.one_time and v3.plans == v2.plans
    assert (v2.rates["voice_world"].price, v3.rates["voice_world"].price) == (D("0.99"), D("0.89"))
    assert {k: r for k, r in v3.rates.items() if k != "voice_world"} == {k: r for k, r in v2.rates.items() if k != "voice_world"}
    assert (v2.one_time["connection_fee"].event, v2.one_time["connection_fee"].price) == ("activated", D("24.99"))
    assert v2.one_time["plan_change_fee"].plans == ("lite", "plus")
    assert v1.plans["plus"].monthly_fee == D("19.99") and v1.vat["NL"] == D("0.21")
    assert v1.rates["voice_national_peak"].group2_start == 60 and v1.rates["data_home"].rate_unit == 1_000_000
    assert {t.mode for ts in v1.tiers.values() for t in ts} == {"graduated", "volume"}
    assert v1.wholesale["310-260"]["per_mb"] == D("0.0100") and v1.ott["ott-gamecloud"]["model"] == "per_active_subscriber"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('price = "0.10"', "price = 0.10"), r"catalog rates.voice_national.price = 0.1: write money .* quoted decimal"),
        (('rounding = "half_up"\ndecimals = 4', 'rounding = "nearest"\ndecimals = 4'), r"rates.voice_national.rounding = 'nearest': expected one of up, half_up, down"),
        (('zone = "eu"', 'zone = "mars"'), r"rates.voice_eu.zone = 'mars': expected any, eu, "),
        (('timezone = "Europe/Berlin"', 'timezone = "Europe/Nowhere"'), r"time_bands.timezone = 'Europe/Nowhere'"),
        (('tiers = "volume"', 'tiers = "nope"'), r"rates.data_world.tiers = 'nope'"),
        (('{ upto = 5000, price = "0.005" }', '{ upto = 500, price = "0.005" }'), r"tiers.graduated.bands\[1\].upto: bounds must increase"),
        (('zone = "mobile"', 'zone = "eu"'), r"rates.voice_mobile: matches exactly what rates.voice_eu matches"),
        (('version = 1', 'version = 2'), r"versions\[0\].version = 2: versions are numbered"),
        (('"2026-01-01T00:00:00Z"', '"2026-01-01T00:00:30Z"'), r"versions\[0\].valid_from = .*: versions start on a whole minute"),
        (('monthly_fee = "9.99"', 'monthly_fee = "-1"'), r"plans.lite.monthly_fee = '-1': must be a number >= 0"),
        (('event = "activated"', 'event = "payment"'), r"one_time_prices.connection.event = 'payment': expected one of activated, plan_changed"),
        (('plans = ["plus"]', 'plans = ["gold"]'), r"one_time_prices.plan_change.plans = \['gold'\]: expected a non-empty list of lite, plus"),
        (('price = "25.00"', 'price = 25.0'), r"one_time_prices.connection.price = 25.0: write money .* quoted decimal"),
        (('decimals = 2\n\n[tiers', 'decimals = 3\n\n[tiers'), r"one_time_prices.plan_change.decimals = 3: at most 2"),
        (('event = "plan_changed"\nplans = ["plus"]', 'event = "activated"\nplans = ["plus"]'),
         r"one_time_prices.plan_change: applies to activated on plan plus like one_time_prices.connection"),
    ],
)
def test_invalid_catalogs_fail_with_one_line_naming_the_key(change, message):
    old, new = change
    assert old in TEST_CATALOG
    with pytest.raises(CatalogError, match=message) as exc:
        parse_catalog(TEST_CATALOG.replace(old, new, 1))
    assert "\n" not in str(exc.value)


def test_versions_are_appended_never_edited(local_settings, tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG)
    lake = Lake.from_settings(local_settings)
    assert load_catalog(local_settings, path).loaded == [1]
    assert load_catalog(local_settings, path).unchanged == [1]  # idempotent
    path.write_text(TEST_CATALOG.replace('monthly_fee = "9.99"', 'monthly_fee = "8.99"'))
    with pytest.raises(CatalogError, match="version 1 is already loaded with different content"):
        load_catalog(local_settings, path)
    path.write_text(TEST_CATALOG + CORRECTION)
    assert load_catalog(local_settings, path).loaded == [2]
    rates = lake.read("reference/tariff_rates").to_pylist()
    national = {r["version"]: r["price"] for r in rates if r["rate_id"] == "voice_national"}
    assert national == {1: D("0.100000"), 2: D("0.080000")}  # version 1 kept as it was
    assert all(lake.exists(t) for t in REFERENCE_TABLES)
    assert {r["version"] for r in lake.read("reference/tariff_vat").to_pylist()} == {1, 2}
    one_time = {(r["version"], r["price_id"]): (r["event"], r["plans"], r["price"]) for r in lake.read("reference/tariff_one_time_prices").to_pylist()}
    assert one_time[(2, "plan_change")] == one_time[(1, "plan_change")] == ("plan_changed", ["plus"], D("4.995000"))
    path.write_text(TEST_CATALOG)
    with pytest.raises(CatalogError, match="loaded version 2 is missing"):
        load_catalog(local_settings, path)


def test_the_applicable_version_is_the_highest_valid_at_the_time():
    versions = parse_catalog(TEST_CATALOG + CORRECTION)
    assert version_for(versions, datetime(2026, 9, 30, tzinfo=UTC)).version == 1
    assert version_for(versions, datetime(2026, 10, 1, tzinfo=UTC)).version == 2
    assert version_for(versions, datetime(2025, 1, 1, tzinfo=UTC)) is None


def test_a_reference_table_missing_from_an_older_lake_is_written_for_every_version(local_settings, tmp_path):
    # a lake loaded before reference/tariff_one_time_prices existed: the next load writes it whole
    path = tmp_path / "catalog.toml"
    path.write_text(TEST_CATALOG + CORRECTION)
    lake = Lake.from_settings(local_settings)
    assert load_catalog(local_settings, path).loaded == [1, 2]
    shutil.rmtree(Path(lake.uri("reference/tariff_one_time_prices")))
    assert not lake.exists("reference/tariff_one_time_prices")
    result = load_catalog(local_settings, path)
    assert result.loaded == [] and result.unchanged == [1, 2] and "reference/tariff_one_time_prices" in result.table_versions
    rows = lake.read("reference/tariff_one_time_prices").to_pylist()
    assert sorted((r["version"], r["price_id"]) for r in rows) == [(1, "connection"), (1, "plan_change"), (2, "connection"), (2, "plan_change")]
    assert load_catalog(local_settings, path).table_versions == {}  # nothing left to write

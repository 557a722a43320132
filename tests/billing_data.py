"""Builders for the billing tests: silver usage and subscriber tables written with Lake.write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count

import pyarrow as pa

from pipelines.billing.synthetic import SUBSCRIBER_SCHEMA, USAGE_SCHEMA
from pipelines.core.contracts import BSS
from pipelines.core.lake import Lake

BSS_SCHEMA = pa.schema([*BSS.schema, ("_source", pa.string()), ("_kafka_topic", pa.string()), ("_kafka_partition", pa.int32()),
                        ("_kafka_offset", pa.int64()), ("_kafka_timestamp", pa.timestamp("us", tz="UTC")), ("_source_row", pa.int64()),
                        ("_ingested_at", pa.timestamp("us", tz="UTC")), ("event_date", pa.date32()), ("event_month", pa.string())])

_ids = count(1)


def ts(text: str) -> datetime:
    """``2026-10-05T10:00:00`` (UTC) -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def usage(subscriber_id: str, event_type: str, started_at: str, *, record_id: str | None = None, duration_s: int = 0,
          bytes_down: int = 0, bytes_up: int = 0, called_number: str | None = None, direction: str | None = None,
          visited_plmn: str | None = None, ott_partner_id: str | None = None) -> dict:
    at = ts(started_at)
    return {
        "record_id": record_id or f"R{next(_ids):09d}", "event_type": event_type, "subscriber_id": subscriber_id,
        "msisdn": "491510000000", "started_at": at, "duration_s": duration_s, "bytes_up": bytes_up, "bytes_down": bytes_down,
        "imsi": None, "called_number": called_number if event_type != "data" else None, "direction": direction,
        "cell_id": "C0001", "visited_plmn": visited_plmn, "ott_partner_id": ott_partner_id, "is_dropped": False,
        "_ingested_at": at + timedelta(minutes=1), "event_date": at.date(),
    }


def interval(subscriber_id: str, account_id: str, plan_id: str, valid_from: str, valid_to: str | None = None, *,
             status: str = "active", country: str = "DE", activated_at: str | None = None) -> dict:
    return {
        "subscriber_id": subscriber_id, "account_id": account_id, "msisdn": "491510000000", "imsi": "262010000000000",
        "plan_id": plan_id, "status": status, "country": country, "currency": "EUR", "segment": "consumer",
        "activated_at": ts(activated_at or valid_from), "valid_from": ts(valid_from),
        "valid_to": ts(valid_to) if valid_to else None, "is_current": valid_to is None, "_ingested_at": ts(valid_from),
    }


def bss(event_id: str, subscriber_id: str, account_id: str, kind: str, occurred_at: str, *, plan_id: str | None = None,
        arrived_at: str | None = None, offset: int = 0, attributes: dict | None = None) -> dict:
    """A bronze ``bss.events`` row as the ingest lands it (``arrived_at``: when Kafka got it)."""
    at = ts(occurred_at)
    arrived = ts(arrived_at) if arrived_at else at + timedelta(minutes=1)
    return {
        "event_id": event_id, "subscriber_id": subscriber_id, "account_id": account_id, "occurred_at": at, "kind": kind,
        "plan_id": plan_id, "amount": None, "attributes": None if attributes is None else json.dumps(attributes), "_source": "kafka", "_kafka_topic": "bss.events",
        "_kafka_partition": 0, "_kafka_offset": offset, "_kafka_timestamp": arrived, "_source_row": None,
        "_ingested_at": arrived + timedelta(seconds=5), "event_date": at.date(), "event_month": at.strftime("%Y-%m"),
    }


def write_bss(lake: Lake, rows: list[dict]) -> int:
    """Append bronze lifecycle events (with the change data feed silver reads increments from)."""
    return lake.write("bronze/bss.events", pa.Table.from_pylist(rows, schema=BSS_SCHEMA), partition_by=["event_month"],
                      configuration={"delta.enableChangeDataFeed": "true"})


def write_usage(lake: Lake, rows: list[dict]) -> int:
    return lake.write("silver/usage", pa.Table.from_pylist(rows, schema=USAGE_SCHEMA), partition_by=["event_date"])


def write_subscribers(lake: Lake, rows: list[dict]) -> int:
    return lake.write("silver/subscribers", pa.Table.from_pylist(rows, schema=SUBSCRIBER_SCHEMA), mode="overwrite")


def load_test_catalog(settings, folder, text: str | None = None) -> Lake:
    """Load ``text`` (default TEST_CATALOG) as the lake's catalog; the lake."""
    from pipelines.billing.reference import load_catalog

    path = folder / "catalog.toml"
    path.write_text(text if text is not None else TEST_CATALOG)
    load_catalog(settings, path)
    return Lake.from_settings(settings)


def catalog_with(*edits: tuple[str, str], extra: str = "") -> str:
    """TEST_CATALOG with each (old, new) text replaced once (each must occur), plus ``extra``."""
    text = TEST_CATALOG
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text + extra


def billed(lake: Lake, cycle: str | None = None) -> dict[str, dict]:
    """What bill runs wrote (of the run of ``cycle`` only, when given), keyed for assertions:
    rated/unrated by record_id, invoices and held accounts by account, lines by (account, line_id)."""
    def read(name: str, column: str) -> list[dict]:
        rows = lake.read(name).to_pylist() if lake.exists(name) else []
        return [r for r in rows if cycle is None or r[column] == cycle]

    return {
        "rated": {r["record_id"]: r for r in read("gold/billing/rated_usage", "billed_cycle")},
        "unrated": {r["record_id"]: r["reason"] for r in read("gold/billing/unrated", "billed_cycle")},
        "invoices": {r["billing_account_id"]: r for r in read("gold/billing/invoices", "cycle")},
        "lines": {(r["billing_account_id"], r["line_id"]): r for r in read("gold/billing/invoice_lines", "cycle")},
        "held": {r["account_id"]: r for r in read("gold/billing/held_accounts", "cycle")},
    }


# A small catalog for hand-worked scenarios: every number in the tests comes from here.
TEST_CATALOG = '''
currency = "EUR"

[time_bands]
timezone = "Europe/Berlin"
peak_start = "08:00"
peak_end = "20:00"
weekend_days = ["sat", "sun"]

[destinations]
"49" = "national"
"4915" = "mobile"
"33" = "eu"
"1" = "world"

[roaming_zones]
"208-01" = "eu"
"310-260" = "world"

[vat]
DE = "0.19"
AT = "0.20"

[plans.lite]
name = "Lite"
monthly_fee = "9.99"
[plans.lite.allowances.voice]
quantity = 10
unit = "min"
zones = ["national"]
roaming = ["home"]

[plans.plus]
name = "Plus"
monthly_fee = "19.99"

[rates.voice_national]
event_type = "voice"
zone = "national"
roaming = "home"
unit = "s"
connect_fee = "0.05"
price = "0.10"
rate_unit = 60
increment = 60
group2_start = 60
price2 = "0.10"
rate_unit2 = 60
increment2 = 1
rounding = "half_up"
decimals = 4

[rates.voice_national_weekend]
event_type = "voice"
zone = "national"
band = "weekend"
roaming = "home"
unit = "s"
price = "0.02"
rate_unit = 60
increment = 1
rounding = "half_up"
decimals = 4

[rates.voice_mobile]
event_type = "voice"
zone = "mobile"
unit = "s"
price = "0.15"
rate_unit = 60
increment = 1
rounding = "up"
decimals = 2

[rates.voice_eu]
event_type = "voice"
zone = "eu"
unit = "s"
price = "0.15"
rate_unit = 60
increment = 1
rounding = "half_up"
decimals = 2

[rates.voice_world]
event_type = "voice"
zone = "world"
unit = "s"
price = "0.60"
rate_unit = 60
increment = 60
max_cost = "3.00"
rounding = "up"
decimals = 2

[rates.sms]
event_type = "sms"
unit = "msg"
price = "0.09"
rate_unit = 1
increment = 1
rounding = "half_up"
decimals = 2

[rates.data_home]
event_type = "data"
roaming = "home"
unit = "kb"
tiers = "graduated"
rate_unit = 1000
increment = 1
rounding = "up"
decimals = 4

[rates.data_world]
event_type = "data"
roaming = "world"
unit = "kb"
tiers = "volume"
rate_unit = 1000
increment = 100
rounding = "up"
decimals = 4

# One-time prices: 25.00 on every activation; 4.995 on a change to plus, rounded half-up to
# cents (5.00). A change to lite costs nothing.
[one_time_prices.connection]
name = "Connection fee"
event = "activated"
price = "25.00"

[one_time_prices.plan_change]
name = "Plan change fee"
event = "plan_changed"
plans = ["plus"]
price = "4.995"
rounding = "half_up"
decimals = 2

[tiers.graduated]
mode = "graduated"
bands = [{ upto = 1000, price = "0.01" }, { upto = 5000, price = "0.005" }, { price = "0.002" }]

[tiers.volume]
mode = "volume"
bands = [{ upto = 100, price = "2.00" }, { upto = 1000, price = "1.50" }, { price = "1.00" }]

[[versions]]
version = 1
valid_from = "2026-01-01T00:00:00Z"
description = "test tariff"
'''

# A correction: national voice was meant to cost 0.08 per minute from October on.
CORRECTION = '''
[[versions]]
version = 2
valid_from = "2026-10-01T00:00:00Z"
description = "fix: national voice is 0.08/min"
[versions.changes.rates.voice_national]
price = "0.08"
price2 = "0.08"
'''

"""Builders for the churn tests: silver usage, bronze BSS and network tables written with Lake.write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pyarrow as pa

from pipelines.churn.synthetic import BSS_SCHEMA, NETWORK_SCHEMA, USAGE_SCHEMA
from pipelines.core.lake import Lake

_ids = count(1)


def ts(text: str) -> datetime:
    """``2026-10-05T10:00`` (UTC) -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _meta(at: datetime, known: datetime | None, *, kafka: bool = True) -> dict:
    known = known or at + timedelta(minutes=2)
    return {"_kafka_timestamp": known if kafka else None, "_ingested_at": known + timedelta(seconds=3), "event_date": at.date()}


def usage(sub: str, kind: str, at: str, *, known: str | None = None, duration_s: int = 0, mb: float = 0,
          called: str | None = None, cell: str | None = "C0001", plmn: str | None = None, dropped: bool = False,
          kafka: bool = True) -> dict:
    t = ts(at)
    return {
        "record_id": f"R{next(_ids):09d}", "event_type": kind, "subscriber_id": sub, "msisdn": "491510000000",
        "started_at": t, "duration_s": duration_s, "bytes_up": 0, "bytes_down": int(mb * 1e6), "imsi": None,
        "called_number": called, "direction": "mo", "cell_id": cell, "visited_plmn": plmn, "ott_partner_id": None,
        "is_dropped": dropped, **_meta(t, ts(known) if known else None, kafka=kafka),
    }


def bss(sub: str, kind: str, at: str, *, known: str | None = None, plan: str | None = None, amount: str | None = None,
        **attributes: str) -> dict:
    t = ts(at)
    return {
        "event_id": f"B{next(_ids):09d}", "subscriber_id": sub, "account_id": "ACC" + sub[3:], "occurred_at": t,
        "kind": kind, "plan_id": plan, "amount": Decimal(amount) if amount else None,
        "attributes": json.dumps(attributes) if attributes else None,
        **_meta(t, ts(known) if known else None), "event_month": t.strftime("%Y-%m"),
    }


def kpi(cell: str, at: str, attempts: int, dropped: int, *, known: str | None = None) -> dict:
    t = ts(at)
    return {
        "event_id": f"N{next(_ids):09d}", "cell_id": cell, "site_id": "S001", "observed_at": t, "kind": "kpi",
        "call_attempts": attempts, "dropped_calls": dropped, "prb_utilization": 50.0, "latency_ms": 20.0,
        "severity": None, "code": None, "cleared": None, **_meta(t, ts(known) if known else None),
    }


def write(lake: Lake, *, usage_rows: list[dict] = (), bss_rows: list[dict] = (), kpi_rows: list[dict] = ()) -> None:
    """Append rows to silver/usage, bronze/bss.events and bronze/network.events (creating them)."""
    if usage_rows or not lake.exists("silver/usage"):
        lake.write("silver/usage", pa.Table.from_pylist(list(usage_rows), schema=USAGE_SCHEMA), partition_by=["event_date"])
    if bss_rows or not lake.exists("bronze/bss.events"):
        lake.write("bronze/bss.events", pa.Table.from_pylist(list(bss_rows), schema=BSS_SCHEMA), partition_by=["event_month"])
    if kpi_rows:
        lake.write("bronze/network.events", pa.Table.from_pylist(list(kpi_rows), schema=NETWORK_SCHEMA), partition_by=["event_date"])

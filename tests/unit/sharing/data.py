"""A small, hand-countable lake for the sharing tests: silver usage, subscribers and BSS events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from pipelines.billing.synthetic import SUBSCRIBER_SCHEMA, USAGE_SCHEMA
from pipelines.core.contracts import BSS
from pipelines.core.lake import Lake

DAY = datetime(2026, 10, 5, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
BSS_SCHEMA = pa.schema([*BSS.schema, ("_source", pa.string()), ("_kafka_topic", pa.string()), ("_kafka_partition", pa.int32()),
                        ("_kafka_offset", pa.int64()), ("_kafka_timestamp", TS), ("_source_row", pa.int64()), ("_ingested_at", TS),
                        ("event_month", pa.string())])


def sub(i: int) -> str:
    return f"SUB{i:07d}"


def msisdn(i: int) -> str:
    return f"49151{i:07d}"


def imsi(i: int) -> str:
    return f"26201{i:010d}"


class Builder:
    """Collects rows, then writes them with Lake.write; ``record`` numbers usage records."""

    def __init__(self) -> None:
        self.usage: list[dict] = []
        self.bss: list[dict] = []
        self.n = 0

    def record(self, i: int, event_type: str, at: datetime, *, duration_s: int = 0, bytes_down: int = 0, cell: str | None = "C0001",
               plmn: str | None = None, ott: str | None = None, called: str | None = "4930123456") -> None:
        self.n += 1
        self.usage.append({
            "record_id": f"R{self.n:09d}", "event_type": event_type, "subscriber_id": sub(i), "msisdn": msisdn(i), "started_at": at,
            "duration_s": duration_s, "bytes_up": 0, "bytes_down": bytes_down, "imsi": imsi(i),
            "called_number": called if event_type != "data" else None, "direction": "mo", "cell_id": cell, "visited_plmn": plmn,
            "ott_partner_id": ott, "is_dropped": False, "_ingested_at": at + timedelta(minutes=1), "event_date": at.date(),
        })

    def bss_event(self, i: int, kind: str, at: datetime, ott: str) -> None:
        self.bss.append({"event_id": f"E{len(self.bss):08d}", "subscriber_id": sub(i), "account_id": f"ACC{i:07d}", "occurred_at": at,
                         "kind": kind, "plan_id": None, "amount": None, "attributes": json.dumps({"ott_partner_id": ott}),
                         "_source": "kafka", "_kafka_topic": "bss.events", "_kafka_partition": 0, "_kafka_offset": len(self.bss),
                         "_kafka_timestamp": at, "_source_row": None, "_ingested_at": at + timedelta(minutes=1),
                         "event_month": at.strftime("%Y-%m")})

    def append_usage(self, lake: Lake) -> int:
        """Append only the collected usage rows (late or new records) to silver/usage."""
        return lake.write("silver/usage", pa.Table.from_pylist(self.usage, schema=USAGE_SCHEMA), partition_by=["event_date"])

    def write(self, lake: Lake, *, subscribers: int = 40) -> None:
        lake.write("silver/usage", pa.Table.from_pylist(self.usage, schema=USAGE_SCHEMA), partition_by=["event_date"])
        if self.bss:
            lake.write("bronze/bss.events", pa.Table.from_pylist(self.bss, schema=BSS_SCHEMA), partition_by=["event_month"])
        subs = [{"subscriber_id": sub(i), "account_id": f"ACC{i:07d}", "msisdn": msisdn(i), "imsi": imsi(i), "plan_id": "plus",
                 "status": "active", "country": "DE", "currency": "EUR", "segment": "consumer", "activated_at": DAY - timedelta(days=90),
                 "valid_from": DAY - timedelta(days=90), "valid_to": None, "is_current": True, "_ingested_at": DAY - timedelta(days=90)}
                for i in range(1, subscribers + 1)]
        if not lake.exists("silver/subscribers"):
            lake.write("silver/subscribers", pa.Table.from_pylist(subs, schema=SUBSCRIBER_SCHEMA), mode="overwrite")


def standard_day(b: Builder, day: datetime = DAY) -> None:
    """One day of planted usage.

    - roaming in 208-01: subscribers 1-5, each a 125 s call, one SMS, 3 MB; subscriber 1 also in 214-07 (60 s call);
    - OTT: subscribers 1-8 activate ott-streamflix; 1-6 stream 10 MB each; 7 deactivates; 20 uses ott-musicbox;
    - footfall: 12 subscribers (10-21) in area A01 at 10:00 (kept at k=10), 3 (22-24) in A02 (suppressed).
    """
    for i in range(1, 6):
        b.record(i, "voice", day + timedelta(hours=9, minutes=i), duration_s=125, plmn="208-01", cell=None)
        b.record(i, "sms", day + timedelta(hours=9, minutes=30 + i), plmn="208-01", cell=None)
        b.record(i, "data", day + timedelta(hours=11, minutes=i), bytes_down=3_000_000, plmn="208-01", cell=None)
    b.record(1, "voice", day + timedelta(hours=15), duration_s=60, plmn="214-07", cell=None)
    for i in range(1, 9):
        b.bss_event(i, "ott_activated", day + timedelta(hours=8, minutes=i), "ott-streamflix")
    b.bss_event(7, "ott_deactivated", day + timedelta(hours=20), "ott-streamflix")
    for i in range(1, 7):
        b.record(i, "data", day + timedelta(hours=19, minutes=i), bytes_down=10_000_000, ott="ott-streamflix")
    b.record(20, "data", day + timedelta(hours=19), bytes_down=5_000_000, ott="ott-musicbox")
    for i in range(10, 22):
        b.record(i, "voice", day + timedelta(hours=10, minutes=i), duration_s=300, cell=f"C000{1 + i % 3}")
        b.record(i, "sms", day + timedelta(hours=10, minutes=i + 20), cell="C0002")
    for i in range(22, 25):
        b.record(i, "voice", day + timedelta(hours=10, minutes=5), duration_s=60, cell="C0019")

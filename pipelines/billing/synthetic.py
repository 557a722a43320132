"""Synthetic silver usage and subscriber tables (columnar, numpy) for billing tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.contracts import USAGE

TS = pa.timestamp("us", tz="UTC")
USAGE_SCHEMA = pa.schema([*USAGE.schema, ("_ingested_at", TS), ("event_date", pa.date32())])
SUBSCRIBER_SCHEMA = pa.schema(
    [("subscriber_id", pa.string()), ("account_id", pa.string()), ("msisdn", pa.string()), ("imsi", pa.string()),
     ("plan_id", pa.string()), ("status", pa.string()), ("country", pa.string()), ("currency", pa.string()),
     ("segment", pa.string()), ("activated_at", TS), ("valid_from", TS), ("valid_to", TS), ("is_current", pa.bool_()),
     ("_ingested_at", TS)]
)
PLANS = np.array(["lite", "plus", "max"])
COUNTRIES = np.array(["DE", "AT", "NL"])
PREFIXES = np.array(["4930", "4940", "4915", "4916", "4917", "33", "34", "44", "1", "90"])
PREFIX_P = np.array([0.2, 0.1, 0.25, 0.15, 0.1, 0.05, 0.05, 0.04, 0.04, 0.02])
PLMNS = np.array(["208-01", "214-07", "234-15", "310-260"])


def _us(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


def _ids(prefix: str, numbers: np.ndarray, width: int = 7) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width, "0"), "")


def subscribers(n: int, *, accounts: int | None = None, start: datetime, days: int = 31, seed: int = 1) -> pa.Table:
    """One or two validity intervals per subscriber: most active all cycle, some activated,
    some changing plan and some terminated inside the ``days`` after ``start``."""
    rng = np.random.default_rng(seed)
    accounts = accounts or n
    idx = np.arange(n)
    account = idx % accounts
    plan = rng.integers(0, 3, n)
    country = COUNTRIES[account % 3]
    kind = rng.choice(4, n, p=[0.85, 0.05, 0.06, 0.04])  # steady, activated in cycle, plan change, terminated
    span = days * 86_400_000_000
    s0 = _us(start)
    activated = np.where(kind == 1, s0 + rng.integers(0, span, n), s0 - rng.integers(86_400_000_000, 400 * 86_400_000_000, n))
    change = s0 + rng.integers(0, span, n)
    first_to = np.where(kind >= 2, change, -1)
    rows_sub = np.concatenate([idx, idx[kind >= 2]])
    second = kind[kind >= 2]
    plan2 = np.where(second == 2, (plan[kind >= 2] + 1) % 3, plan[kind >= 2])
    status = np.concatenate([np.full(n, "active"), np.where(second == 3, "terminated", "active")])
    valid_from = np.concatenate([activated, change[kind >= 2]])
    valid_to = np.concatenate([first_to, np.full(len(second), -1)])
    acc = account[rows_sub]
    table = pa.table({
        "subscriber_id": _ids("SUB", rows_sub), "account_id": _ids("ACC", acc), "msisdn": _ids("49151", rows_sub),
        "imsi": _ids("26201", rows_sub, 10), "plan_id": PLANS[np.concatenate([plan, plan2])], "status": status,
        "country": country[rows_sub], "currency": np.full(len(rows_sub), "EUR"), "segment": np.full(len(rows_sub), "consumer"),
        "activated_at": pa.array(activated[rows_sub], TS), "valid_from": pa.array(valid_from, TS),
        "valid_to": pa.array(np.where(valid_to < 0, 0, valid_to), TS, mask=valid_to < 0),
        "is_current": valid_to < 0, "_ingested_at": pa.array(valid_from, TS),
    })
    return table.cast(SUBSCRIBER_SCHEMA)


def usage(n: int, *, subscribers: int, start: datetime, days: int = 7, seed: int = 2, offset: int = 0) -> pa.Table:
    """``n`` usage records for ``subscribers`` subscribers over ``days`` from ``start``
    (0.1% from unknown subscribers, 20% mobile-terminated voice/SMS, 5% roaming)."""
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, subscribers, n)
    sub = np.where(rng.random(n) < 0.001, subscribers + 1_000_000 + sub, sub)
    kind = rng.choice(3, n, p=[0.3, 0.2, 0.5])  # voice, sms, data
    event_type = np.array(["voice", "sms", "data"])[kind]
    at = _us(start) + rng.integers(0, days * 86_400_000_000, n)
    at -= at % 1_000_000
    duration = np.where(kind == 0, np.minimum(rng.exponential(400, n).astype(np.int64) + 1, 7200), 0)
    down = np.where(kind == 2, rng.exponential(150_000_000, n).astype(np.int64), 0)
    up = down // 10
    called = np.char.add(PREFIXES[rng.choice(len(PREFIXES), n, p=PREFIX_P)], rng.integers(1_000_000, 9_999_999, n).astype(str))
    mt = (kind < 2) & (rng.random(n) < 0.2)
    roaming = rng.random(n) < 0.05
    plmn = PLMNS[rng.integers(0, len(PLMNS), n)]
    ott = (kind == 2) & (rng.random(n) < 0.2)
    ids = np.arange(offset, offset + n)
    table = pa.table({
        "record_id": _ids("R", ids, 10), "event_type": event_type, "subscriber_id": _ids("SUB", sub),
        "msisdn": _ids("49151", sub), "started_at": pa.array(at, TS), "duration_s": duration, "bytes_up": up, "bytes_down": down,
        "imsi": pa.nulls(n, pa.string()), "called_number": pa.array(called, mask=kind == 2),
        "direction": pa.array(np.where(mt, "mt", "mo"), mask=kind == 2), "cell_id": _ids("C", rng.integers(1, 500, n), 4),
        "visited_plmn": pa.array(plmn, mask=~roaming),
        "ott_partner_id": pa.array(np.array(["ott-streamflix", "ott-musicbox", "ott-gamecloud"])[rng.integers(0, 3, n)], mask=~ott),
        "is_dropped": (kind == 0) & (rng.random(n) < 0.01), "_ingested_at": pa.array(at + 60_000_000, TS),
        "event_date": pa.array(at // 86_400_000_000, pa.int32()).cast(pa.date32()),
    })
    return table.cast(USAGE_SCHEMA)


def cycle_start(cycle: str) -> datetime:
    return datetime.strptime(cycle + "-01", "%Y-%m-%d").replace(tzinfo=UTC)

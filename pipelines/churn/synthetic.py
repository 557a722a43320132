"""Synthetic churn inputs (silver/usage, bronze/bss.events, bronze/network.events) made with numpy.

For benchmarks and tests that need volume without Kafka: subscribers with a personal circle of
called numbers and a home cell, daily Poisson usage, monthly payments, tickets, plan changes,
OTT activations, a share of churners whose usage fades before they terminate, and a share of
records that become known days late (or carry no Kafka timestamp, as file backfills do).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.contracts import BSS, NETWORK, USAGE

TS = pa.timestamp("us", tz="UTC")
META = [("_kafka_timestamp", TS), ("_ingested_at", TS), ("event_date", pa.date32())]
USAGE_SCHEMA = pa.schema([*USAGE.schema, *META])
NETWORK_SCHEMA = pa.schema([*NETWORK.schema, *META])
BSS_SCHEMA = pa.schema([*BSS.schema, *META, ("event_month", pa.string())])
DAY_US = 86_400_000_000
PLANS = np.array(["lite", "plus", "max"])
PREFIXES = np.array(["4930", "4940", "4915", "4916", "4917", "4930", "4915", "4916", "33", "44"])
CELLS = 120


@dataclass(frozen=True)
class SynthConfig:
    """Shape of the synthetic population.

    Attributes:
        subscribers: population size.
        days: days of events from ``start``.
        start: first day.
        events_per_day: mean usage records per subscriber-day.
        churn_share: share of subscribers terminating after day 40.
        late_share: share of records known 1-3 days after their event.
        seed: randomness.
    """

    subscribers: int = 1000
    days: int = 60
    start: date = date(2026, 8, 1)
    events_per_day: float = 10.0
    churn_share: float = 0.05
    late_share: float = 0.01
    seed: int = 7


def _us(d: date) -> int:
    return int(datetime.combine(d, datetime.min.time(), tzinfo=UTC).timestamp() * 1_000_000)


def _ids(prefix: str, numbers: np.ndarray, width: int = 7) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width, "0"), "")


def _known(rng: np.random.Generator, at: np.ndarray, late_share: float, kafka: bool = True) -> dict[str, pa.Array]:
    n = len(at)
    delay = rng.integers(1_000_000, 600_000_000, n)
    late = rng.random(n) < late_share
    delay = np.where(late, rng.integers(DAY_US, 3 * DAY_US, n), delay)
    known = at + delay
    no_kafka = (rng.random(n) < 0.05) if kafka else np.ones(n, bool)
    return {
        "_kafka_timestamp": pa.array(known, TS, mask=no_kafka),
        "_ingested_at": pa.array(known + 2_000_000, TS),
        "event_date": pc.cast(pa.array(at, TS), pa.date32()),
    }


class Population:
    """The subscribers of a config: plans, activation, churn day, home cell."""

    def __init__(self, cfg: SynthConfig) -> None:
        rng = np.random.default_rng(cfg.seed)
        n = self.n = cfg.subscribers
        self.cfg = cfg
        self.plan = rng.choice(3, n, p=[0.45, 0.4, 0.15])
        self.activated = _us(cfg.start) - rng.integers(DAY_US, 1500 * DAY_US, n)
        churner = (rng.random(n) < cfg.churn_share) & (cfg.days > 45)
        churn_day = rng.integers(40, max(41, cfg.days), n)
        self.churn_day = np.where(churner, churn_day, -1)
        self.activity = rng.gamma(4.0, 0.25, n)
        self.home_cell = rng.integers(0, CELLS, n)
        self.ott = rng.random(n) < 0.2
        self.ids = _ids("SUB", np.arange(n))

    def rate(self, day: int) -> np.ndarray:
        """Mean records per subscriber on ``day``: fading over 21 days before churn, none after."""
        r = self.cfg.events_per_day * self.activity
        to_churn = np.where(self.churn_day >= 0, self.churn_day - day, 10_000)
        fade = np.clip(to_churn / 21.0, 0.12, 1.0)
        return np.where(to_churn <= 0, 0.0, r * fade)


def usage_day(pop: Population, day: int, rng: np.random.Generator) -> pa.Table:
    """One day of silver usage rows."""
    counts = rng.poisson(pop.rate(day))
    sub = np.repeat(np.arange(pop.n), counts)
    m = len(sub)
    kind = rng.choice(3, m, p=[0.35, 0.15, 0.5])
    at = _us(pop.cfg.start) + day * DAY_US + rng.integers(0, DAY_US, m)
    at -= at % 1_000_000
    duration = np.where(kind == 0, rng.exponential(180, m).astype(np.int64) + 1, np.where(kind == 2, rng.integers(10, 3600, m), 0))
    volume = np.where(kind == 2, rng.exponential(30_000_000, m).astype(np.int64), 0)
    circle = rng.integers(0, 20, m)
    prefix = PREFIXES[circle % len(PREFIXES)]
    number = pc.binary_join_element_wise(pa.array(prefix), pc.utf8_lpad(pa.array(sub * 20 + circle).cast(pa.string()), 8, "0"), "")
    roaming = rng.random(m) < 0.02
    cell = (pop.home_cell[sub] + rng.integers(0, 3, m)) % CELLS
    table = {
        "record_id": _ids(f"U{day:03d}", np.arange(m), 9), "event_type": pa.array(np.array(["voice", "sms", "data"])[kind]),
        "subscriber_id": pop.ids.take(pa.array(sub)), "msisdn": _ids("49151", sub),
        "started_at": pa.array(at, TS), "duration_s": pa.array(duration), "bytes_up": pa.array(volume // 8),
        "bytes_down": pa.array(volume - volume // 8), "imsi": pa.nulls(m, pa.string()),
        "called_number": pc.if_else(pa.array(kind < 2), number, pa.nulls(m, pa.string())),
        "direction": pa.array(np.where(kind < 2, np.where(rng.random(m) < 0.5, "mo", "mt"), None)),
        "cell_id": pc.if_else(pa.array(roaming), pa.nulls(m, pa.string()), _ids("C", cell + 1, 4)),
        "visited_plmn": pa.array(np.where(roaming, "208-01", None)), "ott_partner_id": pa.nulls(m, pa.string()),
        "is_dropped": pa.array((kind == 0) & (rng.random(m) < 0.015)),
        **_known(rng, at, pop.cfg.late_share),
    }
    return pa.table(table, schema=USAGE_SCHEMA)


def usage_days(pop: Population) -> Iterator[pa.Table]:
    """Every day of usage, one table per day (bounded memory)."""
    rng = np.random.default_rng(pop.cfg.seed + 1)
    for day in range(pop.cfg.days):
        yield usage_day(pop, day, rng)


def bss_events(pop: Population) -> pa.Table:
    """Lifecycle, payments, tickets, plan changes, OTT and terminations of the whole window."""
    cfg, n = pop.cfg, pop.n
    rng = np.random.default_rng(cfg.seed + 2)
    start, days = _us(cfg.start), cfg.days
    subs, at, kinds, plans, attrs = [np.arange(n)], [pop.activated], [np.full(n, "activated")], [PLANS[pop.plan]], [np.full(n, None)]

    def add(sub: np.ndarray, t: np.ndarray, kind: str, plan=None, attr=None) -> None:
        keep = (pop.churn_day[sub] < 0) | (t < start + pop.churn_day[sub] * DAY_US)
        subs.append(sub[keep]), at.append(t[keep]), kinds.append(np.full(keep.sum(), kind))
        plans.append(np.full(keep.sum(), None) if plan is None else plan[keep])
        attrs.append(np.full(keep.sum(), None) if attr is None else attr[keep])

    bill_day = rng.integers(0, 28, n)
    for month_start in range(0, days, 30):
        t = start + (month_start + bill_day) * DAY_US + 3_600_000_000
        fail = rng.random(n) < np.where(pop.churn_day >= 0, 0.3, 0.03)
        add(np.arange(n)[fail], t[fail], "payment_failed")
        add(np.arange(n), t + fail * 2 * DAY_US, "payment")
    near = np.where(pop.churn_day >= 0, 6.0, 1.0)
    tickets = rng.poisson(0.02 * days * near)
    sub = np.repeat(np.arange(n), tickets)
    t = start + rng.integers(0, days * DAY_US, len(sub))
    ticket = np.array([json.dumps({"ticket_id": f"T{i:08d}", "category": "network_quality"}) for i in range(len(sub))], dtype=object)
    add(sub, t, "ticket_opened", attr=ticket)
    solved = rng.random(len(sub)) < 0.7
    add(sub[solved], t[solved] + rng.integers(3_600_000_000, 3 * DAY_US, solved.sum()), "ticket_resolved", attr=ticket[solved])
    changer = np.nonzero(rng.random(n) < np.where(pop.churn_day >= 0, 0.4, 0.05))[0]
    new_plan = np.maximum(pop.plan[changer] - 1, 0)
    t = start + rng.integers(0, days * DAY_US, len(changer))
    frm = np.array([json.dumps({"from_plan": p}) for p in PLANS[pop.plan[changer]]], dtype=object)
    add(changer, t, "plan_changed", plan=PLANS[new_plan], attr=frm)
    ott = np.nonzero(pop.ott)[0]
    add(ott, pop.activated[ott] + DAY_US, "ott_activated", attr=np.full(len(ott), json.dumps({"ott_partner_id": "ott-streamflix"})))
    churn = np.nonzero(pop.churn_day >= 0)[0]
    subs.append(churn), at.append(start + pop.churn_day[churn] * DAY_US + 36_000_000_000)
    kinds.append(np.full(len(churn), "terminated")), plans.append(np.full(len(churn), None)), attrs.append(np.full(len(churn), None))

    sub, t = np.concatenate(subs), np.concatenate(at)
    t -= t % 1_000_000
    m = len(sub)
    history = t < start
    known = _known(rng, t, cfg.late_share)
    known["_kafka_timestamp"] = pc.if_else(pa.array(history), pa.scalar(start - 3_600_000_000, TS), known["_kafka_timestamp"])
    table = {
        "event_id": _ids("B", np.arange(m), 9), "subscriber_id": pop.ids.take(pa.array(sub)),
        "account_id": _ids("ACC", sub), "occurred_at": pa.array(t, TS), "kind": pa.array(np.concatenate(kinds).astype(str)),
        "plan_id": pa.array(np.concatenate(plans), pa.string()), "amount": pa.nulls(m, BSS.schema.field("amount").type),
        "attributes": pa.array(np.concatenate(attrs), pa.string()), **known,
        "event_month": pc.strftime(pa.array(t, TS), format="%Y-%m"),
    }
    return pa.table(table, schema=BSS_SCHEMA)


def kpi_samples(cfg: SynthConfig) -> pa.Table:
    """Hourly KPI samples for every cell over the window."""
    rng = np.random.default_rng(cfg.seed + 3)
    hours = cfg.days * 24
    cell = np.repeat(np.arange(CELLS), hours)
    at = _us(cfg.start) + np.tile(np.arange(hours), CELLS) * 3_600_000_000
    attempts = rng.poisson(200, len(cell))
    bad = rng.random(len(cell)) < 0.01
    dropped = rng.binomial(attempts, np.where(bad, 0.3, 0.01))
    m = len(cell)
    table = {
        "event_id": _ids("N", np.arange(m), 9), "cell_id": _ids("C", cell + 1, 4), "site_id": _ids("S", cell // 3 + 1, 3),
        "observed_at": pa.array(at, TS), "kind": pa.array(np.full(m, "kpi")), "call_attempts": pa.array(attempts.astype(np.int64)),
        "dropped_calls": pa.array(dropped.astype(np.int64)), "prb_utilization": pa.array(rng.uniform(10, 90, m)),
        "latency_ms": pa.array(rng.uniform(10, 60, m)), "severity": pa.nulls(m, pa.string()), "code": pa.nulls(m, pa.string()),
        "cleared": pa.nulls(m, pa.bool_()), **_known(rng, at + 3_600_000_000, cfg.late_share),
    }
    table["event_date"] = pc.cast(pa.array(at, TS), pa.date32())
    return pa.table(table, schema=NETWORK_SCHEMA)

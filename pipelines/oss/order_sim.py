"""Simulated product orders from the BSS: new lines (some with an OTT bundle), plan changes, OTT add and
remove, terminations, cancellations in flight and malformed records; and what was planted.

Deterministic for a config. The planted fates come from the same function the simulated
targets use (:func:`pipelines.oss.responders.fates`), so the summary says what the
orchestrator should end up with: orders completed, failed (a permanent failure, compensated),
held (retries exhausted), cancelled; jeopardy alerts; retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import polars as pl

from pipelines.core.errors import ConfigError
from pipelines.oss.catalog import STEPS
from pipelines.oss.config import FulfilmentConfig, ResponderConfig
from pipelines.oss.responders import fates

PLANS = ("lite", "plus", "max")
OTT_PARTNERS = ("ott-streamflix", "ott-musicbox", "ott-gamecloud")
CHANNELS = ("web", "app", "shop", "callcentre")
MIX = {"new_line": 0.45, "plan_change": 0.2, "ott_add": 0.15, "ott_remove": 0.05, "termination": 0.15}
MALFORMED = (b"{not json", b'{"event_id": "x", "kind": "order"}', b'[1, 2, 3]')


@dataclass(frozen=True)
class OrderSimConfig:
    """What to simulate.

    Attributes:
        orders: product orders (cancellations and malformed records come on top).
        seed: the only source of randomness.
        start: event time of the first order.
        per_second: orders per second of event time.
        cancel_rate: share of orders cancelled in flight (a cancel right after the order).
        malformed_rate: share of extra malformed records.
        ott_with_new_line: share of new lines ordered with an OTT bundle (4 steps).
    """

    orders: int = 500
    seed: int = 11
    start: datetime = datetime(2026, 10, 8, 9, 0, tzinfo=UTC)
    per_second: float = 2.0
    cancel_rate: float = 0.05
    malformed_rate: float = 0.01
    ott_with_new_line: float = 0.3

    def __post_init__(self) -> None:
        if not isinstance(self.orders, int) or self.orders < 1:
            raise ConfigError(f"orders = {self.orders!r}: expected an integer >= 1")
        for name in ("cancel_rate", "malformed_rate", "ott_with_new_line"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} = {value!r}: expected a share between 0 and 1")


@dataclass
class OrderSim:
    """The records (in produce order, key = order_id) and what was planted."""

    records: list[tuple[bytes, bytes]]
    orders: pl.DataFrame  # order_id, order_type, channel, step_count, fate, fault_seq, retries, cancelled
    planted: dict[str, Any] = field(default_factory=dict)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def simulate_orders(cfg: OrderSimConfig, fcfg: FulfilmentConfig, rcfg: ResponderConfig, existing: pl.DataFrame | None = None) -> OrderSim:
    """Product orders over ``cfg.orders / cfg.per_second`` seconds from ``cfg.start``.

    Args:
        existing: current subscribers (``subscriber_id, account_id, plan_id``) for plan
            changes, OTT orders and terminations; made up when None.
    """
    rng = np.random.default_rng(cfg.seed)
    n = cfg.orders
    kinds = rng.choice(list(MIX), size=n, p=list(MIX.values()))
    channels = rng.choice(CHANNELS, size=n, p=[0.4, 0.3, 0.2, 0.1])
    gaps = rng.exponential(1.0 / cfg.per_second, size=n)
    at = [cfg.start + timedelta(seconds=float(s)) for s in np.cumsum(gaps) - gaps[0]]
    if existing is None or not len(existing):
        m = max(n, 50)
        existing = pl.DataFrame({"subscriber_id": [f"SUB8{i:06d}" for i in range(m)], "account_id": [f"ACC8{i // 2:06d}" for i in range(m)],
                                 "plan_id": [PLANS[i % 3] for i in range(m)]})
    pick = rng.integers(0, len(existing), size=n)
    ex_sub, ex_acc, ex_plan = (existing[c].to_list() for c in ("subscriber_id", "account_id", "plan_id"))
    tag = cfg.seed % 10
    records: list[dict] = []
    rows: list[dict] = []
    for i in range(n):
        kind = kinds[i]
        oid = f"ORD-{cfg.seed}-{i:06d}"
        items: list[dict] = []
        if kind == "new_line":
            sub, acc = f"SUB9{tag}{i:05d}", f"ACC9{tag}{i:05d}"
            items.append({"item_id": "1", "action": "add", "product": "mobile_line", "plan_id": PLANS[int(rng.integers(0, 3))],
                          "msisdn": f"491519{tag}{i:05d}", "imsi": f"262019{tag}{i:08d}", "country": "DE", "currency": "EUR",
                          "segment": "consumer" if rng.random() < 0.85 else "business"})
            if rng.random() < cfg.ott_with_new_line:
                items.append({"item_id": "2", "action": "add", "product": "ott_bundle", "ott_partner_id": OTT_PARTNERS[int(rng.integers(0, 3))]})
        else:
            sub, acc, plan = ex_sub[pick[i]], ex_acc[pick[i]], ex_plan[pick[i]] or "lite"
            if kind == "plan_change":
                new = [p for p in PLANS if p != plan][int(rng.integers(0, 2))]
                items.append({"item_id": "1", "action": "modify", "product": "plan", "plan_id": new, "from_plan_id": plan})
            elif kind in ("ott_add", "ott_remove"):
                items.append({"item_id": "1", "action": "add" if kind == "ott_add" else "delete", "product": "ott_bundle",
                              "ott_partner_id": OTT_PARTNERS[int(rng.integers(0, 3))]})
            else:
                items.append({"item_id": "1", "action": "delete", "product": "mobile_line", "reason": "customer_request"})
        steps = sum(len(STEPS[(it["product"], it["action"])]) for it in items)
        records.append({"event_id": f"OE-{cfg.seed}-{i:06d}", "order_id": oid, "kind": "order", "requested_at": _iso(at[i]),
                        "account_id": acc, "subscriber_id": sub, "channel": str(channels[i]), "items": items})
        rows.append({"order_id": oid, "order_type": kind, "channel": str(channels[i]), "step_count": steps, "requested_at": at[i]})
    orders = pl.DataFrame(rows)
    planted = fates(orders.select("order_id", "step_count"), rcfg, fcfg.max_attempts)
    orders = orders.join(planted, on="order_id")
    # Cancel only orders nothing else is planted on, so each planted outcome has one cause.
    cancel = (pl.Series(rng.random(n)) < cfg.cancel_rate) & (orders["fate"] == "ok")
    orders = orders.with_columns(cancel.alias("cancelled"))
    values: list[tuple[bytes, bytes]] = []
    enc = msgspec.json.Encoder()
    for rec, cancelled in zip(records, orders["cancelled"].to_list(), strict=True):
        key = rec["order_id"].encode()
        values.append((key, enc.encode(rec)))
        if cancelled:
            t = datetime.fromisoformat(rec["requested_at"].replace("Z", "+00:00")) + timedelta(seconds=1)
            values.append((key, enc.encode({"event_id": rec["event_id"] + "-cancel", "order_id": rec["order_id"], "kind": "cancel",
                                            "requested_at": _iso(t), "channel": rec["channel"]})))
    bad = int(round(n * cfg.malformed_rate))
    for j in range(bad):
        pos = int(rng.integers(0, len(values) + 1))
        values.insert(pos, (f"BAD-{j}".encode(), MALFORMED[j % len(MALFORMED)]))
    live = orders.filter(~pl.col("cancelled"))
    fate = live["fate"]
    planted_summary = {
        "orders": n, "cancels": int(orders["cancelled"].sum()), "malformed": bad,
        "expect_completed": int((fate.is_in(["ok", "retryable", "slow", "timeout", "lost"])).sum()),
        "expect_failed": int((fate == "permanent").sum()), "expect_held": int((fate == "exhausted").sum()),
        "expect_cancelled": int(orders["cancelled"].sum()),
        "expect_jeopardy": int(fate.is_in(["slow", "timeout", "lost"]).sum()),
        "planted_retryable": int((fate == "retryable").sum()), "planted_timeouts": int((fate == "timeout").sum()),
        "planted_lost": int((fate == "lost").sum()), "planted_slow": int((fate == "slow").sum()),
        "expect_retries": int(live.select(
            pl.when(pl.col("fate") == "retryable").then(pl.col("retries"))
            .when(pl.col("fate").is_in(["timeout", "lost"])).then(1)
            .when(pl.col("fate") == "exhausted").then(pl.col("max_attempts") - 1)
            .otherwise(0).sum()).item()),
        "by_type": dict(orders.group_by("order_type").len().sort("order_type").iter_rows()),
    }
    return OrderSim(records=values, orders=orders, planted=planted_summary)

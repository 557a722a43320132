"""Fulfil simulated orders end to end in one process, on a simulated clock: orders -> saga -> targets -> done.

The orchestrator and the simulated targets run in threads on the real topics and tables;
the targets answer at once (``completed_at`` carries the planted latency), and this driver
owns ``orders.clock``: whenever nothing is in flight on any topic (every order, command,
result and tick produced has been consumed), it ticks the clock to the earliest live timer
(+ grace), which fires it. That is a discrete-event simulation: hours of timeouts and
backoffs take milliseconds, and the outcome does not depend on how fast anything ran.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.core.broker import client_config
from pipelines.core.config import Settings
from pipelines.core.contracts import ORDERS
from pipelines.core.errors import FulfilmentError
from pipelines.ingest.kafka_source import StopFlag
from pipelines.oss.config import fulfilment_config
from pipelines.oss.order_sim import OrderSim
from pipelines.oss.responders import ResponderStats, run_responders
from pipelines.oss.run import Clock, FulfilStats, prepare_topics, run_fulfilment


@dataclass
class DriveResult:
    """What a simulated run did."""

    fulfil: FulfilStats
    responders: ResponderStats
    planted: dict[str, Any] = field(default_factory=dict)
    ticks: int = 0
    seconds: float = 0.0


def produce_orders(settings: Settings, records: list[tuple[bytes, bytes]]) -> int:
    """Produce order records (key = order_id) to ``orders.events``; returns how many."""
    from confluent_kafka import Producer

    producer = Producer({**client_config(settings), "linger.ms": 5, "enable.idempotence": True})
    topic = settings.topic(ORDERS.topic)
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    return len(records)


def _quiet(f: FulfilStats, r: ResponderStats, orders: int, ticks: int, results: int) -> bool:
    with r._lock:
        commands_in, results_out, pending = r.commands_in, r.results_out, r.pending
    return (f.get("in_orders") == orders and f.get("in_clock") == ticks and f.get("commands_out") == commands_in
            and f.get("in_results") == results_out + results and pending == 0)


def simulate_fulfilment(settings: Settings, sim: OrderSim | None = None, *, records: list[tuple[bytes, bytes]] | None = None,
                        workers: int | None = None, timeout_s: float = 300.0, extra_in: dict[str, int] | None = None) -> DriveResult:
    """Produce ``sim``'s orders (or ``records``) and drive them until none is in flight (held ones wait for a human).

    Args:
        extra_in: records others put on the input topics since the last run (``orders``,
            ``results``: an operator's retry, a test's stray result), so the driver knows to wait for them.

    Raises:
        FulfilmentError: orders still in flight after ``timeout_s`` or one without a live timer.
    """
    records = sim.records if sim is not None else (records or [])
    prepare_topics(settings)
    grace = timedelta(seconds=fulfilment_config(settings).grace_s)
    stop = StopFlag()
    fstats, rstats = FulfilStats(), ResponderStats()
    errors: list[BaseException] = []

    def guarded(fn, **kw) -> None:
        try:
            fn(settings, stop=stop, **kw)
        except BaseException as exc:  # surfaced below, after the other thread stopped
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(run_fulfilment,), kwargs={"clock": "external", "stats": fstats, "gauges": True, "workers": workers},
                         name="fulfilment", daemon=True),
        threading.Thread(target=guarded, args=(run_responders,), kwargs={"realtime": False, "stats": rstats}, name="responders", daemon=True),
    ]
    started = time.monotonic()
    extra_in = extra_in or {}
    produced = produce_orders(settings, records) + extra_in.get("orders", 0)
    for t in threads:
        t.start()
    clock = Clock(settings)
    last: datetime | None = None
    try:
        while True:
            if errors:
                raise errors[0]
            if time.monotonic() - started > timeout_s:
                raise FulfilmentError(f"fulfilment simulation: still {fstats.totals()['in_flight']} orders in flight after {timeout_s:.0f} s")
            if not _quiet(fstats, rstats, produced, clock.sent, extra_in.get("results", 0)):
                time.sleep(0.005)
                continue
            totals = fstats.totals()
            if not totals["in_flight"]:
                break
            if not totals["next_timer_us"]:
                raise FulfilmentError(f"fulfilment simulation: {totals['in_flight']} orders in flight and no live timer")
            due = datetime.fromtimestamp(totals["next_timer_us"] / 1e6, UTC) + grace
            last = due if last is None or due > last else last + timedelta(microseconds=1)
            clock.tick(last)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    if errors:
        raise errors[0]
    return DriveResult(fulfil=fstats, responders=rstats, planted=dict(sim.planted) if sim is not None else {},
                       ticks=clock.sent, seconds=time.monotonic() - started)


def existing_subscribers(settings: Settings):
    """Current subscribers from ``silver/subscribers`` (for plan changes, OTT orders, terminations), or None."""
    import polars as pl

    from pipelines.core.lake import Lake

    lake = Lake.from_settings(settings)
    if not lake.exists("silver/subscribers"):
        return None
    subs = pl.from_arrow(lake.read("silver/subscribers", columns=["subscriber_id", "account_id", "plan_id", "status", "is_current"]))
    subs = subs.filter(pl.col("is_current") & (pl.col("status") == "active")).sort("subscriber_id")
    return subs.select("subscriber_id", "account_id", "plan_id") if subs.height else None


def run_simulation(settings: Settings, cfg, *, fulfil: bool = True, workers: int | None = None) -> dict[str, Any]:
    """Simulate orders (``OrderSimConfig``) against the lake's subscribers; produce them, and with ``fulfil``
    drive them to the end on a simulated clock. Returns the planted summary and what happened."""
    from pipelines.oss.config import responder_config
    from pipelines.oss.order_sim import simulate_orders

    sim = simulate_orders(cfg, fulfilment_config(settings), responder_config(settings), existing_subscribers(settings))
    out: dict[str, Any] = {"planted": sim.planted}
    if not fulfil:
        prepare_topics(settings)
        out["produced"] = produce_orders(settings, sim.records)
        return out
    result = simulate_fulfilment(settings, sim, workers=workers)
    from pipelines.oss.kpis import figures

    out.update(produced=len(sim.records), ticks=result.ticks, seconds=round(result.seconds, 2),
               fulfil=result.fulfil.as_dict()["counts"], responders=result.responders.as_dict(), figures=figures(settings))
    return out

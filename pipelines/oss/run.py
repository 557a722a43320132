"""Run the orchestrator: prepare its topics, tick the clock, run the Bytewax flow, count what happened.

``run_fulfilment`` is the entry point a supervisor (``telcolake up``) runs next to
``run_responders`` (the simulated targets): both end cleanly when their ``stop`` flag is set.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipelines.core.broker import (
    client_config,
    ensure_topic_config,
    ensure_topics,
    resolve_bootstrap,
)
from pipelines.core.config import Settings
from pipelines.core.contracts import CLOCK, OSS_CONTRACTS
from pipelines.ingest.kafka_source import StopFlag
from pipelines.oss.config import fulfilment_config
from pipelines.oss.flow import OUT_TOPICS
from pipelines.oss.tables import STATE_TOPIC
from pipelines.streams.state import Emit

COMPACTED = {"cleanup.policy": "compact"}


@dataclass
class FulfilStats:
    """Counters over one run, and each shard's latest gauges (thread-safe: workers commit concurrently)."""

    counts: dict[str, int] = field(default_factory=dict)
    gauges: dict[int, dict[str, int]] = field(default_factory=dict)
    commits: int = 0
    seconds: float = 0.0
    ticks: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, emits: list[Emit]) -> None:
        with self._lock:
            for e in emits:
                for k, v in e.result.counts.items():
                    self.counts[k] = self.counts.get(k, 0) + v
                g = getattr(e, "gauges", None)
                if g is not None:
                    self.gauges[e.shard] = g
            self.commits += 1

    def get(self, name: str) -> int:
        with self._lock:
            return self.counts.get(name, 0)

    def totals(self) -> dict[str, int]:
        """In-flight and held orders, and the earliest live timer (µs since epoch, 0: none), over all shards."""
        with self._lock:
            g = list(self.gauges.values())
        timers = [x["next_timer_us"] for x in g if x["next_timer_us"]]
        return {"in_flight": sum(x["in_flight"] for x in g), "held": sum(x["held"] for x in g), "next_timer_us": min(timers, default=0)}

    def as_dict(self) -> dict:
        with self._lock:
            return {"counts": dict(sorted(self.counts.items())), "batches": self.commits, "ticks": self.ticks, "seconds": round(self.seconds, 3)}


def prepare_topics(settings: Settings) -> dict[str, str]:
    """Create the fulfilment topics when missing; ``orders.state`` with ``cleanup.policy=compact``.

    Returns:
        the broker's ``cleanup.policy`` of the state topic (the embedded broker accepts and
        reports it but does not compact: docs/fulfilment.md).
    """
    bootstrap = resolve_bootstrap(settings)
    names = [settings.topic(t) for t in (*OSS_CONTRACTS, *OUT_TOPICS)]
    ensure_topics(bootstrap, {n: settings.topics[n] for n in dict.fromkeys(names)}, extra=settings.kafka_client)
    return ensure_topic_config(bootstrap, settings.topic(STATE_TOPIC), COMPACTED, extra=settings.kafka_client)


def tick_value(at: datetime, tick_id: str | None = None) -> bytes:
    """An ``orders.clock`` record saying the time is ``at``."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f'{{"tick_id":"{tick_id or uuid.uuid4().hex}","tick_at":"{stamp}"}}'.encode()


class Clock:
    """Produces ticks on ``orders.clock`` (one partition: every shard sees the same sequence of times)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        self.topic = settings.topic(CLOCK.topic)
        self.producer = Producer({**client_config(settings), "linger.ms": 0, "enable.idempotence": True})
        self.sent = 0

    def tick(self, at: datetime | None = None) -> None:
        self.producer.produce(self.topic, value=tick_value(at or datetime.now(UTC)), partition=0)
        self.producer.flush(30)
        self.sent += 1


def run_fulfilment(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    stop: StopFlag | None = None,
    workers: int | None = None,
    clock: str | None = None,
    on_commit: Callable[[list[Emit]], None] | None = None,
    stats: FulfilStats | None = None,
    gauges: bool = False,
) -> FulfilStats:
    """Run the orchestrator in this process with ``workers`` Bytewax workers.

    Args:
        settings: the run's settings (``[fulfilment]``).
        until_caught_up: stop once the input on the topics at start is processed (one tick of
            the wall clock is sent first, so due timers fire).
        stop: ends the run after the batch in flight (Ctrl-C / SIGTERM from the CLI; a supervisor
            sets it). Without ``until_caught_up`` the run lasts until then.
        workers: Bytewax workers (default ``[fulfilment] workers``).
        clock: ``wall`` ticks ``orders.clock`` every ``tick_interval_s`` while running,
            ``external`` leaves it to someone else (default ``[fulfilment] clock``).
        on_commit: called on every batch's emits (progress).
        stats: counters to update (a caller watching from another thread passes its own).
        gauges: keep per-shard gauges (in flight, next timer) in ``stats`` (costs a little per batch).
    """
    from bytewax._bytewax import cli_main

    from pipelines.oss.flow import build_flow

    cfg = fulfilment_config(settings)
    clock = clock or cfg.clock
    stop = stop or StopFlag()
    stats = stats or FulfilStats()
    prepare_topics(settings)
    ticker_thread = None
    if clock == "wall":
        ticker = Clock(settings)
        ticker.tick()
        stats.ticks += 1
        if not until_caught_up:
            def ticking() -> None:
                while not stop.is_set():
                    time.sleep(cfg.tick_interval_s)
                    if not stop.is_set():
                        ticker.tick()
                        stats.ticks += 1

            ticker_thread = threading.Thread(target=ticking, name="fulfilment-clock", daemon=True)
            ticker_thread.start()

    def committed(emits: list[Emit]) -> None:
        stats.add(emits)
        if on_commit is not None:
            on_commit(emits)

    flow = build_flow(settings, until_caught_up=until_caught_up, stop=stop, on_commit=committed, gauges=gauges, clock=clock)
    started = time.monotonic()
    try:
        cli_main(flow, workers_per_process=workers or cfg.workers, epoch_interval=None)
    finally:
        stats.seconds = time.monotonic() - started
        if ticker_thread is not None:
            stop.set()
            ticker_thread.join(timeout=cfg.tick_interval_s + 5)
    return stats

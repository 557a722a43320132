"""Ingest: Kafka topics -> bronze Delta (+ quarantine), exactly once.

Run it with ``telcolake ingest`` or, for a cluster, ``python -m bytewax.run dataflows.ingest:flow``.
"""

from __future__ import annotations

import queue
import threading

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pipelines.broker import resolve_bootstrap
from pipelines.config import Settings, load_settings
from pipelines.contracts import CONTRACTS, Limits
from pipelines.kafka_source import KafkaBatchSource, RawBatch, StopFlag
from pipelines.lake import Lake
from pipelines.landing import BronzeWriter, DeadLetters, Landed, app_id, bronze_table


class _LandPartition(StatelessSinkPartition[RawBatch]):
    """Lands batches in order on one background thread, so the next batch is read meanwhile.

    Decoding (Arrow) and the Delta commit release the GIL, so reading from Kafka overlaps
    with landing. Order per segment is kept (one thread, FIFO); a batch queued but not
    committed when the process dies is simply read again on restart.
    """

    def __init__(self, writer: BronzeWriter, on_landed) -> None:
        self._writer = writer
        self._on_landed = on_landed
        self._queue: queue.Queue[RawBatch | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="telcolake-land", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # a commit failed: land nothing after it (order matters)
            try:
                landed = self._writer.land(batch)
                if self._on_landed is not None:
                    self._on_landed(landed)
            except BaseException as exc:  # surfaced on the dataflow's thread below
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"landing a batch failed: {self._error}") from self._error

    def write_batch(self, items: list[RawBatch]) -> None:
        self._raise()
        for batch in items:
            self._queue.put(batch)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()


class BronzeSink(DynamicSink[RawBatch]):
    """Lands each raw batch on the worker that read it (bronze, quarantine, dead letters)."""

    def __init__(self, lake: Lake, limits: Limits, bootstrap: str | None, extra_conf: dict, on_landed=None) -> None:
        self.lake, self.limits, self.bootstrap, self.extra_conf = lake, limits, bootstrap, extra_conf
        self.on_landed = on_landed

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LandPartition:
        dlq = DeadLetters(self.bootstrap, self.extra_conf) if self.bootstrap else None
        return _LandPartition(BronzeWriter(self.lake, limits=self.limits, dead_letters=dlq), self.on_landed)


def limits_of(settings: Settings) -> Limits:
    from datetime import timedelta

    i = settings.ingest
    return Limits(
        max_record_bytes=i.max_record_bytes,
        min_event_time=i.min_event_time,
        max_future_skew=timedelta(hours=i.max_future_skew_hours),
    )


def resume_offsets(lake: Lake, settings: Settings):
    """(topic, partition) -> next offset to read: the bronze position in the Delta log + 1."""
    from pipelines.contracts import contract_for
    from pipelines.kafka_source import segment_id

    def start(topic: str, partition: int) -> int:
        stored = lake.txn_version(bronze_table(contract_for(topic).topic), app_id(segment_id(topic, partition)))
        return 0 if stored is None else stored + 1

    return start


def build_flow(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    stop: StopFlag | None = None,
    on_landed=None,
    topics: list[str] | None = None,
) -> Dataflow:
    """The ingest dataflow for the configured topics.

    Args:
        settings: where the lake and the broker are, and the flush thresholds.
        until_caught_up: stop once everything on the topics at start has landed.
        stop: a flag that ends the flow cleanly after the current batch (Ctrl-C).
        on_landed: called with a :class:`Landed` after each commit (progress, counters).
        topics: contract topics to ingest (default: all three).
    """
    lake = Lake.from_settings(settings)
    bootstrap = resolve_bootstrap(settings)
    wanted = topics or list(CONTRACTS)
    names = [settings.topic(t) for t in wanted]
    i = settings.ingest
    source = KafkaBatchSource(
        bootstrap,
        names,
        resume_offsets(lake, settings),
        until_caught_up=until_caught_up,
        flush_rows=i.flush_rows,
        flush_bytes=i.flush_bytes,
        flush_seconds=i.flush_seconds,
        extra_conf=settings.kafka_client,
        stop=stop,
    )
    flow = Dataflow("ingest")
    raw = op.input("kafka_in", flow, source)  # RawBatch per topic: values + coordinates
    op.output("land", raw, BronzeSink(lake, limits_of(settings), bootstrap, settings.kafka_client, on_landed))
    return flow


def _flow_from_env() -> Dataflow:
    import os

    return build_flow(load_settings(), until_caught_up=os.environ.get("TELCOLAKE_UNTIL_CAUGHT_UP") == "1")


def __getattr__(name: str):
    # `python -m bytewax.run dataflows.ingest:flow` builds the flow from the environment lazily,
    # so importing this module never needs a running broker.
    if name == "flow":
        return _flow_from_env()
    raise AttributeError(name)


__all__ = ["BronzeSink", "Landed", "build_flow", "flow"]  # noqa: F822 (flow is built lazily)

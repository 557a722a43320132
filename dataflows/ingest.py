"""Ingest: Kafka topics -> bronze Delta (+ quarantine), exactly once; the Bytewax dataflow over
:mod:`pipelines.ingest.sink`.

Run it with ``telcolake ingest`` or, for a cluster, ``python -m bytewax.run dataflows.ingest:flow``.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from pipelines.core.broker import resolve_bootstrap
from pipelines.core.config import Settings, load_settings
from pipelines.core.contracts import CONTRACTS
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import KafkaBatchSource, StopFlag
from pipelines.ingest.landing import Landed
from pipelines.ingest.sink import BronzeSink, limits_of, resume_offsets


def build_flow(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    stop: StopFlag | None = None,
    on_landed=None,
    topics: list[str] | None = None,
    on_caught_up=None,
    on_offsets_failed=None,
) -> Dataflow:
    """The ingest dataflow for the configured topics.

    Args:
        settings: where the lake and the broker are, and the flush thresholds.
        until_caught_up: stop once everything on the topics at start has landed.
        stop: a flag that ends the flow cleanly after the current batch (Ctrl-C).
        on_landed: called with a :class:`Landed` after each commit (progress, counters).
        topics: contract topics to ingest (default: all three).
        on_caught_up: called once per worker when its partitions reached the end they had at start.
        on_offsets_failed: called with (group, error line) of each failed commit of the landed
            offsets to ``[ingest] consumer_group`` (monitoring only: the batch stays landed).
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
        idle_flush_seconds=i.idle_flush_seconds,
        extra_conf=settings.kafka_client,
        stop=stop,
        on_caught_up=on_caught_up,
    )
    flow = Dataflow("ingest")
    raw = op.input("kafka_in", flow, source)  # RawBatch per topic: values + coordinates
    sink = BronzeSink(lake, limits_of(settings), bootstrap, settings.kafka_client, on_landed,
                      group=i.consumer_group or None, on_offsets_failed=on_offsets_failed)
    op.output("land", raw, sink)  # bronze + quarantine commits, then the offsets to the consumer group
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

"""Wire a :class:`~pipelines.streams.state.FlowSpec` into a Bytewax dataflow: read, shard, apply, commit."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pipelines.core.broker import client_config, resolve_bootstrap
from pipelines.core.config import Settings
from pipelines.core.errors import ConcurrentWriterError
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import KafkaBatchSource, StopFlag
from pipelines.streams.config import stream_config
from pipelines.streams.state import (
    QUARANTINE,
    QUARANTINE_KEYS,
    QUARANTINE_SCHEMA,
    Emit,
    FlowSpec,
    Output,
    Part,
    Shard,
    checkpoint,
    merge,
    prepare_tables,
    split,
    start_offsets,
)

OnCommit = Callable[[str, list[Emit]], None]


class _CommitPartition(StatelessSinkPartition[tuple[str, Emit]]):
    """Per worker: MERGE every output, produce messages, then checkpoint the shards' state."""

    def __init__(self, lake: Lake, spec: FlowSpec, producer, topic: str | None, on_commit: OnCommit | None, stop: StopFlag) -> None:
        self.lake, self.spec, self.producer, self.topic, self.on_commit = lake, spec, producer, topic, on_commit
        self.stop = stop

    def write_batch(self, items: list[tuple[str, Emit]]) -> None:
        if self.stop.error is not None:
            return  # the flow is stopping because a checkpoint was refused: commit nothing after it
        try:
            self._commit([e for _, e in items])
        except ConcurrentWriterError as exc:
            self.stop.fail(exc)

    def _commit(self, emits: list[Emit]) -> None:
        outputs = dict(self.spec.outputs, quarantine=Output(QUARANTINE, QUARANTINE_SCHEMA, QUARANTINE_KEYS))
        tables: dict[str, list[pa.Table]] = {}
        for e in emits:
            for name, rows in e.result.rows.items():
                if rows.num_rows:
                    tables.setdefault(name, []).append(rows)
        for name, parts in tables.items():
            out = outputs[name]
            merge(self.lake, out.table, pa.concat_tables([p.cast(out.schema) for p in parts]), out.keys)
        if self.producer is not None:
            sent = 0
            for e in emits:
                for key, value in e.result.messages:
                    while True:
                        try:
                            self.producer.produce(self.topic, key=key, value=value)
                            break
                        except BufferError:
                            self.producer.poll(0.05)
                    sent += 1
            if sent:
                self.producer.flush(30)
        checkpoint(self.lake, self.spec, emits)
        if self.on_commit is not None:
            self.on_commit(self.spec.name, emits)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(30)
        if self.stop.error is not None and not self.stop.runner_raises:
            raise self.stop.error  # `python -m bytewax.run`: no runner reports it, so fail the flow


class CommitSink(DynamicSink[tuple[str, Emit]]):
    """Commits each shard's results on the worker that computed them."""

    def __init__(self, lake: Lake, spec: FlowSpec, conf: dict | None, topic: str | None, on_commit: OnCommit | None, stop: StopFlag) -> None:
        self.lake, self.spec, self.conf, self.topic, self.on_commit = lake, spec, conf, topic, on_commit
        self.stop = stop

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommitPartition:
        producer = None
        if self.conf is not None and self.topic is not None:
            from confluent_kafka import Producer

            producer = Producer({**self.conf, "linger.ms": 5, "enable.idempotence": True})
        return _CommitPartition(self.lake, self.spec, producer, self.topic, self.on_commit, self.stop)


def _apply(lake: Lake, spec: FlowSpec, topic: str, shard: Shard | None, part: Part) -> tuple[Shard, Emit]:
    shard = shard or Shard(spec, lake, part.shard)
    return shard, shard.apply(part, topic)


def add_flow(
    flow: Dataflow,
    spec: FlowSpec,
    settings: Settings,
    *,
    until_caught_up: bool = False,
    stop: StopFlag | None = None,
    on_commit: OnCommit | None = None,
) -> None:
    """Add ``spec``'s steps (its own Kafka input, shard step and commit sink) to ``flow``."""
    cfg = stream_config(settings).streams
    stop = stop or StopFlag()
    bootstrap = resolve_bootstrap(settings)
    lake = Lake.from_settings(settings)
    prepare_tables(lake, spec)
    topic = settings.topic(spec.contract.topic)
    source = KafkaBatchSource(
        bootstrap,
        [topic],
        start_offsets(lake, spec),
        until_caught_up=until_caught_up,
        flush_rows=cfg.flush_rows,
        flush_seconds=cfg.flush_seconds,
        extra_conf=settings.kafka_client,
        stop=stop,
        group_id=f"telcolake-stream-{spec.name}",
    )
    out_topic = settings.topic(spec.alerts_topic) if spec.alerts_topic else None
    conf = client_config(settings, bootstrap=bootstrap) if out_topic else None
    n = spec.name
    raw = op.input(f"{n}_in", flow, source)  # RawBatch of the input topic
    parts = op.flat_map(f"{n}_split", raw, partial(split, spec))  # (shard, Part) for every shard
    emits = op.stateful_map(f"{n}_shard", parts, partial(_apply, lake, spec, topic))  # (shard, Emit)
    op.output(f"{n}_commit", emits, CommitSink(lake, spec, conf, out_topic, on_commit, stop))


def flow_module(name: str, spec_of: Callable[[Settings], FlowSpec], doc: str) -> tuple[Callable[..., Dataflow], Callable[[str], Dataflow]]:
    """``build_flow`` and the module ``__getattr__`` of a dataflow module holding one flow spec.

    ``python -m bytewax.run dataflows.<module>:flow`` reads the module's ``flow``, built lazily
    from the environment (``TELCOLAKE_UNTIL_CAUGHT_UP=1`` stops once caught up).
    """

    def build_flow(settings: Settings, *, until_caught_up: bool = False, stop: StopFlag | None = None,
                   on_commit: OnCommit | None = None) -> Dataflow:
        flow = Dataflow(name)
        add_flow(flow, spec_of(settings), settings, until_caught_up=until_caught_up, stop=stop, on_commit=on_commit)
        return flow

    def module_getattr(attr: str) -> Dataflow:
        if attr == "flow":
            import os

            from pipelines.core.config import load_settings

            return build_flow(load_settings(), until_caught_up=os.environ.get("TELCOLAKE_UNTIL_CAUGHT_UP") == "1")
        raise AttributeError(attr)

    build_flow.__doc__ = doc
    return build_flow, module_getattr

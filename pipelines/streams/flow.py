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
from pipelines.core.lake import Lake, txn_versions
from pipelines.ingest.kafka_source import KafkaBatchSource, StopFlag
from pipelines.ingest.offsets import GroupOffsets
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
    app_id,
    checkpoint,
    merge,
    prepare_tables,
    split,
    start_offsets,
)

OnCommit = Callable[[str, list[Emit]], None]


class _CommitPartition(StatelessSinkPartition[tuple[str, Emit]]):
    """Per worker: MERGE every output, produce messages, then checkpoint the shards' state."""

    def __init__(self, lake: Lake, spec: FlowSpec, producer, topic: str | None, on_commit: OnCommit | None, stop: StopFlag,
                 offsets: GroupOffsets | None = None) -> None:
        self.lake, self.spec, self.producer, self.topic, self.on_commit = lake, spec, producer, topic, on_commit
        self.stop, self.offsets = stop, offsets
        self.segments: set[str] = set()

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
        if self.offsets is not None:
            self.segments.update(seg for e in emits for seg in e.positions)
            self.offsets.landed()  # the thread reads the smallest position over the shards from the Delta log
        if self.on_commit is not None:
            self.on_commit(self.spec.name, emits)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(30)
        if self.offsets is not None:
            self.offsets.close(timeout=5)
        if self.stop.error is not None and not self.stop.runner_raises:
            raise self.stop.error  # `python -m bytewax.run`: no runner reports it, so fail the flow


class CommitSink(DynamicSink[tuple[str, Emit]]):
    """Commits each shard's results on the worker that computed them.

    With ``group`` (``telcolake-<flow>``), each checkpoint is followed by publishing the flow's
    landed offsets (per partition the smallest position over the shards, read back from the
    Delta log: what a restart resumes from) to that consumer group, for lag tools only.
    """

    def __init__(self, lake: Lake, spec: FlowSpec, conf: dict | None, topic: str | None, on_commit: OnCommit | None, stop: StopFlag,
                 *, group: str | None = None, group_conf: dict | None = None, on_offsets_failed=None) -> None:
        self.lake, self.spec, self.conf, self.topic, self.on_commit = lake, spec, conf, topic, on_commit
        self.stop = stop
        self.group, self.group_conf, self.on_offsets_failed = group, group_conf, on_offsets_failed

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommitPartition:
        producer = None
        if self.conf is not None and self.topic is not None:
            from confluent_kafka import Producer

            producer = Producer({**self.conf, "linger.ms": 5, "enable.idempotence": True})
        part = _CommitPartition(self.lake, self.spec, producer, self.topic, self.on_commit, self.stop)
        if self.group and self.group_conf is not None and worker_index == 0:  # one publisher: it reads every shard
            conf = dict(self.group_conf)
            bootstrap = conf.pop("bootstrap.servers")
            handle = self.lake.handle(self.spec.state_table)
            part.offsets = GroupOffsets(bootstrap, self.group, extra_conf=conf, on_failure=self.on_offsets_failed,
                                        resolve=partial(landed_offsets, self.spec, handle, part.segments))
        return part


def landed_offsets(spec: FlowSpec, handle, segments: set[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the flow's next offset to read (smallest over its shards + 1) for ``segments``."""
    dt = handle.snapshot()
    out = {}
    for seg in list(segments):
        found = txn_versions(dt, [app_id(spec.name, s, seg) for s in range(spec.shards)])
        if all(v is not None for v in found.values()):
            topic, partition = seg.rsplit("-", 1)
            out[(topic, int(partition))] = min(int(v) for v in found.values()) + 1
    return out


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
    on_offsets_failed: Callable[[str, str], None] | None = None,
) -> None:
    """Add ``spec``'s steps (its own Kafka input, shard step and commit sink) to ``flow``.

    ``on_offsets_failed`` gets (group, error line) of each failed commit to the flow's consumer group.
    """
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
    group = f"{cfg.consumer_group_prefix}{n}" if cfg.consumer_group_prefix else None
    sink = CommitSink(lake, spec, conf, out_topic, on_commit, stop, group=group,
                      group_conf=client_config(settings, bootstrap=bootstrap), on_offsets_failed=on_offsets_failed)
    op.output(f"{n}_commit", emits, sink)  # MERGE outputs, produce, checkpoint; then the offsets to the group


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

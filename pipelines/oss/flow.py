"""Wire the orchestrator into a Bytewax dataflow: three input topics, shards by order, a commit sink.

It reuses the stream machinery of :mod:`pipelines.streams.state` (stable shards, state and
Kafka offsets checkpointed in one Delta commit, outputs MERGEd on their keys, restarts that
skip what a shard already applied) with two differences:

- three inputs (``orders.events``, ``provisioning.results``, ``orders.clock``); a tick goes
  to every shard;
- the commit is split: commands, BSS events and the state topic go out with every batch
  (low latency), while the Delta tables and the checkpoint are written every
  ``commit_interval_s`` and when the flow ends. This is safe because every message is a
  deterministic function of the input and commands are idempotent by ``command_id``: after a
  crash the shard restores its last checkpoint, replays the input since, and sends the same
  commands again, which the targets recognise. The producer is flushed before each
  checkpoint, so a checkpoint never covers a message that was not delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import bytewax.operators as op
import numpy as np
import polars as pl
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pipelines.core.broker import client_config, resolve_bootstrap
from pipelines.core.config import Settings
from pipelines.core.contracts import CLOCK, ORDERS, RESULTS, Contract, decode_batch
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import KafkaBatchSource, RawBatch, StopFlag, segment_id
from pipelines.oss.config import FulfilmentConfig, fulfilment_config
from pipelines.oss.saga import FLOW, SagaLogic, SagaOutput, as_tables
from pipelines.oss.tables import OUTPUTS
from pipelines.streams.state import (
    QUARANTINE,
    QUARANTINE_KEYS,
    QUARANTINE_SCHEMA,
    TS,
    Emit,
    FlowSpec,
    Output,
    app_id,
    checkpoint,
    merge,
    prepare_tables,
    shard_of,
    start_offsets,
)

SOURCES = (("orders", ORDERS), ("results", RESULTS), ("clock", CLOCK))
OUT_TOPICS = ("provisioning.commands", "bss.events", "orders.state", "orders.jeopardy")
OnCommit = Callable[[list[Emit]], None]


@dataclass
class SagaPart:
    """One shard's share of one source batch (possibly empty: it still moves the offsets)."""

    shard: int
    source: str
    rows: pa.Table
    last: dict[str, int]
    rejects: pa.Table | None = None
    total: int = 0  # records in the whole batch (shard 0 only, for progress counters)


def spec_of(settings: Settings, cfg: FulfilmentConfig | None = None) -> FlowSpec:
    """The flow's spec: state table ``ops/stream_state/fulfilment``, its outputs and shards."""
    cfg = cfg or fulfilment_config(settings)
    return FlowSpec(name=FLOW, contract=ORDERS, key="order_id", shards=cfg.shards, outputs=dict(OUTPUTS),
                    make_logic=lambda: SagaLogic(cfg))


def split(spec: FlowSpec, sources: dict[str, tuple[str, Contract]], batch: RawBatch) -> list[tuple[str, SagaPart]]:
    """Decode a raw batch of one input topic and cut it into one part per shard (ticks: the same for all)."""
    source, contract = sources[batch.topic]
    decoded = decode_batch(contract, batch.values)
    idx = decoded.index.to_numpy(zero_copy_only=False).astype(np.int64)
    rows = decoded.table.append_column("_kafka_partition", pa.array(batch.partition[idx], pa.int32()))
    rows = rows.append_column("_kafka_offset", pa.array(batch.pos[idx], pa.int64()))
    rows = rows.append_column("_kafka_timestamp", pa.array(batch.timestamp_ms[idx] * 1000, pa.int64()).cast(TS))
    rejects = None
    if decoded.rejects:
        pos = np.array([i for i, _ in decoded.rejects], dtype=np.int64)
        n = len(pos)
        rejects = pa.table({
            "flow": pa.array([spec.name] * n, pa.string()),
            "reason": pa.array([f"decode:{r}" for _, r in decoded.rejects], pa.string()),
            "_kafka_topic": pa.array([batch.topic] * n, pa.string()),
            "_kafka_partition": pa.array(batch.partition[pos], pa.int32()),
            "_kafka_offset": pa.array(batch.pos[pos], pa.int64()),
            "event_id": pa.nulls(n, pa.string()), "entity_id": pa.nulls(n, pa.string()),
            "event_at": pa.nulls(n, TS), "watermark_at": pa.nulls(n, TS),
            "raw": pa.array([batch.values[i] for i in pos], pa.binary()),
        }, schema=QUARANTINE_SCHEMA)
    last = batch.last_positions()
    if source == "clock" or not rows.num_rows:
        shards = None
    else:
        shards = shard_of(rows["order_id"], spec.shards)
    parts = []
    for s in range(spec.shards):
        mine = rows if shards is None else rows.filter(pa.array(shards == s))
        parts.append((str(s), SagaPart(shard=s, source=source, rows=mine, last=last, rejects=rejects if s == 0 else None,
                                       total=len(batch) if s == 0 else 0)))
    return parts


class SagaShard:
    """A shard's saga plus the offsets it has applied; restored lazily from its checkpoint."""

    def __init__(self, spec: FlowSpec, lake: Lake, shard: int, cfg: FulfilmentConfig, topics: dict[str, str], gauges: bool,
                 hold: bool) -> None:
        self.spec, self.lake, self.shard, self.want_gauges = spec, lake, shard, gauges
        self.logic = SagaLogic(cfg, topics, hold_until_clock=hold)
        self.positions: dict[str, int] = {}
        if lake.exists(spec.state_table):
            t = lake.read(spec.state_table, filter=pa.compute.field("shard") == shard)
            if t.num_rows:
                self.logic.restore({p: pa.ipc.open_stream(b).read_all() for p, b in zip(t["part"].to_pylist(), t["payload"].to_pylist(), strict=True)})

    def __deepcopy__(self, memo: dict) -> SagaShard:
        return self  # Bytewax's own snapshots are not used: the Delta checkpoint is the recovery

    def position(self, segment: str) -> int:
        if segment not in self.positions:
            v = self.lake.txn_version(self.spec.state_table, app_id(self.spec.name, self.shard, segment))
            self.positions[segment] = -1 if v is None else int(v)
        return self.positions[segment]

    def apply(self, part: SagaPart, topic_of: dict[str, str]) -> Emit:
        topic = topic_of[part.source]
        rows = part.rows
        if rows.num_rows:
            partition = rows["_kafka_partition"].to_numpy()
            stored = np.full(int(partition.max()) + 1, -1, dtype=np.int64)
            for p in np.unique(partition).tolist():
                stored[p] = self.position(segment_id(topic, p))
            fresh = pa.compute.greater(rows["_kafka_offset"], pa.array(stored[partition]))
            if not pa.compute.all(fresh).as_py():
                rows = rows.filter(fresh)
        result = self.logic.process(part.source, pl.from_arrow(rows)) if rows.num_rows else SagaOutput()
        if part.total:
            result.counts[f"in_{part.source}"] = part.total
        if part.rejects is not None:
            keep = [self.position(segment_id(topic, p)) < o for p, o in
                    zip(part.rejects["_kafka_partition"].to_pylist(), part.rejects["_kafka_offset"].to_pylist(), strict=True)]
            rejects = part.rejects.filter(pa.array(keep, pa.bool_()))
            if rejects.num_rows:
                prev = result.rows.get("quarantine")
                result.rows["quarantine"] = rejects if prev is None else pa.concat_tables([prev, rejects.cast(prev.schema)])
                result.counts["rejected"] = result.counts.get("rejected", 0) + rejects.num_rows
        for segment, pos in part.last.items():
            self.positions[segment] = max(self.position(segment), pos)
        emit = Emit(shard=self.shard, result=result, state=self.logic.snapshot(), positions=dict(self.positions))
        emit.gauges = self.logic.gauges() if self.want_gauges else None  # type: ignore[attr-defined]
        return emit


def _apply(lake: Lake, spec: FlowSpec, cfg: FulfilmentConfig, topics: dict[str, str], topic_of: dict[str, str], gauges: bool,
           hold: bool, shard: SagaShard | None, part: SagaPart) -> tuple[SagaShard, Emit]:
    shard = shard or SagaShard(spec, lake, part.shard, cfg, topics, gauges, hold)
    return shard, shard.apply(part, topic_of)


class _CommitPartition(StatelessSinkPartition[tuple[str, Emit]]):
    """Per worker: messages with every batch; every interval, in a background thread, the tables, then the
    delivery of every message produced so far, then the checkpoint (so a commit never stalls the batches)."""

    def __init__(self, lake: Lake, spec: FlowSpec, producer, topics: dict[str, str], interval: float, on_commit: OnCommit | None) -> None:
        self.lake, self.spec, self.producer, self.topics, self.interval, self.on_commit = lake, spec, producer, topics, interval, on_commit
        self.outputs = dict(spec.outputs, quarantine=Output(QUARANTINE, QUARANTINE_SCHEMA, QUARANTINE_KEYS))
        self.pending: dict[str, list[pa.Table]] = {}
        self.latest: dict[int, Emit] = {}
        self.last_commit = time.monotonic()
        self.seq = 0  # messages produced
        self.undelivered: set[int] = set()
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.committing: threading.Thread | None = None
        self.error: BaseException | None = None

    def _delivered(self, seq: int):
        def done(err, _msg) -> None:
            with self.lock:
                self.undelivered.discard(seq)
                if err is not None:
                    self.failed.append(str(err))
        return done

    def write_batch(self, items: list[tuple[str, Emit]]) -> None:
        if self.error is not None:
            raise self.error
        emits = [e for _, e in items]
        for e in emits:
            for name, rows in e.result.rows.items():
                if rows.num_rows:
                    self.pending.setdefault(name, []).append(rows)
            self.latest[e.shard] = e
            for contract_topic, messages in e.result.messages.items():
                topic = self.topics[contract_topic]
                for key, value in messages:
                    self.seq += 1
                    with self.lock:
                        self.undelivered.add(self.seq)
                    while True:
                        try:
                            self.producer.produce(topic, key=key, value=value, on_delivery=self._delivered(self.seq))
                            break
                        except BufferError:
                            self.producer.poll(0.05)
        self.producer.poll(0)
        busy = self.committing is not None and self.committing.is_alive()
        if not busy and time.monotonic() - self.last_commit >= self.interval and (self.pending or self.latest):
            work = (self.pending, self.latest, self.seq)
            self.pending, self.latest = {}, {}
            self.last_commit = time.monotonic()
            self.committing = threading.Thread(target=self._commit_guarded, args=work, name="fulfilment-commit", daemon=True)
            self.committing.start()
        if self.on_commit is not None:
            self.on_commit(emits)

    def _commit_guarded(self, pending: dict[str, list[pa.Table]], latest: dict[int, Emit], upto: int) -> None:
        try:
            self._commit(pending, latest, upto)
        except BaseException as exc:  # raised in the flow's thread at its next batch
            self.error = exc

    def _commit(self, pending: dict[str, list[pa.Table]], latest: dict[int, Emit], upto: int) -> None:
        for name, parts in pending.items():
            out = self.outputs[name]
            merge(self.lake, out.table, pa.concat_tables([p.cast(out.schema) for p in parts]), out.keys)
        deadline = time.monotonic() + 60
        while True:
            with self.lock:
                if self.failed:
                    raise RuntimeError(f"Kafka refused a message ({self.failed[0]}); not checkpointing past it")
                waiting = any(s <= upto for s in self.undelivered)
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Kafka did not take every message within 60 s; not checkpointing past them")
            self.producer.poll(0.01)
        if latest:
            for e in latest.values():
                e.state = as_tables(e.state)
            checkpoint(self.lake, self.spec, latest)

    def close(self) -> None:
        if self.committing is not None:
            self.committing.join()
        if self.error is not None:
            raise self.error
        self._commit(self.pending, self.latest, self.seq)
        self.producer.flush(60)


class CommitSink(DynamicSink[tuple[str, Emit]]):
    def __init__(self, lake: Lake, spec: FlowSpec, conf: dict, topics: dict[str, str], interval: float, on_commit: OnCommit | None) -> None:
        self.lake, self.spec, self.conf, self.topics, self.interval, self.on_commit = lake, spec, conf, topics, interval, on_commit

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommitPartition:
        from confluent_kafka import Producer

        producer = Producer({**self.conf, "linger.ms": 1, "enable.idempotence": True})
        return _CommitPartition(self.lake, self.spec, producer, self.topics, self.interval, self.on_commit)


def build_flow(settings: Settings, *, until_caught_up: bool = False, stop: StopFlag | None = None,
               on_commit: OnCommit | None = None, gauges: bool = False, clock: str | None = None) -> Dataflow:
    """The fulfilment dataflow for ``settings`` (tables prepared, resume offsets read from the checkpoint).

    With the ``wall`` clock (``clock`` or ``[fulfilment] clock``) a shard decides nothing before its first tick.
    """
    cfg = fulfilment_config(settings)
    hold = (clock or cfg.clock) == "wall"
    spec = spec_of(settings, cfg)
    lake = Lake.from_settings(settings)
    prepare_tables(lake, spec)
    bootstrap = resolve_bootstrap(settings)
    topic_of = {source: settings.topic(c.topic) for source, c in SOURCES}
    sources = {settings.topic(c.topic): (source, c) for source, c in SOURCES}
    topics = {t: settings.topic(t) for t in (*OUT_TOPICS, *(c.topic for _, c in SOURCES))}
    source = KafkaBatchSource(bootstrap, list(topic_of.values()), start_offsets(lake, spec), until_caught_up=until_caught_up,
                              flush_rows=cfg.flush_rows, flush_seconds=cfg.flush_seconds,
                              extra_conf={"fetch.wait.max.ms": cfg.fetch_wait_ms, **settings.kafka_client},
                              stop=stop, group_id="telcolake-fulfilment")
    source.poll_timeout_s = min(source.poll_timeout_s, cfg.flush_seconds)
    flow = Dataflow("fulfilment")
    raw = op.input("fulfilment_in", flow, source)  # RawBatch of one input topic
    parts = op.flat_map("fulfilment_split", raw, partial(split, spec, sources))  # (shard, SagaPart)
    emits = op.stateful_map("fulfilment_shard", parts, partial(_apply, lake, spec, cfg, topics, topic_of, gauges, hold))  # (shard, Emit)
    op.output("fulfilment_commit", emits, CommitSink(lake, spec, client_config(settings, bootstrap=bootstrap), topics,
                                                     cfg.commit_interval_s, on_commit))
    return flow

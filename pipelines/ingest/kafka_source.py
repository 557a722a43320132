"""A Bytewax source that reads Kafka partitions from offsets it is given, in batches.

Every dataflow that consumes Kafka uses it. It does not use consumer groups: the caller says
where each partition starts (for ingest: the offsets stored in the Delta log), and each
worker reads a disjoint round-robin share of the (topic, partition) pairs.

Batches are emitted per topic when they reach a row count, a byte size or an age. Once the
consumer has caught up (a poll returned less than a full batch: the partitions are at their
end), a batch is emitted as soon as its oldest record waited ``idle_flush_seconds``, so a
steady stream lands within a fraction of a second; under backlog polls come back full and
batches grow to the size thresholds. With ``until_caught_up`` the source stops once every
partition it owns reached the end it had when the source started. The embedded broker under-reports the high watermark (DESIGN.md),
so "reached" means: partition EOF seen at or past that start watermark, never "offset >=
high watermark - 1".
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipelines.core.errors import TelcolakeError

StartOffsets = Callable[[str, int], int]
"""(topic, partition) -> first offset to read."""


@dataclass
class RawBatch:
    """Raw records of one topic, in arrival order, with where each came from.

    Attributes:
        topic: the topic (or, for files, the contract topic) the records belong to.
        source: ``kafka`` or ``file:<name>``.
        values: raw values (None for a tombstone).
        keys: raw keys.
        segments: the resumable units in this batch: ``<topic>-<partition>`` for Kafka, the
            file's id for files; each one's committed position lives in the Delta log.
        seg: per record, the index of its segment.
        pos: per record, its offset (Kafka) or row number (file) within the segment.
        partition: per record, the Kafka partition (None for files).
        timestamp_ms: per record, the Kafka message timestamp (None for files).
        delivered_ms: for a dump file named by its date, the end of that day (when the file was
            delivered; epoch ms); None otherwise.
    """

    topic: str
    source: str
    values: list[bytes | None]
    keys: list[bytes | None]
    segments: list[str]
    seg: np.ndarray
    pos: np.ndarray
    partition: np.ndarray | None = None
    timestamp_ms: np.ndarray | None = None
    nbytes: int = 0
    delivered_ms: int | None = None

    def __len__(self) -> int:
        return len(self.values)

    def last_positions(self) -> dict[str, int]:
        """Segment -> highest position in this batch."""
        out: dict[str, int] = {}
        if len(self.pos):
            highest = np.full(len(self.segments), -1, dtype=np.int64)
            np.maximum.at(highest, self.seg, self.pos)
            out = {s: int(h) for s, h in zip(self.segments, highest, strict=True) if h >= 0}
        return out


def segment_id(topic: str, partition: int) -> str:
    """Segment (and Delta app transaction) id of a Kafka partition."""
    return f"{topic}-{partition}"


@dataclass
class _Buffer:
    values: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    partitions: list = field(default_factory=list)
    offsets: list = field(default_factory=list)
    timestamps: list = field(default_factory=list)
    nbytes: int = 0
    since: float = 0.0

    def take(self, topic: str, partitions_of_topic: list[int]) -> RawBatch:
        parts = np.asarray(self.partitions, dtype=np.int32)
        batch = RawBatch(
            topic=topic,
            source="kafka",
            values=self.values,
            keys=self.keys,
            segments=[segment_id(topic, p) for p in partitions_of_topic],
            seg=np.searchsorted(np.asarray(partitions_of_topic, dtype=np.int32), parts).astype(np.int32),
            pos=np.asarray(self.offsets, dtype=np.int64),
            partition=parts,
            timestamp_ms=np.asarray(self.timestamps, dtype=np.int64),
            nbytes=self.nbytes,
        )
        self.__init__()
        return batch


def _group(messages: list, topics: list[str]) -> dict[str, list]:
    groups: dict[str, list] = {}
    for msg, topic in zip(messages, topics, strict=True):
        groups.setdefault(topic, []).append(msg)
    return groups


class StopFlag:
    """Set by SIGINT/SIGTERM (when installed): sources finish their batch and end cleanly.

    A step that cannot go on (another process writes the same state) calls :meth:`fail`: the
    flow ends the same way, and the runner raises the error after it (one line, no panic).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error: BaseException | None = None
        self.runner_raises = False  # set by a runner that raises ``error`` after the flow; else the sink does

    def set(self) -> None:
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        """Stop because a step cannot go on; the runner raises ``exc`` once the flow ended."""
        if self.error is None:
            self.error = exc
        self.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        """Make Ctrl-C and SIGTERM request a clean stop instead of raising."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.set())


class OffsetsAhead(TelcolakeError):
    """The lake has read a partition past the topic's end: the topic was recreated or truncated."""


def check_resume(bootstrap: str, topics: list[str], start_offsets: StartOffsets, extra_conf: dict | None = None) -> None:
    """Refuse to resume any partition of ``topics`` past its topic's true end.

    Only partitions whose resume offset is past the reported high watermark are read to their
    true end (the embedded broker under-reports it, so that is normal there after a full read).

    Raises:
        OffsetsAhead: naming each such partition. Reading on would wait for offsets the new
            topic may never reach, and once it does, treat other records as already landed.
    """
    from pipelines.core.broker import end_offsets

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "telcolake-offsets", "enable.auto.commit": False,
                         "log_level": 2, **(extra_conf or {})})
    beyond: dict[str, dict[int, int]] = {}
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                start = int(start_offsets(topic, p))
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if start > high:
                    beyond.setdefault(topic, {})[p] = start
    finally:
        consumer.close()
    problems = []
    for topic, parts in sorted(beyond.items()):
        ends = end_offsets(bootstrap, topic, extra=extra_conf)
        problems += [f"{topic} partition {p}: the lake has read up to offset {start - 1:,}, the topic ends at {ends[p]:,}"
                     for p, start in sorted(parts.items()) if start > ends.get(p, start)]
    if problems:
        raise OffsetsAhead(
            "; ".join(problems) + ". The topic was recreated or truncated since (the embedded broker keeps topics in "
            "memory: a broker restart empties them). Its records at those offsets are not the ones already landed, so "
            "nothing is read: use a fresh lake (TELCOLAKE_LAKE) for the new topic, or recreate topic and lake together."
        )


class _KafkaPartition(StatelessSourcePartition[RawBatch]):
    def __init__(self, source: KafkaBatchSource, owned: list[tuple[str, int]]) -> None:
        self._src = source
        self._owned = owned
        self._by_topic: dict[str, list[int]] = {}
        for topic, p in owned:
            self._by_topic.setdefault(topic, []).append(p)
        self._buffers = {t: _Buffer() for t in self._by_topic}
        self._done: set[tuple[str, int]] = set()
        self._targets: dict[tuple[str, int], int] = {}
        self._caught_up_told = False
        self._consumer: Consumer | None = None
        self._closed = False
        if not owned:
            return
        conf = {
            "bootstrap.servers": source.bootstrap,
            "group.id": source.group_id,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
            "fetch.wait.max.ms": 50,
            "queued.max.messages.kbytes": 256 << 10,
            "log_level": 2,
            **source.extra_conf,
        }
        self._consumer = Consumer(conf)
        assignment = []
        for topic, p in owned:
            start = max(int(source.start_offsets(topic, p)), 0)
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if start < low:
                start = low  # retention removed records before we read them; nothing older exists
            self._targets[(topic, p)] = max(high, start)
            assignment.append(TopicPartition(topic, p, start))
        self._consumer.assign(assignment)

    def next_batch(self) -> list[RawBatch]:
        if self._closed:
            raise StopIteration
        out: list[RawBatch] = []
        stopping = self._src.stop.is_set()
        idle = True
        if self._consumer is not None and not stopping:
            messages = self._consumer.consume(num_messages=self._src.poll_records, timeout=self._src.poll_timeout_s)
            idle = len(messages) < self._src.poll_records
            if messages:
                self._take(messages)
        caught_up = len(self._done) == len(self._owned)
        if caught_up and not self._caught_up_told and self._src.on_caught_up is not None:
            self._caught_up_told = True
            self._src.on_caught_up()
        finished = stopping or (self._src.until_caught_up and caught_up)
        now = time.monotonic()
        for topic, buf in self._buffers.items():
            if not buf.values:
                continue
            full = len(buf.values) >= self._src.flush_rows or buf.nbytes >= self._src.flush_bytes
            age = now - buf.since
            old = age >= self._src.flush_seconds or (idle and age >= self._src.idle_flush_seconds)
            if full or old or finished:
                out.append(buf.take(topic, self._by_topic[topic]))
        if finished:
            self.close()
        return out

    def _take(self, messages: list) -> None:
        """Append a consumed batch to the per-topic buffers (list comprehensions: C loops)."""
        good = [m for m in messages if m.error() is None]
        if len(good) != len(messages):
            for msg in messages:
                err = msg.error()
                if err is None:
                    continue
                if err.code() == KafkaError._PARTITION_EOF:
                    key = (msg.topic(), msg.partition())
                    if msg.offset() >= self._targets.get(key, 0):
                        self._done.add(key)
                elif not err.retriable():
                    raise RuntimeError(f"Kafka error on {msg.topic()} partition {msg.partition()}: {err}")
        if not good:
            return
        topics = [m.topic() for m in good]
        first = topics[0]
        groups = {first: good} if topics.count(first) == len(topics) else _group(good, topics)
        now = time.monotonic()
        for topic, msgs in groups.items():
            buf = self._buffers[topic]
            if not buf.values:
                buf.since = now
            values = [m.value() for m in msgs]
            buf.values.extend(values)
            buf.keys.extend([m.key() for m in msgs])
            buf.partitions.extend([m.partition() for m in msgs])
            buf.offsets.extend([m.offset() for m in msgs])
            buf.timestamps.extend([m.timestamp()[1] for m in msgs])
            buf.nbytes += sum(map(len, filter(None, values)))

    def next_awake(self) -> datetime | None:
        # Poll again at once while data flows; the consume timeout paces an idle source.
        return None if self._consumer is not None else datetime.now(UTC) + timedelta(milliseconds=200)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._closed = True


class KafkaBatchSource(DynamicSource[RawBatch]):
    """Reads ``topics`` from given start offsets, split across workers, in batches.

    Args:
        bootstrap: Kafka bootstrap servers.
        topics: topics to read (every partition of each).
        start_offsets: (topic, partition) -> first offset to read; called once per
            partition when a worker starts (and here, to refuse one past its topic's end
            with :class:`OffsetsAhead` before the dataflow runs).
        until_caught_up: stop once each partition reached the end it had at start.
        flush_rows, flush_bytes, flush_seconds: emit a topic's batch at any of these.
        idle_flush_seconds: once caught up (a poll came back less than full), emit a batch
            whose oldest record waited this long (default: ``flush_seconds``).
        on_caught_up: called once, on the worker, when every partition it owns reached the
            end it had at start (readiness of a continuous run).
        extra_conf: more librdkafka settings (SASL/SSL ...).
        stop: a flag that ends the source cleanly after the current batch.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        start_offsets: StartOffsets,
        *,
        until_caught_up: bool = False,
        flush_rows: int = 200_000,
        flush_bytes: int = 64 << 20,
        flush_seconds: float = 2.0,
        idle_flush_seconds: float | None = None,
        extra_conf: dict | None = None,
        stop: StopFlag | None = None,
        group_id: str = "telcolake",
        on_caught_up: Callable[[], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.start_offsets = start_offsets
        self.until_caught_up = until_caught_up
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self.flush_seconds = flush_seconds
        self.idle_flush_seconds = flush_seconds if idle_flush_seconds is None else min(idle_flush_seconds, flush_seconds)
        self.on_caught_up = on_caught_up
        self.extra_conf = dict(extra_conf or {})
        self.stop = stop or StopFlag()
        self.group_id = group_id
        self.poll_records = min(flush_rows, 20_000)
        self.poll_timeout_s = 0.1
        check_resume(bootstrap, self.topics, start_offsets, self.extra_conf)

    def partitions(self) -> list[tuple[str, int]]:
        """Every (topic, partition) to read, in a stable order."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group_id, "log_level": 2, **self.extra_conf})
        try:
            pairs = []
            for topic in self.topics:
                meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if meta is None or meta.error is not None or not meta.partitions:
                    raise RuntimeError(f"topic {topic} does not exist on {self.bootstrap}")
                pairs.extend((topic, p) for p in sorted(meta.partitions))
            return pairs
        finally:
            consumer.close()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        owned = [pair for i, pair in enumerate(self.partitions()) if i % worker_count == worker_index]
        return _KafkaPartition(self, owned)

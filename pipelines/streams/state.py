"""The machinery every stream flow shares: shards, checkpoints in Delta, idempotent outputs.

Exactly once, in short: records are routed by a stable hash of their key to one of a fixed
number of *shards* (independent of the worker count). A shard's state (open windows,
watermarks, alert streaks) is checkpointed to ``ops/stream_state/<flow>`` together with, as
Delta app transactions, the last Kafka offset it has applied for every partition. A commit
writes the outputs first — a MERGE on each output's natural key (``(cell_id, window_start)``,
``alert_id`` ...) — then the checkpoint. After ``kill -9`` each shard restores its last
checkpoint, the source restarts every partition at the smallest offset any shard still needs,
and each shard skips records at or below its own offset. Replayed records recompute exactly
the same rows (:mod:`pipelines.streams.windows` is deterministic for a key's record order), and
the MERGE turns re-written rows into no-ops. Kafka output topics are at least once: a message
produced just before a crash is produced again, with the same ``event_id``.
"""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import CommitFailedError, DeltaError

from pipelines.core.contracts import Contract, decode_batch
from pipelines.core.errors import ConcurrentWriterError
from pipelines.core.lake import Lake, Write, txn_versions
from pipelines.ingest.kafka_source import RawBatch, segment_id

TS = pa.timestamp("us", tz="UTC")
QUARANTINE = "quarantine/streams"
QUARANTINE_SCHEMA = pa.schema(
    [
        ("flow", pa.string()),
        ("reason", pa.string()),
        ("_kafka_topic", pa.string()),
        ("_kafka_partition", pa.int32()),
        ("_kafka_offset", pa.int64()),
        ("event_id", pa.string()),
        ("entity_id", pa.string()),
        ("event_at", TS),
        ("watermark_at", TS),
        ("raw", pa.binary()),
    ]
)
QUARANTINE_KEYS = ("flow", "_kafka_topic", "_kafka_partition", "_kafka_offset")


@dataclass(frozen=True)
class Output:
    """A Delta table a flow writes, merged on ``keys``."""

    table: str
    schema: pa.Schema
    keys: tuple[str, ...]


@dataclass
class Result:
    """What a flow's logic returns for one part: rows per output name, Kafka messages, counters."""

    rows: dict[str, pa.Table] = field(default_factory=dict)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class Logic(Protocol):
    """One shard's computation (windows, rules) and its state."""

    def process(self, df: pl.DataFrame) -> Result: ...
    def snapshot(self) -> dict[str, pa.Table]: ...
    def restore(self, parts: dict[str, pa.Table]) -> None: ...


@dataclass(frozen=True)
class FlowSpec:
    """A stream flow: its input, key, shards, outputs and logic factory.

    Attributes:
        name: flow name (``kpi``, ``fraud``, ``offers``); also its state table's leaf.
        contract: the input topic's contract.
        key: column whose value picks the shard (records of one key share one state).
        shards: number of shards; fixed for a lake (changing it needs a fresh state table).
        outputs: output name -> Delta table; ``quarantine`` is added by the framework.
        alerts_topic: the Kafka topic for :attr:`Result.messages` (None: no messages).
        make_logic: builds a shard's logic.
    """

    name: str
    contract: Contract
    key: str
    shards: int
    outputs: dict[str, Output]
    make_logic: Callable[[], Logic]
    alerts_topic: str | None = None

    @property
    def state_table(self) -> str:
        return f"ops/stream_state/{self.name}"


def app_id(flow: str, shard: int, segment: str) -> str:
    """Delta app transaction id: the last offset of ``segment`` that ``shard`` of ``flow`` applied."""
    return f"telcolake-stream:{flow}:{shard}:{segment}"


@dataclass
class Part:
    """One shard's share of one source batch (possibly empty: it still moves the offsets)."""

    shard: int
    rows: pa.Table
    last: dict[str, int]
    rejects: pa.Table | None = None


@dataclass
class Emit:
    """What a shard hands the sink after one part: outputs, messages, state, offsets.

    ``since`` are the shard's offsets before this part: what its last checkpoint holds.
    """

    shard: int
    result: Result
    state: dict[str, pa.Table]
    positions: dict[str, int]
    since: dict[str, int] = field(default_factory=dict)


def shard_of(values: pa.ChunkedArray | pa.Array, shards: int) -> np.ndarray:
    """Stable shard (crc32 of the UTF-8 key modulo ``shards``) per value; one hash per distinct key."""
    encoded = pc.dictionary_encode(values).combine_chunks() if isinstance(values, pa.ChunkedArray) else pc.dictionary_encode(values)
    per_key = np.array([zlib.crc32((v or "").encode()) % shards for v in encoded.dictionary.to_pylist()], dtype=np.int32)
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    return per_key[idx] if len(per_key) else np.zeros(len(idx), dtype=np.int32)


def split(spec: FlowSpec, batch: RawBatch) -> list[tuple[str, Part]]:
    """Decode a raw batch and cut it into one part per shard, keyed for the shard step."""
    decoded = decode_batch(spec.contract, batch.values)
    idx = decoded.index.to_numpy(zero_copy_only=False).astype(np.int64)
    rows = decoded.table.append_column("_kafka_partition", pa.array(batch.partition[idx], pa.int32()))
    rows = rows.append_column("_kafka_offset", pa.array(batch.pos[idx], pa.int64()))
    shard = shard_of(rows[spec.key], spec.shards) if rows.num_rows else np.zeros(0, dtype=np.int32)
    rejects = None
    if decoded.rejects:
        pos = np.array([i for i, _ in decoded.rejects], dtype=np.int64)
        n = len(pos)
        rejects = pa.table(
            {
                "flow": pa.array([spec.name] * n, pa.string()),
                "reason": pa.array([f"decode:{r}" for _, r in decoded.rejects], pa.string()),
                "_kafka_topic": pa.array([batch.topic] * n, pa.string()),
                "_kafka_partition": pa.array(batch.partition[pos], pa.int32()),
                "_kafka_offset": pa.array(batch.pos[pos], pa.int64()),
                "event_id": pa.nulls(n, pa.string()),
                "entity_id": pa.nulls(n, pa.string()),
                "event_at": pa.nulls(n, TS),
                "watermark_at": pa.nulls(n, TS),
                "raw": pa.array([batch.values[i] for i in pos], pa.binary()),
            },
            schema=QUARANTINE_SCHEMA,
        )
    last = batch.last_positions()
    parts = []
    for s in range(spec.shards):
        mine = rows.filter(pa.array(shard == s)) if rows.num_rows else rows
        parts.append((str(s), Part(shard=s, rows=mine, last=last, rejects=rejects if s == 0 else None)))
    return parts


def too_late_rows(spec: FlowSpec, topic: str, late: pl.DataFrame, *, event_id: str, time: str, entity: str) -> pa.Table:
    """Quarantine rows (reason ``too_late``) for records later than the allowed lateness."""
    n = late.height
    return pa.table(
        {
            "flow": pa.array([spec.name] * n, pa.string()),
            "reason": pa.array(["too_late"] * n, pa.string()),
            "_kafka_topic": pa.array([topic] * n, pa.string()),
            "_kafka_partition": late["_kafka_partition"].to_arrow().cast(pa.int32()),
            "_kafka_offset": late["_kafka_offset"].to_arrow().cast(pa.int64()),
            "event_id": late[event_id].to_arrow().cast(pa.string()),
            "entity_id": late[entity].to_arrow().cast(pa.string()),
            "event_at": late[time].to_arrow().cast(TS),
            "watermark_at": late["watermark_at"].to_arrow().cast(TS),
            "raw": pa.nulls(n, pa.binary()),
        },
        schema=QUARANTINE_SCHEMA,
    )


class Shard:
    """A shard's logic plus the offsets it has applied; restored lazily from its checkpoint."""

    def __init__(self, spec: FlowSpec, lake: Lake, shard: int) -> None:
        self.spec, self.lake, self.shard = spec, lake, shard
        self.logic = spec.make_logic()
        self.positions: dict[str, int] = {}
        if lake.exists(spec.state_table):
            t = lake.read(spec.state_table, filter=pc.field("shard") == shard)
            if t.num_rows:
                self.logic.restore({p: _from_ipc(b) for p, b in zip(t["part"].to_pylist(), t["payload"].to_pylist(), strict=True)})

    def __deepcopy__(self, memo: dict) -> Shard:
        # Bytewax snapshots operator state at every epoch for its own recovery, which these
        # flows do not use (the Delta checkpoint is their recovery): skip the copy.
        return self

    def position(self, segment: str) -> int:
        if segment not in self.positions:
            v = self.lake.txn_version(self.spec.state_table, app_id(self.spec.name, self.shard, segment))
            self.positions[segment] = -1 if v is None else int(v)
        return self.positions[segment]

    def apply(self, part: Part, topic: str) -> Emit:
        rows = part.rows
        if rows.num_rows:
            partition = rows["_kafka_partition"].to_numpy()
            seen = np.unique(partition)
            stored = np.full(int(seen.max()) + 1, -1, dtype=np.int64)
            for p in seen.tolist():
                stored[p] = self.position(segment_id(topic, p))
            fresh = pc.greater(rows["_kafka_offset"], pa.array(stored[partition]))
            if not pc.all(fresh).as_py():
                rows = rows.filter(fresh)
        since = {segment: self.position(segment) for segment in part.last} | self.positions
        result = self.logic.process(pl.from_arrow(rows)) if rows.num_rows else Result()
        if part.rejects is not None:
            keep = [self.position(segment_id(topic, p)) < o for p, o in zip(part.rejects["_kafka_partition"].to_pylist(), part.rejects["_kafka_offset"].to_pylist(), strict=True)]
            rejects = part.rejects.filter(pa.array(keep))
            if rejects.num_rows:
                prev = result.rows.get("quarantine")
                result.rows["quarantine"] = rejects if prev is None else pa.concat_tables([prev, rejects])
                result.counts["rejected"] = result.counts.get("rejected", 0) + rejects.num_rows
        for segment, pos in part.last.items():
            self.positions[segment] = max(self.position(segment), pos)
        return Emit(shard=self.shard, result=result, state=self.logic.snapshot(), positions=dict(self.positions), since=since)


def _to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


STATE_SCHEMA = pa.schema([("shard", pa.int32()), ("part", pa.string()), ("payload", pa.binary())])


def prepare_tables(lake: Lake, spec: FlowSpec) -> None:
    """Create the flow's output, quarantine and state tables when missing (before workers race)."""
    wanted = {o.table: o.schema for o in spec.outputs.values()}
    wanted[QUARANTINE] = QUARANTINE_SCHEMA
    for table, schema in wanted.items():
        lake.commit(table, lambda dt, schema=schema: None if dt is not None else Write(schema.empty_table()))
    lake.commit(spec.state_table, lambda dt: None if dt is not None else Write(STATE_SCHEMA.empty_table()), partition_by=["shard"])


def merge(lake: Lake, table: str, rows: pa.Table, keys: tuple[str, ...]) -> None:
    """Upsert ``rows`` into ``table`` on ``keys`` (last row per key wins), retrying on conflicts."""
    if not rows.num_rows:
        return
    frame = pl.from_arrow(rows).unique(subset=list(keys), keep="last", maintain_order=True)
    rows = frame.to_arrow().cast(rows.schema)
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    for attempt in range(30):
        try:
            (
                lake.table(table)
                .merge(rows, predicate=predicate, source_alias="s", target_alias="t")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            return
        except (CommitFailedError, DeltaError) as exc:
            if attempt == 29 or ("onflict" not in str(exc) and not isinstance(exc, CommitFailedError)):
                raise
            time.sleep(0.05 * (attempt + 1))


def checkpoint(lake: Lake, spec: FlowSpec, emits: list[Emit]) -> None:
    """Write the latest state of each shard in ``emits`` with its offsets, in one commit.

    A shard's state is this process's own history, so the commit is a compare-and-set: the
    offsets stored for each shard must still be the ones this process last wrote (or read).
    Otherwise another process runs the same flow on the same shards, and this one stops.

    Raises:
        ConcurrentWriterError: another process checkpointed one of these shards meanwhile.
    """
    last = {e.shard: e for e in emits}
    rows: list[dict] = []
    txns: dict[str, int] = {}
    expected: dict[str, int] = {}  # app id -> the offset the checkpoint holds, as this process knows it
    names: dict[str, str] = {}
    for e in emits:
        for segment, p in e.since.items():
            expected.setdefault(app_id(spec.name, e.shard, segment), p)
    for shard, e in last.items():
        for part, table in e.state.items():
            rows.append({"shard": shard, "part": part, "payload": _to_ipc(table)})
        for segment, p in e.positions.items():
            if p >= 0:
                txns[app_id(spec.name, shard, segment)] = p
                names[app_id(spec.name, shard, segment)] = f"shard {shard} of {segment}"
    shards = ", ".join(str(s) for s in sorted(last))

    def plan(dt):
        stored = {a: (-1 if v is None else v) for a, v in txn_versions(dt, txns).items()}
        moved = sorted(a for a in txns if stored[a] != expected.get(a, -1))
        if moved:
            a = moved[0]
            raise ConcurrentWriterError(
                f"flow {spec.name}: another process checkpointed {names[a]} meanwhile (at offset {stored[a]}, this process "
                f"expected {expected.get(a, -1)}); run one `telcolake stream` per flow: this one stops"
            )
        return Write(pa.Table.from_pylist(rows, schema=STATE_SCHEMA), mode="overwrite", predicate=f"shard IN ({shards})", txns=txns)

    lake.commit(spec.state_table, plan, partition_by=["shard"])


def start_offsets(lake: Lake, spec: FlowSpec):
    """(topic, partition) -> first offset some shard still needs: the smallest stored + 1."""

    def start(topic: str, partition: int) -> int:
        seg = segment_id(topic, partition)
        found = lake.txn_versions(spec.state_table, [app_id(spec.name, s, seg) for s in range(spec.shards)])
        if any(v is None for v in found.values()):
            return 0
        return min(int(v) for v in found.values()) + 1

    return start


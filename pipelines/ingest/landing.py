"""Land raw batches into bronze and quarantine Delta tables, exactly once.

Each commit carries, as Delta app transactions, the highest position (Kafka offset or file
row) it covers for every segment (Kafka partition or file) in the batch. A record at or
below the stored position of a table is refused for that table, never written again.

Order per batch: quarantine commit (if it has rows), dead-letter topic, bronze commit
(always, even with no rows, so the resume point moves). A restart resumes each segment from
the bronze position + 1; anything already in quarantine past that point is filtered by
quarantine's own positions. The dead-letter topic is at-least-once: a record produced there
just before a crash may be produced again on replay; quarantine is the exactly-once record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.contracts import Contract, Limits, contract_for, decode_batch
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import RawBatch

CDF = {"delta.enableChangeDataFeed": "true"}
TS = pa.timestamp("us", tz="UTC")
DLQ_MAX_VALUE = 512 * 1024


def bronze_table(contract_topic: str) -> str:
    return f"bronze/{contract_topic}"


def quarantine_table(contract_topic: str) -> str:
    return f"quarantine/{contract_topic}"


def app_id(segment: str) -> str:
    """Delta app transaction id of a segment (kafka-delta-ingest style ``<app>-<partition>``)."""
    return f"telcolake-ingest:{segment}"


@dataclass
class Landed:
    """What one batch did."""

    topic: str
    rows: int = 0
    quarantined: int = 0
    refused: int = 0
    extra_fields: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    bronze_version: int | None = None


def _meta_columns(batch: RawBatch, idx: np.ndarray, ingested_at: datetime) -> dict[str, pa.Array]:
    n = len(idx)
    if batch.partition is not None:
        topic = pa.array([batch.topic] * n, pa.string()) if n else pa.array([], pa.string())
        partition = pa.array(batch.partition[idx], pa.int32())
        offset = pa.array(batch.pos[idx], pa.int64())
        ts = pa.array(batch.timestamp_ms[idx], pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(TS)
        row = pa.nulls(n, pa.int64())
    else:
        topic, partition, offset, ts = (pa.nulls(n, t) for t in (pa.string(), pa.int32(), pa.int64(), TS))
        row = pa.array(batch.pos[idx], pa.int64())
    return {
        "_source": pa.array([batch.source] * n, pa.string()),
        "_kafka_topic": topic,
        "_kafka_partition": partition,
        "_kafka_offset": offset,
        "_kafka_timestamp": ts,
        "_source_row": row,
        "_ingested_at": pa.array(np.full(n, int(ingested_at.timestamp() * 1e6), dtype=np.int64), pa.int64()).cast(TS),
    }


def bronze_rows(contract: Contract, batch: RawBatch, typed: pa.Table, idx: np.ndarray, ingested_at: datetime) -> pa.Table:
    """Typed contract columns + source coordinates + ``event_date`` (+ ``event_month``)."""
    columns = {name: typed[name] for name in typed.column_names}
    columns.update(_meta_columns(batch, idx, ingested_at))
    columns["event_date"] = pc.cast(typed[contract.time_field], pa.date32())
    if contract.partition_column == "event_month":
        columns["event_month"] = pc.strftime(typed[contract.time_field], format="%Y-%m")
    return pa.table(columns)


def quarantine_rows(batch: RawBatch, idx: np.ndarray, reasons: list[str], ingested_at: datetime) -> pa.Table:
    """Raw bytes, reason and coordinates of rejected records, partitioned by ingest date."""
    columns = {
        "raw": pa.array([batch.values[i] for i in idx], pa.binary()),
        "raw_key": pa.array([batch.keys[i] for i in idx], pa.binary()),
        "reason": pa.array(reasons, pa.string()),
    }
    columns.update(_meta_columns(batch, idx, ingested_at))
    columns["ingest_date"] = pc.cast(columns["_ingested_at"], pa.date32())
    return pa.table(columns)


class BronzeWriter:
    """Lands batches of one worker. Each segment must be owned by one writer at a time."""

    def __init__(self, lake: Lake, *, limits: Limits = Limits(), dead_letters: DeadLetters | None = None) -> None:
        self.lake = lake
        self.limits = limits
        self.dead_letters = dead_letters
        self._stored: dict[tuple[str, str], int] = {}

    def stored(self, table: str, segments: list[str]) -> np.ndarray:
        """Committed position per segment in ``table`` (-1 when none), cached after first read."""
        missing = [s for s in segments if (table, s) not in self._stored]
        if missing:
            found = self.lake.txn_versions(table, [app_id(s) for s in missing])
            for s in missing:
                v = found[app_id(s)]
                self._stored[(table, s)] = -1 if v is None else int(v)
        return np.array([self._stored[(table, s)] for s in segments], dtype=np.int64)

    def land(self, batch: RawBatch, *, now: datetime | None = None) -> Landed:
        contract = contract_for(batch.topic)
        bronze, quarantine = bronze_table(contract.topic), quarantine_table(contract.topic)
        result = Landed(topic=contract.topic)
        last = batch.last_positions()
        if not last:
            return result
        txns = {app_id(s): p for s, p in last.items()}
        ingested_at = now or datetime.now(UTC)
        decoded = decode_batch(contract, batch.values, limits=self.limits)
        result.extra_fields = decoded.extra_fields

        if decoded.rejects:
            rej = np.fromiter((i for i, _ in decoded.rejects), dtype=np.int64, count=len(decoded.rejects))
            fresh = batch.pos[rej] > self.stored(quarantine, batch.segments)[batch.seg[rej]]
            result.refused += int((~fresh).sum())
            keep = rej[fresh]
            reasons = [r for (_, r), f in zip(decoded.rejects, fresh, strict=True) if f]
            if len(keep):
                rows = quarantine_rows(batch, keep, reasons, ingested_at)
                self.lake.write(quarantine, rows, partition_by=["ingest_date"], txns=txns, configuration=CDF)
                for s, p in last.items():
                    self._stored[(quarantine, s)] = p
                if self.dead_letters is not None:
                    self.dead_letters.send(batch, keep, reasons)
                result.quarantined = len(keep)
                for r in reasons:
                    result.reasons[r] = result.reasons.get(r, 0) + 1

        idx = decoded.index.to_numpy(zero_copy_only=False).astype(np.int64)
        fresh = batch.pos[idx] > self.stored(bronze, batch.segments)[batch.seg[idx]]
        result.refused += int((~fresh).sum())
        typed = decoded.table if fresh.all() else decoded.table.filter(pa.array(fresh))
        idx = idx[fresh]
        rows = bronze_rows(contract, batch, typed, idx, ingested_at)
        result.bronze_version = self.lake.write(bronze, rows, partition_by=[contract.partition_column], txns=txns, configuration=CDF)
        for s, p in last.items():
            self._stored[(bronze, s)] = p
        result.rows = rows.num_rows
        return result


class DeadLetters:
    """Produces rejected records to ``<topic>.dlq`` with the reason and coordinates as headers."""

    def __init__(self, bootstrap: str, extra_conf: dict | None = None) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 2, **(extra_conf or {})})

    def send(self, batch: RawBatch, idx: np.ndarray, reasons: list[str]) -> None:
        topic = f"{batch.topic}.dlq"
        for i, reason in zip(idx.tolist(), reasons, strict=True):
            headers = [("reason", reason.encode()), ("source", batch.source.encode()), ("position", str(int(batch.pos[i])).encode())]
            if batch.partition is not None:
                headers.append(("partition", str(int(batch.partition[i])).encode()))
            value = batch.values[i]
            if value is not None and len(value) > DLQ_MAX_VALUE:
                headers.append(("truncated_from", str(len(value)).encode()))
                value = value[:DLQ_MAX_VALUE]
            while True:
                try:
                    self._producer.produce(topic, value=value, key=batch.keys[i], headers=headers)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        self._producer.flush(30)

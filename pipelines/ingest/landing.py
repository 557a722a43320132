"""Land raw batches into bronze and quarantine Delta tables, exactly once, beside any number of writers.

Each commit carries, as Delta app transactions, the highest position (Kafka offset or file
row) it covers for every segment (Kafka partition or file) it moves forward. A record at or
below the stored position of a table is refused for that table, never written again. The
positions are read from the snapshot the commit is checked against, so two writers landing
the same records at once cannot both write them: the second commit conflicts on the app
transaction and is planned again (:meth:`pipelines.core.lake.Lake.commit`).

Order per batch: quarantine commit (if it has new rows), dead-letter topic, bronze commit
(always, even with no rows, so the resume point moves). Each table filters by its own
positions, so a conflict or crash between the two commits never writes a record twice in
either; whether a record is rejected does not depend on who reads it or when (its event
time is checked against its Kafka timestamp), so each record lands in bronze or in
quarantine, never both. A restart resumes each segment from the bronze position + 1. The
dead-letter topic is at-least-once: a record produced there just before a crash may be
produced again on replay; quarantine is the exactly-once record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.contracts import Contract, Limits, contract_for, decode_batch
from pipelines.core.lake import Lake, TableHandle, Write, txn_versions
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
    # A dump named by its date was delivered at the end of that day (or when it landed, if earlier):
    # the time its rows became known, which point-in-time readers use for rows without a Kafka timestamp.
    if batch.delivered_ms is not None:
        delivered = min(batch.delivered_ms * 1000, int(ingested_at.timestamp() * 1e6))
        delivered_at = pa.array(np.full(n, delivered, dtype=np.int64), pa.int64()).cast(TS)
    else:
        delivered_at = pa.nulls(n, TS)
    return {
        "_source": pa.array([batch.source] * n, pa.string()),
        "_kafka_topic": topic,
        "_kafka_partition": partition,
        "_kafka_offset": offset,
        "_kafka_timestamp": ts,
        "_source_row": row,
        "_ingested_at": pa.array(np.full(n, int(ingested_at.timestamp() * 1e6), dtype=np.int64), pa.int64()).cast(TS),
        "_delivered_at": delivered_at,
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
    """Lands batches of one worker; any number of writers may land the same segments at once.

    Each commit is planned from a snapshot of its table: the rows above the positions stored
    there, and app transactions only for the segments it moves forward. When another writer
    committed one of those app transactions meanwhile, delta-rs fails the commit and it is
    planned again from the newer snapshot, so a row is never sent twice (:meth:`Lake.commit`).
    """

    def __init__(self, lake: Lake, *, limits: Limits = Limits(), dead_letters: DeadLetters | None = None) -> None:
        self.lake = lake
        self.limits = limits
        self.dead_letters = dead_letters
        self._handles: dict[str, TableHandle] = {}

    def _handle(self, table: str) -> TableHandle:
        if table not in self._handles:
            self._handles[table] = self.lake.handle(table)
        return self._handles[table]

    def _commit(self, table: str, batch: RawBatch, idx: np.ndarray, make_rows, *, partition_by: str, always: bool) -> tuple[np.ndarray, int | None]:
        """Commit the records ``idx`` of ``batch`` not yet in ``table``; returns (the records
        this commit wrote, its version). ``make_rows(keep_mask)`` builds the rows; with
        ``always`` a commit with no rows still moves the segments' positions."""
        last = batch.last_positions()
        where = {s: i for i, s in enumerate(batch.segments)}
        wrote: list[np.ndarray] = [idx[:0]]

        def plan(dt):
            stored = stored_positions(dt, batch.segments)
            fresh = batch.pos[idx] > stored[batch.seg[idx]]
            txns = {app_id(s): p for s, p in last.items() if p > stored[where[s]]}
            wrote[0] = idx[fresh]
            if not fresh.any() and not (always and txns):
                return None
            return Write(make_rows(fresh), txns=txns, schema_mode="merge")  # merge: tables from before _delivered_at

        version = self._handle(table).commit(plan, partition_by=[partition_by], configuration=CDF)
        return (wrote[0] if version is not None else idx[:0]), version

    def land(self, batch: RawBatch, *, now: datetime | None = None) -> Landed:
        contract = contract_for(batch.topic)
        bronze, quarantine = bronze_table(contract.topic), quarantine_table(contract.topic)
        result = Landed(topic=contract.topic)
        if not batch.last_positions():
            return result
        ingested_at = now or datetime.now(UTC)
        decoded = decode_batch(contract, batch.values, limits=self.limits, now=record_times(batch))
        result.extra_fields = decoded.extra_fields

        if decoded.rejects:
            rej = np.fromiter((i for i, _ in decoded.rejects), dtype=np.int64, count=len(decoded.rejects))
            why = np.array([r for _, r in decoded.rejects], dtype=object)
            kept = {}

            def quarantined(fresh: np.ndarray) -> pa.Table:
                kept["reasons"] = why[fresh].tolist()
                return quarantine_rows(batch, rej[fresh], kept["reasons"], ingested_at)

            keep, _ = self._commit(quarantine, batch, rej, quarantined, partition_by="ingest_date", always=False)
            result.refused += len(rej) - len(keep)
            if len(keep):
                reasons = kept["reasons"]
                if self.dead_letters is not None:
                    self.dead_letters.send(batch, keep, reasons)
                result.quarantined = len(keep)
                for r in reasons:
                    result.reasons[r] = result.reasons.get(r, 0) + 1

        idx = decoded.index.to_numpy(zero_copy_only=False).astype(np.int64)

        def bronze_of(fresh: np.ndarray) -> pa.Table:
            typed = decoded.table if fresh.all() else decoded.table.filter(pa.array(fresh))
            return bronze_rows(contract, batch, typed, idx[fresh], ingested_at)

        keep, result.bronze_version = self._commit(bronze, batch, idx, bronze_of, partition_by=contract.partition_column, always=True)
        result.refused += len(idx) - len(keep)
        result.rows = len(keep)
        return result


def stored_positions(dt, segments: list[str]) -> np.ndarray:
    """Committed position per segment in snapshot ``dt`` (-1 when none)."""
    found = txn_versions(dt, [app_id(s) for s in segments])
    return np.array([-1 if found[app_id(s)] is None else int(found[app_id(s)]) for s in segments], dtype=np.int64)


def record_times(batch: RawBatch) -> datetime | pa.Array:
    """What each record's event time is checked against (no more than the allowed skew after it):
    its Kafka timestamp, so a record is judged the same by every writer and every replay;
    the wall clock for records without one (files)."""
    if batch.timestamp_ms is None or not len(batch.timestamp_ms) or (batch.timestamp_ms <= 0).any():
        return datetime.now(UTC)
    return pa.array(batch.timestamp_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(TS)


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

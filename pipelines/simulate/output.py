"""Simulator output: produce a simulated run to Kafka, or write it as legacy mediation dumps.

Both take a whole run (``simulate``) or a run day by day (``simulate_days``): a day at a time
is in memory, and the records come out in the same order either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from pipelines.core.contracts import CONTRACTS
from pipelines.core.errors import BrokerError, ConfigError
from pipelines.simulate.generate import SimResult
from pipelines.simulate.wire import row_frame
from pipelines.simulate.world import fmt_times


def _chunks(result: SimResult | Iterable[SimResult]) -> Iterable[SimResult]:
    return [result] if isinstance(result, SimResult) else result


# --- Kafka --------------------------------------------------------------------------------


def produce(
    result: SimResult | Iterable[SimResult],
    bootstrap: str,
    topics: dict[str, str] | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    extra_conf: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Produce every simulated record, in arrival order, with its key and arrival timestamp.

    Args:
        result: what ``simulate`` or ``simulate_days`` returned (the days are produced one after
            the other; within a topic, records keep their arrival order).
        bootstrap: Kafka bootstrap servers.
        topics: contract topic -> actual topic name (default: the contract names).
        progress: called with the number of records handed to the producer since the last call.
        extra_conf: more librdkafka settings (SASL/SSL, compression ...).

    Returns:
        contract topic -> records produced.

    Raises:
        BrokerError: a delivery failed or did not finish.
    """
    from confluent_kafka import KafkaException, Producer

    failures: list[str] = []

    def on_error(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 25,
        "batch.size": 4_000_000,
        "batch.num.messages": 100_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "delivery.report.only.error": True,
        "on_delivery": on_error,
        "log_level": 2,
        **(extra_conf or {}),
    }
    try:
        producer = Producer(conf)
    except KafkaException as exc:
        raise BrokerError(f"cannot create a producer for {bootstrap}: {exc}") from None
    counts: dict[str, int] = {}
    for chunk in _chunks(result):
        for topic in chunk.values:
            name = (topics or {}).get(topic, topic)
            counts[topic] = counts.get(topic, 0) + _send(producer, name, chunk.values[topic], chunk.keys[topic], chunk.timestamps[topic], progress)
        del chunk  # not held while the next day is built
    left = producer.flush(120)
    if failures or left:
        raise BrokerError(f"producing to {bootstrap} failed: {len(failures)} failed, {left} undelivered; first: {failures[:1]}")
    return counts


def _send(producer, name: str, values: list[bytes], keys: list[bytes | None], stamps: list[int],
          progress: Callable[[int], None] | None, step: int = 20_000) -> int:
    send = producer.produce
    for lo in range(0, len(values), step):
        for value, key, ts in zip(values[lo : lo + step], keys[lo : lo + step], stamps[lo : lo + step], strict=True):
            while True:
                try:
                    send(name, value, key, timestamp=ts)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.05)
        producer.poll(0)
        if progress is not None:
            progress(min(step, len(values) - lo))
    return len(values)


# --- legacy dumps --------------------------------------------------------------------------


class DumpFiles(list):
    """The files ``write_dir`` wrote (a list of paths) plus what could not go into them.

    Attributes:
        skipped: contract topic -> malformed records that cannot be a CSV/Parquet row.
    """

    skipped: dict[str, int]


def write_dir(result: SimResult | Iterable[SimResult], directory: str | Path, fmt: Literal["csv", "parquet", "jsonl"]) -> DumpFiles:
    """Write legacy mediation dumps: ``<dir>/<topic>/<arrival date>.<fmt>``, arrival order.

    JSON lines hold the wire values (malformed ones too, except any containing a newline).
    CSV and Parquet hold the decodable records as the contract's columns (times as RFC 3339
    text with ``Z``) plus the malformed records that a typed row can express (a missing
    field, an unknown enum value); the rest (not JSON, truncated, wrongly typed) are counted
    in ``skipped``. ``result`` is what ``simulate`` or ``simulate_days`` returned: the files are
    the same bytes either way (``simulate_days`` yields each arrival day once, whole).
    """
    if fmt not in ("csv", "parquet", "jsonl"):
        raise ConfigError(f"format = {fmt!r}: expected csv, parquet or jsonl")
    root = Path(directory)
    written = DumpFiles()
    topics = list(result.values if isinstance(result, SimResult) else CONTRACTS)
    written.skipped = dict.fromkeys(topics, 0)
    for chunk in _chunks(result):
        for topic in chunk.values:
            written.skipped[topic] += _write_topic(chunk, topic, root / topic, fmt, written)
        del chunk  # not held while the next day is built
    written.sort(key=lambda path: (topics.index(path.parent.name), path.name))  # topic by topic, day by day
    return written


def _write_topic(result: SimResult, topic: str, folder: Path, fmt: str, written: list[Path]) -> int:
    """One topic's files, one per arrival date; returns how many records they could not hold."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        days = _days(np.array(result.timestamps[topic], np.int64))
        values = result.values[topic]
        skipped = 0
        for day in np.unique(days):
            idx = np.nonzero(days == day)[0]
            lines = [values[i] for i in idx.tolist() if b"\n" not in values[i]]
            skipped += len(idx) - len(lines)
            path = folder / f"{day}.jsonl"
            path.write_bytes(b"\n".join(lines) + b"\n" if lines else b"")
            written.append(path)
        return skipped
    contract = CONTRACTS[topic]
    rows = result.rows[topic]
    as_text = fmt == "csv"
    extra = [(w, m) for w, m in result.malformed_rows[topic] if m.row is not None]
    frame = rows.with_columns(pl.all().exclude("_arrival_ms").cast(pl.String)) if as_text else rows
    if extra:
        bad = row_frame([m.row for _, m in extra], contract, as_text=as_text).with_columns(
            _arrival_ms=pl.Series([w for w, _ in extra], dtype=pl.Int64))
        frame = pl.concat([frame, bad], how="diagonal_relaxed").sort("_arrival_ms", maintain_order=True)
    frame = frame.with_columns(_day=pl.Series(_days(frame["_arrival_ms"].to_numpy())))
    for (day,), part in frame.group_by("_day", maintain_order=True):
        path = folder / f"{day}.{fmt}"
        out = part.drop("_day", "_arrival_ms")
        out.write_csv(path) if as_text else out.write_parquet(path)
        written.append(path)
    return len(result.malformed_rows[topic]) - len(extra)


def _days(ms: np.ndarray) -> np.ndarray:
    return fmt_times(ms // 1000).str.slice(0, 10).to_numpy()

"""The bronze sink: lands raw batches (decoder, quarantine, dead letters, bronze) and says where to resume."""

from __future__ import annotations

import queue
import threading

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pipelines.core.config import Settings
from pipelines.core.contracts import Limits
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import RawBatch
from pipelines.ingest.landing import BronzeWriter, DeadLetters, app_id, bronze_table


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
    from pipelines.core.contracts import contract_for
    from pipelines.ingest.kafka_source import segment_id

    def start(topic: str, partition: int) -> int:
        stored = lake.txn_version(bronze_table(contract_for(topic).topic), app_id(segment_id(topic, partition)))
        return 0 if stored is None else stored + 1

    return start

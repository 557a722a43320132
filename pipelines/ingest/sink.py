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
from pipelines.ingest.offsets import GroupOffsets


class _LandPartition(StatelessSinkPartition[RawBatch]):
    """Lands batches in order on one background thread, so the next batch is read meanwhile.

    Decoding (Arrow) and the Delta commit release the GIL, so reading from Kafka overlaps
    with landing. Order per segment is kept (one thread, FIFO); a batch queued but not
    committed when the process dies is simply read again on restart.
    """

    def __init__(self, writer: BronzeWriter, on_landed, offsets: GroupOffsets | None = None) -> None:
        self._writer = writer
        self._on_landed = on_landed
        self._offsets = offsets
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
                if self._offsets is not None and batch.partition is not None:
                    self._offsets.landed(next_offsets(batch))
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
        if self._offsets is not None:
            self._offsets.close(timeout=5)
        self._raise()


class BronzeSink(DynamicSink[RawBatch]):
    """Lands each raw batch on the worker that read it (bronze, quarantine, dead letters).

    With a ``group``, each worker then publishes the landed offsets to that consumer group
    (:class:`~pipelines.ingest.offsets.GroupOffsets`, monitoring only); ``on_offsets_failed``
    gets (group, error line) of each commit that failed.
    """

    def __init__(self, lake: Lake, limits: Limits, bootstrap: str | None, extra_conf: dict, on_landed=None, *,
                 group: str | None = None, on_offsets_failed=None) -> None:
        self.lake, self.limits, self.bootstrap, self.extra_conf = lake, limits, bootstrap, extra_conf
        self.on_landed = on_landed
        self.group, self.on_offsets_failed = group, on_offsets_failed

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LandPartition:
        dlq = DeadLetters(self.bootstrap, self.extra_conf) if self.bootstrap else None
        offsets = None
        if self.bootstrap and self.group:
            offsets = GroupOffsets(self.bootstrap, self.group, extra_conf=self.extra_conf, on_failure=self.on_offsets_failed)
        return _LandPartition(BronzeWriter(self.lake, limits=self.limits, dead_letters=dlq), self.on_landed, offsets)


def next_offsets(batch: RawBatch) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset to read after ``batch`` (a Kafka batch)."""
    return {(batch.topic, int(seg.rsplit("-", 1)[1])): pos + 1 for seg, pos in batch.last_positions().items()}


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

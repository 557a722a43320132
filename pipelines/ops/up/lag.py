"""Consumer group lag in offsets and in seconds, per partition, as kafka-lag-exporter names it.

Ingest's lag (group ``[ingest] consumer_group``) is measured against the landed offsets in
the Delta log, the truth the group mirrors; each stream flow's (``telcolake-<flow>``) against
the offsets committed to its group, read back with the admin API, as any Kafka tool sees them.
The end offset is the true one (:func:`pipelines.core.broker.end_offsets`: the embedded broker
under-reports the high watermark, DESIGN.md). Lag in seconds is the age of the first unlanded
record (its Kafka timestamp); that record is fetched once per (partition, offset) and cached,
so a partition that stays behind costs no broker read on the next refresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

log = logging.getLogger("telcolake.up")


@dataclass
class GroupLag:
    """One (group, topic, partition): committed offset, true end offset, lag in offsets and seconds."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end_offset: int | None
    lag: int | None
    lag_seconds: float | None

    def as_dict(self) -> dict:
        return asdict(self)


class RecordTimes:
    """Kafka timestamps (seconds since the epoch) of records at given offsets, cached.

    Args:
        conf: librdkafka settings of a client of the broker (``bootstrap.servers`` included).
        keep: entries kept; the oldest go first.
    """

    def __init__(self, conf: dict, *, keep: int = 4096) -> None:
        self.conf, self.keep = conf, keep
        self._cache: dict[tuple[str, int, int], float | None] = {}
        self.fetches = 0

    def times(self, wanted: Iterable[tuple[str, int, int]], timeout: float = 3.0) -> dict[tuple[str, int, int], float | None]:
        """(topic, partition, offset) -> its timestamp (None when it could not be read in ``timeout``)."""
        wanted = list(dict.fromkeys(wanted))
        missing = [w for w in wanted if self._cache.get(w) is None]
        if missing:
            self._fetch(missing, timeout)
        while len(self._cache) > self.keep:
            self._cache.pop(next(iter(self._cache)))
        return {w: self._cache.get(w) for w in wanted}

    def _fetch(self, wanted: list[tuple[str, int, int]], timeout: float) -> None:
        """Read each partition from its smallest wanted offset on, taking the timestamps of the wanted
        ones (two groups may want different offsets of one partition: one assignment reads both)."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        self.fetches += 1
        pending: dict[tuple[str, int], list[int]] = {}
        for t, p, o in wanted:
            pending.setdefault((t, p), []).append(o)
        for offsets in pending.values():
            offsets.sort()
        consumer = Consumer({**self.conf, "group.id": "telcolake-lag-probe", "enable.auto.commit": False,
                             "enable.partition.eof": True, "fetch.max.bytes": 1 << 20, "log_level": 2})
        try:
            consumer.assign([TopicPartition(t, p, offsets[0]) for (t, p), offsets in pending.items()])
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    key = (msg.topic(), msg.partition())
                    offsets = pending.get(key)
                    if offsets is None:
                        continue
                    if msg.error() is not None:  # partition EOF: nothing at the offsets left
                        pending.pop(key)
                        continue
                    _kind, ms = msg.timestamp()
                    while offsets and offsets[0] <= msg.offset():  # the record there (or the first after a gap)
                        self._cache[(key[0], key[1], offsets.pop(0))] = ms / 1000.0 if ms and ms > 0 else None
                    if not offsets:
                        pending.pop(key)
        except KafkaException as exc:
            log.warning("could not read the first unlanded records for lag in seconds: %s", exc)
        finally:
            consumer.close()


def lag_of(group: str, topic: str, partition: int, committed: int | None, end: int | None, times: dict, now: float) -> GroupLag:
    """The lag of one partition, given the timestamps fetched for first unlanded offsets."""
    if end is None:
        return GroupLag(group, topic, partition, committed, None, None, None)
    lag = max(0, end - (committed or 0))
    seconds: float | None = 0.0
    if lag:
        at = times.get((topic, partition, committed or 0))
        seconds = None if at is None else round(max(0.0, now - at), 3)
    return GroupLag(group, topic, partition, committed, end, lag, seconds)


def group_lags(
    topics: list[dict],
    *,
    ingest_group: str,
    flow_groups: list[str],
    conf: dict | None,
    times: RecordTimes | None,
    now: float | None = None,
) -> list[dict]:
    """Per (group, topic, partition) lag, from ``topics`` (``/api/status`` topics: true end offsets and
    the landed offsets in the Delta log) and the offsets committed to each stream flow's group.

    Without ``conf`` (no broker reachable) only what the Delta log knows is shown, without lag.
    """
    from pipelines.ingest.offsets import group_offsets

    now = time.time() if now is None else now
    ends = {(t["topic"], p["partition"]): p["end_offset"] for t in topics for p in t["partitions"]}
    rows: list[tuple[str, str, int, int | None]] = [
        (ingest_group, t["topic"], p["partition"], p["landed_offset"]) for t in topics for p in t["partitions"]
    ]
    if conf is not None:
        extra = {k: v for k, v in conf.items() if k != "bootstrap.servers"}
        for group in flow_groups:
            try:
                committed = group_offsets(conf["bootstrap.servers"], group, extra_conf=extra, timeout=5)
            except Exception as exc:  # the admin API failed: the flow's lag is unknown this time
                log.warning("could not read the offsets of consumer group %s: %s", group, exc)
                continue
            rows += [(group, topic, partition, offset) for (topic, partition), offset in sorted(committed.items())
                     if (topic, partition) in ends]
    wanted = [(t, p, c or 0) for _g, t, p, c in rows if ends.get((t, p)) is not None and ends[(t, p)] > (c or 0)]
    found = times.times(wanted) if times is not None and wanted and conf is not None else {}
    return [lag_of(g, t, p, c, ends.get((t, p)), found, now).as_dict() for g, t, p, c in rows]

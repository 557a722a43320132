"""Landed offsets published to a Kafka consumer group, for monitoring only (kafka-delta-ingest style).

The Delta log is the source of truth: every resume reads its app transactions, never the group.
After each table commit the writer hands :class:`GroupOffsets` the next offset to read per
partition; a background thread commits the latest of them to the group, so Kafka tools
(``kafka-consumer-groups``, lag exporters, ``AdminClient.list_consumer_group_offsets``) see the
progress. The commit is a "simple consumer" commit: a client that never joins the group, with
generation -1 and no member id (the embedded broker accepts it like Kafka does). A commit that
fails (broker down, or a member of another client joined the group under the same name, which
Kafka then refuses with ``UNKNOWN_MEMBER_ID``) is logged and counted and tried again with the
next commit; it never fails nor waits the batch that landed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("telcolake.offsets")

Offsets = Mapping[tuple[str, int], int]
"""(topic, partition) -> the next offset to read (the last landed one + 1)."""


class GroupOffsets:
    """Commits landed offsets to consumer group ``group`` on a background thread.

    Args:
        bootstrap: Kafka bootstrap servers.
        group: the consumer group (``[ingest] consumer_group``, ``telcolake-<flow>`` for a stream flow).
        extra_conf: more librdkafka settings (SASL/SSL ...).
        resolve: when given, called on the thread before each commit for offsets read from the
            Delta log (a stream flow's smallest position over its shards); merged with those handed in.
        on_failure: called on the thread with (group, error line) of each failed commit.
        retry_s: a failed commit is tried again after this long even when nothing new landed.
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        *,
        extra_conf: dict | None = None,
        resolve: Callable[[], Offsets] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
        retry_s: float = 5.0,
    ) -> None:
        from confluent_kafka import Consumer

        self.group = group
        self.failures = 0
        self.commits = 0
        self._resolve, self._on_failure, self._retry_s = resolve, on_failure, retry_s
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                                   "log_level": 2, **(extra_conf or {})})
        self._pending: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=f"offsets-{group}", daemon=True)
        self._thread.start()

    def landed(self, offsets: Offsets | None = None) -> None:
        """Record offsets that are in the Delta log now (never blocks); the thread commits them."""
        with self._lock:
            for tp, offset in (offsets or {}).items():
                if offset > self._pending.get(tp, -1):
                    self._pending[tp] = int(offset)
            self._idle.clear()
        self._wake.set()

    def _take(self) -> dict[tuple[str, int], int]:
        with self._lock:
            wanted = dict(self._pending)
        if self._resolve is not None:
            try:
                for tp, offset in self._resolve().items():
                    wanted[tp] = max(wanted.get(tp, -1), int(offset))
            except Exception as exc:  # reading the Delta log failed: publish what we know
                log.warning("group %s: could not read the landed offsets: %s", self.group, exc)
        return {tp: o for tp, o in wanted.items() if o >= 0 and self._committed.get(tp) != o}

    def _run(self) -> None:
        retry = False
        while True:
            self._wake.wait(self._retry_s if retry else None)
            self._wake.clear()
            closing = self._closing.is_set()  # a close commits what is pending once more, then ends
            todo = self._take()
            retry = bool(todo) and not self._commit(todo)
            with self._lock:
                self._pending = {tp: o for tp, o in self._pending.items() if self._committed.get(tp) != o}
                if not retry and not self._pending:
                    self._idle.set()
            if closing:
                break
        self._idle.set()

    def _commit(self, todo: dict[tuple[str, int], int]) -> bool:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            result = self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(todo.items())], asynchronous=False)
            bad = [tp.error for tp in result or [] if tp.error is not None]
            if bad:
                raise KafkaException(bad[0])
        except KafkaException as exc:
            self._failed(exc)
            return False
        self._committed.update(todo)
        self.commits += 1
        return True

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        err = exc.args[0] if exc.args else exc
        line = err.str() if hasattr(err, "str") else str(err)
        log.warning("could not commit landed offsets to consumer group %s (%s); the Delta log keeps them, "
                    "the next commit tries again", self.group, line)
        if self._on_failure is not None:
            try:
                self._on_failure(self.group, line)
            except Exception:  # a reporting callback must not stop the committer
                log.exception("group %s: the failure callback failed", self.group)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed in so far is committed (or failed); True when idle."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is pending (one try, at most ``timeout`` seconds), then stop the thread."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._consumer.close()


def group_offsets(bootstrap: str, group: str, *, extra_conf: dict | None = None, timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """The offsets committed to ``group`` as Kafka tools see them (the admin API), (topic, partition) -> offset.

    Raises:
        confluent_kafka.KafkaException: the broker did not answer.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **(extra_conf or {})})
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)
    result = futures[group].result(timeout)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}

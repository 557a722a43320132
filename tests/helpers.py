"""Small helpers shared by tests: wire records and a real producer."""

from __future__ import annotations

import time

import msgspec
from confluent_kafka import Consumer, Producer

ENC = msgspec.json.Encoder()


def usage_record(i: int, **overrides) -> dict:
    record = {
        "record_id": f"R{i:09d}",
        "event_type": ("voice", "sms", "data")[i % 3],
        "subscriber_id": f"SUB{i % 500:07d}",
        "msisdn": f"49151{i % 500:07d}",
        "started_at": f"2026-10-0{1 + i % 7}T{i % 24:02d}:{i % 60:02d}:00Z",
        "duration_s": 30 + i % 300,
        "bytes_up": 0 if i % 3 != 2 else 1000 + i,
        "bytes_down": 0 if i % 3 != 2 else 50_000 + i,
        "called_number": None if i % 3 == 2 else f"4930{i % 100000:06d}",
        "cell_id": f"C{i % 40:04d}",
    }
    record.update(overrides)
    return record


def usage_values(n: int, start: int = 0) -> list[bytes]:
    return [ENC.encode(usage_record(i)) for i in range(start, start + n)]


def produce(bootstrap: str, topic: str, values: list[bytes | None], *, partitions: int | None = None, keys: list | None = None) -> None:
    """Produce values (round-robin over ``partitions`` when given) and wait for delivery."""
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "batch.size": 1_000_000, "log_level": 2, "message.max.bytes": 10_000_000})

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    for i, value in enumerate(values):
        kwargs = {"value": value, "on_delivery": delivered}
        if partitions:
            kwargs["partition"] = i % partitions
        if keys is not None:
            kwargs["key"] = keys[i]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    assert not failures, failures[:3]


def all_offsets(bootstrap: str, topic: str) -> set[tuple[int, int]]:
    """Every (partition, offset) on a topic, read to partition EOF."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.partition.eof": True, "auto.offset.reset": "earliest", "log_level": 2})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    seen, eof = set(), set()
    deadline = time.monotonic() + 60
    while len(eof) < len(meta.partitions) and time.monotonic() < deadline:
        for m in consumer.consume(10_000, timeout=0.5):
            if m.error():
                eof.add(m.partition())
            else:
                seen.add((m.partition(), m.offset()))
    consumer.close()
    return seen

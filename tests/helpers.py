"""Small helpers shared by tests: wire records and a real producer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class WebhookReceiver:
    """A webhook receiver: answers each POST with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int] | None = None, *, hold: threading.Event | None = None) -> None:
        self.statuses, self.hold = list(statuses or []), hold
        self.bodies: list[dict] = []
        self.attempts = 0
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                with receiver.got:
                    receiver.attempts += 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.bodies.append(body)
                    receiver.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 10) -> list[dict]:
        with self.got:
            assert self.got.wait_for(lambda: len(self.bodies) >= n, timeout), f"{len(self.bodies)} of {n} notifications arrived"
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

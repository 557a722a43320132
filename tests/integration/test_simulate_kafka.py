"""Simulator -> real embedded broker -> consume everything back: counts, bytes, keys, timestamps."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core import broker
from pipelines.core.broker import free_port
from pipelines.core.config import Settings
from pipelines.core.errors import BrokerError
from pipelines.simulate import SimConfig, produce, simulate, simulate_days


def consume_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list:
    """Every record on ``topic``, read until each partition reports EOF.

    The embedded broker under-reports the high watermark (DESIGN.md), so this never stops at
    a watermark: it reads from offset 0 until every partition has hit partition EOF.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sim-test-{topic}", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 2})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records, eof = [], set()
        deadline = time.monotonic() + timeout
        while len(eof) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(50_000, timeout=0.5):
                if msg.error() is not None:
                    eof.add(msg.partition())
                else:
                    eof.discard(msg.partition())
                    records.append(msg)
        assert len(eof) == len(partitions), f"{topic}: no EOF on partitions {set(partitions) - eof}"
        return records
    finally:
        consumer.close()


def test_simulate_produce_consume_round_trip(env: Settings, kafka: str) -> None:
    result = simulate(SimConfig(subscribers=150, days=2, seed=5))
    topics = {t: env.topic(t) for t in result.values}
    advanced = []
    counts = produce(result, kafka, topics, progress=advanced.append)
    assert counts == {t: len(v) for t, v in result.values.items()} == result.planted.per_topic
    assert sum(advanced) == sum(counts.values())
    for contract_topic, name in topics.items():
        records = consume_all(kafka, name)
        assert len(records) == counts[contract_topic]
        assert Counter(m.value() for m in records) == Counter(result.values[contract_topic])
        sent = Counter(zip(result.keys[contract_topic], result.timestamps[contract_topic], strict=True))
        got = Counter((m.key(), m.timestamp()[1]) for m in records)
        assert got == sent
        # One subscriber's (or cell's) records share a partition and keep their arrival order.
        by_key: dict = {}
        for m in sorted(records, key=lambda m: (m.partition(), m.offset())):
            if m.key() is not None:
                assert by_key.setdefault(m.key(), m.partition()) == m.partition()


def test_day_by_day_produces_each_partition_as_the_whole_window(env: Settings, kafka: str) -> None:
    cfg = SimConfig(subscribers=100, days=3, seed=6, late_rate=0.03)
    whole = simulate(cfg)
    mine = {t: env.topic(t) for t in whole.values}
    theirs = {t: f"{name}.whole" for t, name in mine.items()}
    broker.ensure_topics(kafka, {theirs[t]: env.topics[mine[t]] for t in mine})
    produce(whole, kafka, theirs)
    with simulate_days(cfg, block_subscribers=9) as days:
        counts = produce(days, kafka, mine)
    assert counts == whole.planted.per_topic
    for topic in whole.values:
        got, expect = consume_all(kafka, mine[topic]), consume_all(kafka, theirs[topic])

        def partitions(records: list) -> tuple[dict, Counter]:
            keyed: dict = {}
            for m in sorted(records, key=lambda m: (m.partition(), m.offset())):
                if m.key() is not None:
                    keyed.setdefault(m.partition(), []).append((m.key(), m.value(), m.timestamp()[1]))
            return keyed, Counter(m.value() for m in records if m.key() is None)  # unkeyed: any partition

        assert partitions(got) == partitions(expect), topic


def test_cli_simulate_to_kafka(env: Settings, kafka: str) -> None:
    out = CliRunner().invoke(app, ["simulate", "--subscribers", "40", "--days", "1", "--seed", "9", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["produced"] == summary["per_topic"]
    assert summary["topics"]["usage.events"] == env.topic("usage.events")
    assert len(consume_all(kafka, env.topic("bss.events"))) == summary["per_topic"]["bss.events"]


def test_produce_raises_a_project_error_when_deliveries_fail() -> None:
    result = simulate(SimConfig(subscribers=8, days=1, fraudsters=0))
    with pytest.raises(BrokerError, match="failed"):
        produce(result, f"127.0.0.1:{free_port()}", extra_conf={"message.timeout.ms": 1500})

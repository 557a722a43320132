"""Landed offsets published to Kafka consumer groups, read back with the Kafka admin API (real broker)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from pipelines.core.broker import end_offsets
from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.ingest import run_ingest
from pipelines.ingest.offsets import group_offsets
from pipelines.ops.status import topic_status
from tests.helpers import all_offsets, produce, usage_values


def _own_group(name: str) -> str:
    """Give this test its own ingest consumer group (the session broker is shared)."""
    group = f"{name}-{uuid.uuid4().hex[:6]}"
    path = Path(os.environ["TELCOLAKE_CONFIG"])
    text = path.read_text().replace('consumer_group = "telcolake-ingest"', f'consumer_group = "{group}"')
    path.write_text(text)
    return group


def _ours(offsets: dict, topic: str) -> dict[int, int]:
    return {p: o for (t, p), o in offsets.items() if t == topic}


def _coords(lake: Lake) -> list[tuple[int, int]]:
    t = lake.read("bronze/usage.events", columns=["_kafka_partition", "_kafka_offset"])
    return list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))


def test_ingest_commits_landed_offsets_that_kafka_tools_read_back_with_lag_zero(env, kafka):
    assert env.ingest.consumer_group == "telcolake-ingest"  # the shipped default
    group = _own_group("telcolake-ingest")
    settings = load_settings()
    topic = settings.topic("usage.events")
    # small batches of varied size: the embedded broker then under-reports the high watermark
    for n in (700, 1, 1, 300, 5):
        produce(kafka, topic, usage_values(n, start=len(all_offsets(kafka, topic))), partitions=4)
    stats = run_ingest(settings, until_caught_up=True)
    assert stats.offset_commit_failures == 0
    true_ends = end_offsets(kafka, topic)
    committed = _ours(group_offsets(kafka, group), topic)
    assert committed == true_ends and sum(true_ends.values()) == 1007
    # ... the same numbers the lake holds, and the lag computed against the true end is 0
    usage = next(t for t in topic_status(settings) if t.topic == topic)
    assert {p.partition: p.landed_offset for p in usage.partitions} == committed
    assert [p.lag for p in usage.partitions] == [0, 0, 0, 0]
    # the admin API as a lag tool calls it (describe + list offsets of the group)
    admin = AdminClient({"bootstrap.servers": kafka, "log_level": 2})
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(4)])])
    assert {tp.partition: tp.offset for tp in listed[group].result(10).topic_partitions} == true_ends


def test_restart_resumes_from_the_delta_log_whatever_the_group_says(env, kafka):
    group = _own_group("telcolake-ingest")
    settings = load_settings()
    topic = settings.topic("usage.events")
    lake = Lake.from_settings(settings)
    produce(kafka, topic, usage_values(2000), partitions=4)
    run_ingest(settings, until_caught_up=True)
    admin = AdminClient({"bootstrap.servers": kafka, "log_level": 2})
    # garble: partition 0 back to the start, partition 1 far beyond the end; then drop the group entirely
    altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 10**9)])])
    altered[group].result(10)
    assert _ours(group_offsets(kafka, group), topic)[0] == 0
    produce(kafka, topic, usage_values(1000, start=2000), partitions=4)
    run_ingest(settings, until_caught_up=True)
    coords = _coords(lake)
    assert len(coords) == len(set(coords)) == 3000 and set(coords) == all_offsets(kafka, topic)
    assert _ours(group_offsets(kafka, group), topic) == end_offsets(kafka, topic)  # repaired by the next commits

    admin.delete_consumer_groups([group])[group].result(10)
    assert _ours(group_offsets(kafka, group), topic) == {}
    produce(kafka, topic, usage_values(500, start=3000), partitions=4)
    run_ingest(settings, until_caught_up=True)
    coords = _coords(lake)
    assert len(coords) == len(set(coords)) == 3500 and set(coords) == all_offsets(kafka, topic)
    assert _ours(group_offsets(kafka, group), topic) == end_offsets(kafka, topic)


def test_a_refused_offset_commit_is_counted_and_never_fails_the_batch(env, kafka):
    group = _own_group("telcolake-ingest")
    settings = load_settings()
    topic = settings.topic("usage.events")
    lake = Lake.from_settings(settings)
    # another client joins the group under the same name: Kafka (and Tansu) then refuse commits
    # from a client outside the group's generation with UNKNOWN_MEMBER_ID
    member = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False, "log_level": 0,
                       "session.timeout.ms": 30_000})
    member.subscribe([topic])
    deadline = time.monotonic() + 30
    while not member.assignment() and time.monotonic() < deadline:
        member.poll(0.2)
    assert member.assignment(), "the other member never joined"
    try:
        produce(kafka, topic, usage_values(1500), partitions=4)
        failures: list[tuple[str, str]] = []
        stats = run_ingest(settings, until_caught_up=True, on_offsets_failed=lambda g, line: failures.append((g, line)))
        assert stats.rows["usage.events"] == 1500
        assert stats.offset_commit_failures >= 1 and failures and failures[0][0] == group
        assert "UNKNOWN_MEMBER_ID" in failures[0][1] or "Unknown member" in failures[0][1]
        coords = _coords(lake)
        assert len(coords) == len(set(coords)) == 1500
    finally:
        member.close()
    # the member left: the next landed batch's commit goes through
    produce(kafka, topic, usage_values(100, start=1500), partitions=4)
    stats = run_ingest(settings, until_caught_up=True)
    assert stats.offset_commit_failures == 0
    assert _ours(group_offsets(kafka, group), topic) == end_offsets(kafka, topic)

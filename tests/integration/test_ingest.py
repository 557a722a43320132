"""Ingest against the real embedded broker: exactly once, quarantine, watermark quirk, workers."""

from __future__ import annotations

import threading
import time

import pyarrow.compute as pc
import pytest

from pipelines.core.lake import Lake
from pipelines.ingest import run_ingest
from pipelines.ingest.kafka_source import StopFlag
from tests.helpers import ENC, all_offsets, produce, usage_record, usage_values


def landed_coords(lake: Lake, table: str) -> list[tuple[int, int]]:
    if not lake.exists(table):
        return []
    t = lake.read(table, columns=["_kafka_partition", "_kafka_offset"])
    return list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))


def test_ingest_lands_every_record_once_and_rerun_adds_nothing(env, lake, kafka):
    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(5000), partitions=4)
    stats = run_ingest(env, until_caught_up=True)
    assert stats.rows["usage.events"] == 5000
    coords = landed_coords(lake, "bronze/usage.events")
    assert len(coords) == len(set(coords)) == 5000
    assert set(coords) == all_offsets(kafka, topic)

    again = run_ingest(env, until_caught_up=True)
    assert again.rows.get("usage.events", 0) == 0
    assert len(landed_coords(lake, "bronze/usage.events")) == 5000


def test_last_records_of_small_batches_land_despite_low_watermark(env, lake, kafka):
    # Batches of 10, 1, 1, 1, 5 records: the embedded broker reports a high watermark of 14.
    topic = env.topic("usage.events")
    start = 0
    for size in (10, 1, 1, 1, 5):
        produce(kafka, topic, usage_values(size, start), partitions=None, keys=None)
        start += size
    run_ingest(env, until_caught_up=True, topics=["usage.events"])
    t = lake.read("bronze/usage.events", columns=["record_id"])
    assert sorted(t["record_id"].to_pylist()) == [f"R{i:09d}" for i in range(18)]


POISON = {
    "malformed_json": b"{not json",
    "empty_value": b"",
    "invalid_utf8": b'{"record_id": "\xff\xfe"}',
    "too_large": b'{"x": "' + b"a" * (5 * 1024 * 1024) + b'"}',
    "not_object": b"[1, 2, 3]",
    "not_object_number": b"42",
    "bad_type:duration_s": ENC.encode(usage_record(1, duration_s="long")),
    "missing_field:msisdn": ENC.encode({k: v for k, v in usage_record(2).items() if k != "msisdn"}),
    "out_of_range:started_at": ENC.encode(usage_record(3, started_at="1970-01-01T00:00:00Z")),
    "out_of_range:started_at_9999": ENC.encode(usage_record(4, started_at="9999-12-31T23:59:59Z")),
    "unknown_enum:event_type": ENC.encode(usage_record(5, event_type="fax")),
    "out_of_range:duration_s": ENC.encode(usage_record(6, duration_s=-1)),
}


def test_poison_records_are_quarantined_and_the_flow_keeps_running(env, lake, kafka):
    topic = env.topic("usage.events")
    good = usage_values(300, start=1000)
    values = good[:150] + list(POISON.values()) + [None] + good[150:]
    keys = [None if i % 7 == 0 else b"k" for i in range(len(values))]  # null keys too
    produce(kafka, topic, values, partitions=1, keys=keys)

    stop = StopFlag()
    result = {}
    thread = threading.Thread(target=lambda: result.update(stats=run_ingest(env, stop=stop, topics=["usage.events"])))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not lake.exists("bronze/usage.events") or lake.read("bronze/usage.events").num_rows < 300):
            time.sleep(0.2)
        # still running: records produced after the poison land too
        produce(kafka, topic, usage_values(50, start=5000), partitions=1)
        while time.monotonic() < deadline and lake.read("bronze/usage.events").num_rows < 350:
            time.sleep(0.2)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    bronze = lake.read("bronze/usage.events")
    assert bronze.num_rows == 350
    q = lake.read("quarantine/usage.events")
    reasons = sorted(q["reason"].to_pylist())
    expected = sorted([k.rsplit("_", 1)[0] if k.endswith(("_number", "_9999")) else k for k in POISON] + ["empty_value"])
    assert reasons == expected
    big = q.filter(pc.equal(q["reason"], "too_large"))
    assert len(big["raw"][0].as_py()) > 5 * 1024 * 1024  # raw bytes kept whole
    assert result["stats"].quarantined["usage.events"] == len(expected)


def test_two_workers_more_partitions_than_workers(env, lake, kafka):
    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(8000), partitions=4)
    run_ingest(env, until_caught_up=True, workers=2, topics=["usage.events"])
    coords = landed_coords(lake, "bronze/usage.events")
    assert len(coords) == len(set(coords)) == 8000
    assert set(coords) == all_offsets(kafka, topic)


@pytest.mark.parametrize("contract_topic", ["network.events", "bss.events"])
def test_other_topics_land_typed(env, lake, kafka, contract_topic):
    topic = env.topic(contract_topic)
    if contract_topic == "network.events":
        rec = {"event_id": "N1", "cell_id": "C0001", "site_id": "S001", "observed_at": "2026-10-01T00:00:00Z", "kind": "kpi", "call_attempts": 10, "dropped_calls": 1, "prb_utilization": 55.5, "latency_ms": 20.0}
    else:
        rec = {"event_id": "B1", "subscriber_id": "SUB0000001", "account_id": "ACC0000001", "occurred_at": "2026-10-01T00:00:00Z", "kind": "payment", "amount": "12.34", "attributes": {"method": "card"}}
    produce(kafka, topic, [ENC.encode(rec), b"junk"], partitions=1)
    run_ingest(env, until_caught_up=True, topics=[contract_topic])
    row = lake.read(f"bronze/{contract_topic}").to_pylist()[0]
    assert row[next(iter(rec))] == next(iter(rec.values()))
    if contract_topic == "bss.events":
        assert str(row["amount"]) == "12.3400" and row["attributes"] == '{"method":"card"}'
    assert lake.read(f"quarantine/{contract_topic}")["reason"].to_pylist() == ["malformed_json"]


def test_a_lake_ahead_of_a_recreated_topic_is_refused_not_waited_on(env, lake, kafka, tmp_path, monkeypatch):
    """The embedded broker keeps topics in memory: after a restart the lake has read past their end.
    Ingest and the stream flows refuse at once (they used to wait forever), naming the partitions,
    and land nothing."""
    import dataclasses

    from pipelines.core import broker
    from pipelines.ingest.kafka_source import OffsetsAhead
    from pipelines.streams import run_streams

    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(2000), partitions=4)
    assert run_ingest(env, until_caught_up=True).rows["usage.events"] == 2000
    run_streams(env, only="fraud", until_caught_up=True)

    restarted = broker.start_embedded(tmp_path / "restarted-broker")
    try:
        broker.ensure_topics(restarted.address, env.topics)
        produce(restarted.address, topic, usage_values(40, start=5000), partitions=4)
        moved = dataclasses.replace(env, kafka_bootstrap=restarted.address)
        version = lake.table("bronze/usage.events").version()
        with pytest.raises(OffsetsAhead, match=rf"{topic} partition 0: the lake has read up to offset 499, the topic ends at 10\b"):
            run_ingest(moved, until_caught_up=True)
        with pytest.raises(OffsetsAhead, match="recreated or truncated"):
            run_streams(moved, only="fraud", until_caught_up=True)
        assert lake.table("bronze/usage.events").version() == version

        # `telcolake demo` renames such a lake (never deletes it) and starts clean
        from pathlib import Path

        from pipelines.ops.demo import _set_aside_stale_lake

        kept = _set_aside_stale_lake(moved, restarted.address)
        assert kept and not Path(env.lake_root).exists()
        assert Lake(kept).table("bronze/usage.events").version() == version
        assert _set_aside_stale_lake(moved, restarted.address) is None
    finally:
        broker.stop_embedded(tmp_path / "restarted-broker")

"""Fulfilment benchmark: the saga's own overhead (orders/s of 4-step orders with instant targets) and the latency
it adds per transition.

On a fresh embedded broker and lake, in one run:

1. logic: the orchestrator's shard logic in memory (no Kafka, no Delta) on 4-step orders whose
   targets answer at once and never fail; baseline: decoding the same orders and results and
   encoding the same commands (the wire work any consumer of these topics does).
2. end to end: N orders on ``orders.events``; ``run_fulfilment`` in this process and the
   simulated targets (``telcolake responders --instant``) in another; orders/s until every
   order completed; baseline: a plain confluent-kafka consumer reading the same orders.
3. latency at a steady rate: orders produced at ``--rate`` per second for ``--seconds``; the
   latency one transition adds = the Kafka timestamp of a command - that of the record that
   caused it (the order, or the previous step's result); baseline in the same run: the
   targets' own consume -> answer -> produce hop (result timestamp - command timestamp).

Usage: python bench/fulfilment.py [--orders 20000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.core import broker  # noqa: E402
from pipelines.core.config import load_settings  # noqa: E402
from pipelines.core.contracts import COMMANDS, ORDERS, RESULTS, decode_batch  # noqa: E402
from pipelines.ingest.kafka_source import StopFlag  # noqa: E402
from pipelines.oss import FulfilStats, run_fulfilment  # noqa: E402
from pipelines.oss.config import FulfilmentConfig, ResponderConfig, fulfilment_config  # noqa: E402
from pipelines.oss.inmemory import InMemory  # noqa: E402
from pipelines.oss.run import prepare_topics  # noqa: E402
from pipelines.oss.wire import keyed  # noqa: E402

ENC = msgspec.json.Encoder()
T0 = datetime(2026, 10, 8, 9, tzinfo=UTC)
NO_FAULTS = ResponderConfig(permanent_rate=0, retryable_rate=0, exhausted_rate=0, slow_rate=0, timeout_rate=0, lost_rate=0,
                            duplicate_rate=0, stale_rate=0)


def orders(n: int, start: int = 0, at: datetime = T0) -> list[tuple[bytes, bytes]]:
    """New lines with an OTT bundle: SIM reserve -> HSS profile -> PCRF policy -> OTT activation."""
    out = []
    for i in range(start, start + n):
        oid = f"B{i:08d}"
        out.append((oid.encode(), ENC.encode({
            "event_id": f"E{oid}", "order_id": oid, "kind": "order", "requested_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "account_id": f"ACC{i:07d}", "subscriber_id": f"SUB{i:07d}", "channel": "web",
            "items": [{"item_id": "1", "action": "add", "product": "mobile_line", "plan_id": "plus", "msisdn": f"49151{i:07d}",
                       "imsi": f"26201{i:010d}", "country": "DE", "currency": "EUR", "segment": "consumer"},
                      {"item_id": "2", "action": "add", "product": "ott_bundle", "ott_partner_id": "ott-musicbox"}]})))
    return out


def logic_bench(n: int, batch: int) -> None:
    cfg = FulfilmentConfig()
    m = InMemory(cfg, NO_FAULTS, shards=1)
    records = orders(n)
    spent = 0.0
    started = time.perf_counter()
    for i in range(0, n, batch):
        t = time.perf_counter()
        m.feed("orders.events", records[i:i + batch])
        spent += time.perf_counter() - t
    while True:
        sent = m.topics.get("provisioning.commands", [])
        fresh = sent[m.offsets.get("_answered", 0):]
        if not fresh:
            break
        m.offsets["_answered"] = len(sent)
        decoded = pl.from_arrow(decode_batch(COMMANDS, [v for _, v in fresh], now=datetime(2100, 1, 1, tzinfo=UTC)).table)
        results = decoded.select(
            (pl.col("command_id") + ":" + pl.col("attempt").cast(pl.String)).alias("result_id"), "command_id", "order_id", "step_seq",
            "step", "target", "action", "attempt", pl.lit("done").alias("status"), pl.lit("applied").alias("effect"),
            (pl.col("issued_at") + pl.duration(milliseconds=1)).alias("completed_at"))
        answers = keyed(results, "order_id")
        for i in range(0, len(answers), batch * 2):
            t = time.perf_counter()
            m.feed("provisioning.results", answers[i:i + batch * 2])
            spent += time.perf_counter() - t
    total = time.perf_counter() - started
    done = int(m.table("orders").filter(pl.col("state") == "completed").height)
    assert done == n, f"{done} of {n} completed"
    # baseline: the wire work alone (decode the orders and results, encode the commands)
    t = time.perf_counter()
    decode_batch(ORDERS, [v for _, v in records])
    commands = m.topics["provisioning.commands"]
    cmds = pl.from_arrow(decode_batch(COMMANDS, [v for _, v in commands], now=datetime(2100, 1, 1, tzinfo=UTC)).table)
    decode_batch(RESULTS, [v for _, v in m.topics["provisioning.results"]])
    keyed(cmds, "order_id", raw=("payload",))
    wire = time.perf_counter() - t
    print(f"1. logic, in memory, batches of {batch} orders: {n:,} 4-step orders in {spent:.2f} s of orchestrator time = "
          f"{n / spent:,.0f} orders/s ({4 * n / spent:,.0f} steps/s; {total:.1f} s with the in-memory targets); "
          f"baseline wire work only {wire:.2f} s = {n / wire:,.0f} orders/s; the saga costs {spent / wire:.1f}x the wire work")


def _produce(settings, records) -> None:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5, "batch.size": 1_000_000, "log_level": 2})
    topic = settings.topic(ORDERS.topic)
    for key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def _responders(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "responders", "--instant", "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _orchestrate(settings, stats: FulfilStats, stop: StopFlag) -> threading.Thread:
    t = threading.Thread(target=run_fulfilment, args=(settings,), kwargs={"stop": stop, "stats": stats, "clock": "external"}, daemon=True)
    t.start()
    return t


def end_to_end(settings, env: dict, n: int) -> None:
    records = orders(n, start=10_000_000)
    _produce(settings, records)
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-raw", "enable.partition.eof": True, "log_level": 2})
    topic = settings.topic(ORDERS.topic)
    parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    t, seen, eof = time.perf_counter(), 0, set()
    while len(eof) < len(parts):
        for m in c.consume(20_000, timeout=0.2):
            if m.error() is not None:
                eof.add(m.partition())
            else:
                seen += 1
    raw = time.perf_counter() - t
    c.close()
    stats, stop = FulfilStats(), StopFlag()
    proc = _responders(env)
    started = time.perf_counter()
    thread = _orchestrate(settings, stats, stop)
    while stats.get("orders_completed") < n and time.perf_counter() - started < 600:
        time.sleep(0.05)
    took = time.perf_counter() - started
    stop.set()
    thread.join(timeout=120)
    proc.terminate()
    proc.wait(timeout=60)
    print(f"2. end to end through Kafka and Delta ({fulfilment_config(settings).shards} shards, 1 worker; targets in another process): {n:,} orders completed in "
          f"{took:.1f} s = {n / took:,.0f} orders/s ({4 * n / took:,.0f} commands/s, start-up included); baseline a plain consumer "
          f"reading the {seen:,} orders: {raw:.2f} s = {seen / raw:,.0f} records/s")


def _timestamps(settings, contract_topic: str) -> pl.DataFrame:
    topic = settings.topic(contract_topic)
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-ts", "enable.partition.eof": True, "log_level": 2})
    parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    rows, eof = [], set()
    while len(eof) < len(parts):
        for m in c.consume(20_000, timeout=0.2):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            v = msgspec.json.decode(m.value())
            rows.append((v.get("order_id"), v.get("step_seq", -1), v.get("action", "order"), m.timestamp()[1]))
    c.close()
    return pl.DataFrame(rows, schema={"order_id": pl.String, "step_seq": pl.Int64, "action": pl.String, "ts": pl.Int64}, orient="row")


def latency(settings, env: dict, rate: int, seconds: int) -> None:
    stats, stop = FulfilStats(), StopFlag()
    proc = _responders(env)
    thread = _orchestrate(settings, stats, stop)
    time.sleep(3)  # both started
    base = 20_000_000
    total = rate * seconds
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 1, "log_level": 2})
    topic = settings.topic(ORDERS.topic)
    started = time.perf_counter()
    for tick in range(seconds * 20):
        chunk = orders(rate // 20, start=base + tick * (rate // 20), at=datetime.now(UTC))
        for key, value in chunk:
            p.produce(topic, key=key, value=value)
        p.poll(0)
        delay = started + (tick + 1) / 20 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    p.flush(60)
    wait = time.perf_counter()
    while stats.get("orders_completed") < total and time.perf_counter() - wait < 120:
        time.sleep(0.1)
    lag_s = time.perf_counter() - wait
    stop.set()
    thread.join(timeout=120)
    proc.terminate()
    proc.wait(timeout=60)
    o = _timestamps(settings, ORDERS.topic).filter(pl.col("order_id").str.slice(1).cast(pl.Int64) >= base)
    cmd = _timestamps(settings, COMMANDS.topic).filter(pl.col("order_id").is_in(o["order_id"].implode()))
    res = _timestamps(settings, RESULTS.topic).filter(pl.col("order_id").is_in(o["order_id"].implode()))
    first = cmd.filter(pl.col("step_seq") == 0).join(o.select("order_id", pl.col("ts").alias("cause")), on="order_id")
    later = cmd.filter(pl.col("step_seq") > 0).join(
        res.select("order_id", (pl.col("step_seq") + 1).alias("step_seq"), pl.col("ts").alias("cause")), on=["order_id", "step_seq"])
    added = pl.concat([first, later]).select((pl.col("ts") - pl.col("cause")).alias("ms"))["ms"].to_numpy()
    hop = res.join(cmd.select("order_id", "step_seq", pl.col("ts").alias("cause")), on=["order_id", "step_seq"])
    hop_ms = (hop["ts"] - hop["cause"]).to_numpy()
    q = lambda a, p: float(np.percentile(a, p)) if len(a) else float("nan")  # noqa: E731
    print(f"3. latency at {rate:,} orders/s for {seconds} s ({total:,} orders, {len(added):,} transitions; drained {lag_s:.1f} s "
          f"after the producer stopped): added per transition p50 {q(added, 50):.0f} ms, p99 {q(added, 99):.0f} ms, max "
          f"{added.max() if len(added) else 0:.0f} ms; baseline the targets' consume-answer-produce hop p50 {q(hop_ms, 50):.0f} ms, "
          f"p99 {q(hop_ms, 99):.0f} ms (ratio p99 {q(added, 99) / max(q(hop_ms, 99), 1):.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--rate", type=int, default=1_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [fulfilment] setting for the Kafka runs, e.g. --set shards=1 --set flush_seconds=0.05")
    ap.add_argument("--skip-logic", action="store_true", help="skip part 1")
    args = ap.parse_args()
    print(f"fulfilment bench on {os.cpu_count()} cores (shared with whatever else runs)")
    if not args.skip_logic:
        logic_bench(args.orders, args.batch)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fulfil-"))
    state = broker.start_embedded(tmp / "broker")
    try:
        cfg = (REPO / "telcolake.toml").read_text()
        for key in ("permanent_rate", "retryable_rate", "exhausted_rate", "slow_rate", "timeout_rate", "lost_rate", "duplicate_rate", "stale_rate"):
            cfg = "\n".join(f"{key} = 0.0" if line.startswith(f"{key} = ") else line for line in cfg.splitlines()) + "\n"
        head, _, tail = cfg.partition("[fulfilment]\n")
        for item in args.set:
            key, value = item.split("=", 1)
            lines = tail.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            lines[at] = f"{key} = {value}"
            tail = "\n".join(lines) + "\n"
        cfg = head + "[fulfilment]\n" + tail
        if args.set:
            print("settings: " + ", ".join(args.set))
        (tmp / "telcolake.toml").write_text(cfg)
        env = {**os.environ, "TELCOLAKE_CONFIG": str(tmp / "telcolake.toml"), "TELCOLAKE_LAKE": str(tmp / "lake"),
               "TELCOLAKE_STATE_DIR": str(tmp / "state"), "TELCOLAKE_KAFKA_BOOTSTRAP": state.address}
        os.environ.update(env)
        settings = load_settings()
        broker.ensure_topics(state.address, settings.topics)
        prepare_topics(settings)
        end_to_end(settings, env, args.orders)
        latency(settings, env, args.rate, args.seconds)
    finally:
        broker.stop_embedded(tmp / "broker")


if __name__ == "__main__":
    main()

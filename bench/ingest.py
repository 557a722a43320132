"""Ingest benchmark: telcolake ingest vs the raw consumer ceiling and a naive baseline.

Produces simulated events of all three topics (usage, network, bss, in the simulator's
proportions) to a fresh embedded broker, then in the same run measures catch-up:
(a) a plain confluent-kafka consumer reading the three topics to partition EOF, (b) a naive
ingest of usage.events only: per-message json.loads and write_deltalake every 10,000 rows,
(c) the CLI path, `telcolake ingest --until-caught-up --no-silver` over all three topics (exactly
once on, in a child process so its peak RSS is its own, process start included). Then, at a
steady input rate of usage events, the p50/p99 freshness: produce time -> row visible in bronze.

``--monitoring-cost`` measures instead what the operator view costs ingest: (c) without (no
consumer group, nothing reading the lake) against (c) with the landed offsets committed to
the group after each bronze commit and, beside it, `telcolake up`'s status refresh (lag in
offsets and seconds, tables, jobs, quarantine, alerts, bill cycles) and a /metrics render every
``--status-interval`` seconds (1 s: five times the shipped 5 s); each twice, alternating.

Usage: python bench/ingest.py [--events 1000000] [--rate 20000] [--seconds 20] [--monitoring-cost]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition
from deltalake import DeltaTable, write_deltalake

from pipelines.core import broker
from pipelines.simulate import SimConfig, simulate

TOPICS = {"usage.events": 4, "network.events": 2, "bss.events": 2}


def simulated_values(n: int) -> dict[str, list[bytes]]:
    """About ``n`` simulated values over the three topics, in the simulator's proportions (repeated if short)."""
    subs = max(200, n // 400)
    out = simulate(SimConfig(subscribers=subs, days=7, seed=7, malformed_rate=0.0)).values
    total = sum(len(out[t]) for t in TOPICS)
    values = {}
    for t in TOPICS:
        want = max(1, round(n * len(out[t]) / total))
        v = out[t]
        while len(v) < want:
            v = v + v
        values[t] = v[:want]
    return values


def usage_values(n: int) -> list[bytes]:
    """At least ``n`` simulated usage values (the simulator's own output, repeated if short)."""
    subs = max(200, n // 300)
    values = simulate(SimConfig(subscribers=subs, days=7, seed=7, malformed_rate=0.0)).values["usage.events"]
    while len(values) < n:
        values = values + values
    return values[:n]


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "log_level": 2})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def read_all(bootstrap: str, topic: str | dict[str, int], partitions: int = 0, on_batch=None) -> int:
    """Read ``topic`` (or every topic of a {topic: partitions} mapping) to partition EOF; records read."""
    topics = topic if isinstance(topic, dict) else {topic: partitions}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.partition.eof": True, "log_level": 2,
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20})
    c.assign([TopicPartition(t, p, 0) for t, n in topics.items() for p in range(n)])
    n, eof = 0, set()
    while len(eof) < sum(topics.values()):
        msgs = c.consume(20_000, timeout=0.5)
        good = [m for m in msgs if m.error() is None]
        eof.update((m.topic(), m.partition()) for m in msgs if m.error() is not None)
        n += len(good)
        if on_batch is not None:
            on_batch(good)
    c.close()
    return n


def naive(bootstrap: str, topic: str, partitions: int, lake: Path) -> int:
    from pipelines.core.contracts import USAGE

    schema = USAGE.wire_schema.append(pa.field("_kafka_partition", pa.int32())).append(pa.field("_kafka_offset", pa.int64()))
    rows: list[dict] = []

    def flush() -> None:
        if rows:
            write_deltalake(str(lake), pa.Table.from_pylist(rows, schema=schema), mode="append")
            rows.clear()

    def on_batch(msgs) -> None:
        for m in msgs:
            rec = json.loads(m.value())
            rec["_kafka_partition"], rec["_kafka_offset"] = m.partition(), m.offset()
            rows.append(rec)
            if len(rows) >= 10_000:
                flush()

    n = read_all(bootstrap, topic, partitions, on_batch)
    flush()
    return n


def telcolake_ingest(env: dict, workers: int = 1) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of `telcolake ingest --until-caught-up` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.cli", "ingest", "--until-caught-up", "--no-silver", "--quiet", "--workers", str(workers)], env=env, check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def freshness(env: dict, bootstrap: str, topic: str, values: list[bytes], rate: int, seconds: float, lake: Path) -> tuple[float, float, int]:
    """Run ingest continuously, produce at ``rate``/s, and time produce -> visible."""
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", "--quiet", "--no-silver"], env=env)
    table = lake / "bronze" / "usage.events"
    lags: list[np.ndarray] = []
    done = threading.Event()

    def poll() -> None:
        version = None
        while not done.is_set() or version is None:
            try:
                dt = DeltaTable(str(table))
            except Exception:
                time.sleep(0.05)
                continue
            if version is not None and dt.version() > version:
                seen = time.time()
                changes = pa.table(dt.load_cdf(starting_version=version + 1, ending_version=dt.version()).read_all())
                ts = changes["_kafka_timestamp"].cast(pa.int64()).to_numpy() / 1e6
                lags.append(seen - ts)
            version = dt.version()
            time.sleep(0.05)
            if done.is_set():
                break

    poller = threading.Thread(target=poll)
    time.sleep(3)  # let the ingest start and land what is already there
    poller.start()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 2})
    start = time.time()
    sent = 0
    while time.time() - start < seconds:
        due = int((time.time() - start) * rate)
        while sent < due:
            try:
                p.produce(topic, value=values[sent % len(values)], partition=sent % 4)
                sent += 1
            except BufferError:
                p.poll(0.01)
        p.poll(0)
        time.sleep(0.005)
    p.flush(30)
    time.sleep(4)
    done.set()
    poller.join()
    proc.send_signal(2)
    proc.wait(60)
    all_lags = np.concatenate(lags) if lags else np.array([np.nan])
    return float(np.percentile(all_lags, 50)), float(np.percentile(all_lags, 99)), sent


def _config(path: Path, group: str) -> str:
    """A copy of the shipped telcolake.toml whose ingest publishes to consumer group ``group`` ("" : none)."""
    from pipelines.core.config import REPO_ROOT

    text = (REPO_ROOT / "telcolake.toml").read_text().replace('consumer_group = "telcolake-ingest"', f'consumer_group = "{group}"')
    path.write_text(text)
    return str(path)


def monitoring_cost(env: dict, work: Path, total: int, interval: float) -> None:
    """(c) without and with the consumer group commits plus the status refresh and /metrics beside it."""
    from pipelines.core.config import load_settings
    from pipelines.ops.up.service import Service

    rates: dict[str, list[float]] = {"without": [], "with": []}
    refreshes: list[int] = []
    for i, mode in enumerate(("without", "with", "without", "with")):
        lake = work / f"lake-{i}"
        run_env = dict(env, TELCOLAKE_LAKE=str(lake),
                       TELCOLAKE_CONFIG=_config(work / f"telcolake-{i}.toml", f"bench-ingest-{i}" if mode == "with" else ""))
        done, count = threading.Event(), [0]
        watcher = None
        if mode == "with":
            os.environ.update({k: run_env[k] for k in ("TELCOLAKE_LAKE", "TELCOLAKE_CONFIG", "TELCOLAKE_STATE_DIR", "TELCOLAKE_KAFKA_BOOTSTRAP")})
            service = Service(load_settings())
            service.broker.update(address=env["TELCOLAKE_KAFKA_BOOTSTRAP"], reachable=True)

            def watch(service=service, done=done, count=count) -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    service._refresh_status()
                    service.metrics_text()
                    count[0] += 1
                    done.wait(max(0.0, interval - (time.perf_counter() - started)))

            watcher = threading.Thread(target=watch)
            watcher.start()
        seconds, _rss = telcolake_ingest(run_env)
        done.set()
        if watcher is not None:
            watcher.join()
            refreshes.append(count[0])
        landed = sum(DeltaTable(str(lake / "bronze" / t)).to_pyarrow_dataset().count_rows() for t in TOPICS)
        assert landed == total, f"{landed} landed of {total}"
        rates[mode].append(total / seconds)
        print(f"(c) {mode:>7} consumer group + status/metrics: {total / seconds:>10,.0f} events/s ({seconds:.1f}s)")
    best = {m: max(v) for m, v in rates.items()}
    print(f"    with/without = {best['with'] / best['without']:.3f} (best of 2 each; {sum(refreshes)} status refreshes "
          f"+ /metrics renders every {interval:g}s during the 'with' runs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=1, help="Bytewax workers for (c)")
    ap.add_argument("--monitoring-cost", action="store_true", help="Only (c) without and with the consumer group commits and the status/metrics refresh")
    ap.add_argument("--status-interval", type=float, default=1.0, help="Seconds between status refreshes with --monitoring-cost")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="telcolake-bench-"))
    state = broker.start_embedded(work / "state")
    env = dict(os.environ, TELCOLAKE_STATE_DIR=str(work / "state"), TELCOLAKE_LAKE=str(work / "lake"), TELCOLAKE_KAFKA_BOOTSTRAP=state.address)
    env.pop("TELCOLAKE_CONFIG", None)
    try:
        broker.ensure_topics(state.address, TOPICS)
        t = time.perf_counter()
        by_topic = simulated_values(args.events)
        total = sum(len(v) for v in by_topic.values())
        print(f"simulated {total:,} events ({', '.join(f'{t} {len(v):,}' for t, v in by_topic.items())}) in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        for topic, values in by_topic.items():
            produce(state.address, topic, values, TOPICS[topic])
        print(f"produced in {time.perf_counter() - t:.1f}s")
        values = by_topic["usage.events"]
        if args.monitoring_cost:
            monitoring_cost(env, work, total, args.status_interval)
            return

        t = time.perf_counter()
        n = read_all(state.address, TOPICS)
        a = n / (time.perf_counter() - t)
        print(f"(a) raw consumer, 3 topics:  {a:>12,.0f} events/s ({n:,} events)")
        t = time.perf_counter()
        n = naive(state.address, "usage.events", 4, work / "naive")
        b = n / (time.perf_counter() - t)
        print(f"(b) naive json.loads+delta:  {b:>12,.0f} events/s (usage.events only, {n:,} events)")
        seconds, rss = telcolake_ingest(env, args.workers)
        c = total / seconds
        landed = sum(DeltaTable(str(work / "lake" / "bronze" / t)).to_pyarrow_dataset().count_rows() for t in TOPICS)
        print(f"(c) telcolake ingest -w {args.workers} (CLI, 3 topics): {c:>10,.0f} events/s ({landed:,} landed, exactly once, process start included)")
        print(f"    c/a = {c / a:.2f}   c/b = {c / b:.2f}   peak RSS of ingest = {rss:,.0f} MB")
        p50, p99, sent = freshness(env, state.address, "usage.events", values, args.rate, args.seconds, work / "lake")
        print(f"freshness at {args.rate:,} events/s ({sent:,} sent): p50 = {p50:.2f}s  p99 = {p99:.2f}s (produce -> visible in a new DeltaTable)")
    finally:
        broker.stop_embedded(work / "state")


if __name__ == "__main__":
    main()

"""Stream benchmark: cell-KPI flow throughput, produce-to-row latency and the highest sustained rate.

On a fresh embedded broker and lake, in one run:

1. throughput: N network events (one KPI sample per cell and minute, keyed by cell) on the
   topic; a plain confluent-kafka consumer reading them (the ceiling, the baseline) vs
   ``run_streams(only="kpi", until_caught_up=True)`` (decode, windows, alerts, MERGE, checkpoint),
   with the default ``[streams]`` batching; the live parts flush every 0.25 s.
2. latency at a steady rate: a producer process sends KPI samples in compressed event time
   (``--speed`` event seconds per wall second, so a 1-minute window closes every second); a
   KPI row (or alert) is *caused* by the first event of its cell at or past window end +
   allowed lateness; latency = the commit that made the row visible - that event's produce time.
3. the highest sustained rate: steady rates in steps; a rate is sustained when the lag left
   when the producer stops is under one second of input and drains at once.
4. fraud and offers over the simulator's default week (2,000 subscribers): throughput, and
   precision / recall of the fraud alerts against the planted fraudsters.

Usage: python bench/streams.py [--events 400000] [--rate 5000] [--seconds 20] [--rates 5000,10000,20000,40000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
from confluent_kafka import Consumer, Producer, TopicPartition

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lab import private_world  # noqa: E402
from pipelines.core import broker  # noqa: E402
from pipelines.ingest.kafka_source import StopFlag  # noqa: E402
from pipelines.streams import run_streams  # noqa: E402

E0 = datetime(2026, 10, 1, tzinfo=UTC)
ENC = msgspec.json.Encoder()
LATENESS_S = 120


def record(i: int, cell: int, at: datetime, degraded: bool) -> bytes:
    attempts = 40 + cell % 20
    return ENC.encode({
        "event_id": f"B{i:010d}", "cell_id": f"C{cell:05d}", "site_id": f"S{cell // 3:04d}",
        "observed_at": at.isoformat().replace("+00:00", "Z"), "kind": "kpi", "call_attempts": attempts,
        "dropped_calls": attempts // 4 if degraded else i % 2, "latency_ms": 20.0 + i % 30, "prb_utilization": float(i % 100),
    })


def backlog(bootstrap: str, topic: str, events: int, cells: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "log_level": 2})
    for i in range(events):
        cell, minute = i % cells, i // cells
        while True:
            try:
                p.produce(topic, key=f"C{cell:05d}".encode(), value=record(i, cell, E0 + timedelta(minutes=minute, seconds=cell % 50), False))
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def raw_read(bootstrap: str, topic: str, partitions: int) -> tuple[int, float]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.partition.eof": True, "log_level": 2,
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n, eof, t = 0, set(), time.perf_counter()
    while len(eof) < partitions:
        for m in c.consume(20_000, timeout=0.5):
            if m.error():
                eof.add(m.partition())
            else:
                n += 1
    c.close()
    return n, time.perf_counter() - t


def produce_steady(bootstrap: str, topic: str, rate: int, seconds: float, cells: int, t0: float, speed: float, log: str) -> None:
    """Producer process: ``rate`` events/s for ``seconds``; event time = E0 + (wall - t0) * speed."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "log_level": 2})
    cell_log, at_log = [], []
    i, start = 0, time.time()
    while (now := time.time()) - start < seconds:
        due = int((now - start) * rate)
        while i < due:
            cell = i % cells
            at = E0 + timedelta(seconds=(time.time() - t0) * speed)
            degraded = cell % 50 == 0 and int((at - E0).total_seconds() // 300) % 2 == 1  # 5 event-minutes on, 5 off
            while True:
                try:
                    p.produce(topic, key=f"C{cell:05d}".encode(), value=record(i, cell, at, degraded))
                    break
                except BufferError:
                    p.poll(0.01)
            cell_log.append(cell)
            at_log.append(int((at - E0) / timedelta(microseconds=1)))
            i += 1
        p.poll(0)
        time.sleep(0.002)
    p.flush(60)
    np.savez(log, cell=np.array(cell_log, np.int64), at=np.array(at_log, np.int64))


def steady(settings, topic: str, rate: int, seconds: float, cells: int, speed: float, tmp: Path) -> dict:
    """Run the KPI flow live while a producer process sends at ``rate``; latencies and lag."""
    broker.ensure_topics(settings.kafka_bootstrap, {topic: 2})
    stop, commits, processed = StopFlag(), [], [0]
    lock = threading.Lock()

    def on_commit(flow, emits) -> None:
        now = time.time()
        with lock:
            for e in emits:
                processed[0] += e.result.counts.get("events", 0)
                if "kpi" in e.result.rows:
                    k = e.result.rows["kpi"]
                    commits.append(pl.DataFrame({"cell_id": k["cell_id"].to_pylist(), "end": k["window_end"].to_pylist(), "kind": "kpi", "at": now}))
                if "alerts" in e.result.rows:
                    a = e.result.rows["alerts"].to_pylist()
                    raised = [r for r in a if r["windows"] == 3 and r["last_seen_at"] == r["raised_at"]]
                    if raised:
                        commits.append(pl.DataFrame({"cell_id": [r["entity_id"] for r in raised], "end": [r["raised_at"] for r in raised],
                                                     "kind": "alert", "at": now}))

    thread = threading.Thread(target=lambda: run_streams(settings, only="kpi", stop=stop, on_commit=on_commit))
    thread.start()
    time.sleep(4)  # topics, tables, consumer assignment
    t0 = time.time()
    log = str(tmp / f"produced-{rate}.npz")
    subprocess.run([sys.executable, __file__, "--produce", settings.kafka_bootstrap, topic, str(rate), str(seconds), str(cells), str(t0),
                    str(speed), log], check=True)
    produced_at_stop = int(np.load(log)["cell"].size)
    with lock:
        lag_at_stop = produced_at_stop - processed[0]
    drain_start = time.time()
    while time.time() - drain_start < 30 and processed[0] < produced_at_stop:
        time.sleep(0.05)
    drain_s = time.time() - drain_start
    stop.set()
    thread.join()
    out = {"rate": rate, "produced": produced_at_stop, "lag_at_stop": lag_at_stop, "drain_s": round(drain_s, 2)}
    if not commits:
        return out
    rows = pl.concat(commits).with_columns(pl.col("end").cast(pl.Datetime("us", "UTC")))
    p = np.load(log)
    events = pl.DataFrame({"cell_id": [f"C{c:05d}" for c in p["cell"]], "obs": p["at"]}).sort("obs")
    rows = rows.with_columns((pl.col("end").dt.epoch("us") - int(E0.timestamp() * 1e6) + LATENESS_S * 1_000_000).alias("obs")).sort("obs")
    joined = rows.join_asof(events.rename({"obs": "closing"}), left_on="obs", right_on="closing", by="cell_id", strategy="forward", check_sortedness=False)
    joined = joined.drop_nulls("closing").with_columns(
        (pl.col("at") - (t0 + pl.col("closing") / 1e6 / speed)).alias("latency_s")
    )
    for kind in ("kpi", "alert"):
        lat = joined.filter(pl.col("kind") == kind)["latency_s"].to_numpy()
        if lat.size:
            out[kind] = {"rows": int(lat.size), "p50_s": round(float(np.percentile(lat, 50)), 3), "p99_s": round(float(np.percentile(lat, 99)), 3)}
    return out


def fraud_on_simulator(settings, tmp: Path, subscribers: int) -> None:
    """Fraud + offers over a simulated week; precision and recall against the planted fraudsters."""
    from pipelines.core.lake import Lake
    from pipelines.simulate import SimConfig, simulate

    sim = simulate(SimConfig(subscribers=subscribers))
    s = replace(settings, topics={"usage.events.sim": 4, "fraud.alerts": 1, "offers.triggers": 1, "network.events": 2, "network.alerts": 1,
                                  "bss.events": 1}, lake_root=str(tmp / "lake-sim"))
    broker.ensure_topics(s.kafka_bootstrap, {"usage.events.sim": 4})
    p = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "log_level": 2})
    for value, key in zip(sim.values["usage.events"], sim.keys["usage.events"], strict=True):
        while True:
            try:
                p.produce("usage.events.sim", value=value, key=key)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    started = time.perf_counter()
    stats = run_streams(s, only="fraud,offers", until_caught_up=True)
    took = time.perf_counter() - started
    n = stats.counts["fraud"]["events"]
    print(f"fraud + offers over the simulated week: {n:,} usage events in {took:.2f} s = {n / took:,.0f} events/s per flow; "
          f"{stats.counts['fraud'].get('too_late', 0):,} too late, {stats.counts['offers'].get('triggers', 0)} offer triggers")
    alerts = Lake.from_settings(s).read("gold/fraud/alerts").to_pylist()
    for rule in ("sim_box", "intl_velocity"):
        planted = {k for k, v in sim.planted.fraud_kinds.items() if v == rule}
        found = {a["entity_id"] for a in alerts if a["rule"] == rule}
        tp = len(found & planted)
        print(f"  {rule}: planted {len(planted)}, alerted {len(found)} subscribers in {sum(a['rule'] == rule for a in alerts)} alerts; "
              f"precision {tp / len(found) if found else 0:.2f}, recall {tp / len(planted) if planted else 1:.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        a = sys.argv[2:]
        produce_steady(a[0], a[1], int(a[2]), float(a[3]), int(a[4]), float(a[5]), float(a[6]), a[7])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--rates", default="5000,10000,20000,40000")
    ap.add_argument("--fraud-subscribers", type=int, default=2000)
    args = ap.parse_args()

    with private_world("telcolake-bench-streams-", broker_dir="state", keep=True) as (tmp, settings, address):
        topic = settings.topic("network.events")

        backlog(address, topic, args.events, args.cells)
        n, secs = raw_read(address, topic, settings.topics[topic])
        base = n / secs
        print(f"baseline raw consumer: {n:,} events in {secs:.2f} s = {base:,.0f} events/s")
        started = time.perf_counter()
        stats = run_streams(settings, only="kpi", until_caught_up=True)
        took = time.perf_counter() - started
        kpi = stats.counts["kpi"]
        print(f"kpi flow until caught up: {kpi['events']:,} events -> {kpi.get('kpi_rows', 0):,} KPI rows in {took:.2f} s = "
              f"{kpi['events'] / took:,.0f} events/s ({kpi['events'] / took / base:.2f}x the raw consumer), {stats.commits} commits")

        def live(name: str):
            topics = {f"network.events.{name}": 2, "network.alerts": 1, "fraud.alerts": 1, "offers.triggers": 1, "usage.events": 1, "bss.events": 1}
            raw = dict(settings.raw, streams={**settings.section("streams"), "flush_seconds": 0.25})  # live: small batches
            return replace(settings, topics=topics, lake_root=str(tmp / f"lake-{name}"), raw=raw), f"network.events.{name}"

        s, t = live("latency")
        result = steady(s, t, args.rate, args.seconds, args.cells, args.speed, tmp)
        print(f"steady {args.rate:,} events/s for {args.seconds:.0f} s (event time x{args.speed:.0f}): {result}")
        best = None
        for rate in [int(r) for r in args.rates.split(",")]:
            s, t = live(f"r{rate}")
            r = steady(s, t, rate, 8, args.cells, args.speed, tmp)
            achieved = r["produced"] / 8
            ok = r["lag_at_stop"] <= achieved and r["drain_s"] < 2.0
            print(f"  rate {rate:,}/s (achieved {achieved:,.0f}/s): lag at stop {r['lag_at_stop']:,}, drained in {r['drain_s']} s -> "
                  f"{'sustained' if ok else 'lag grows'}")
            if ok:
                best = achieved
            else:
                break
        print(f"highest sustained input rate: {best:,.0f} events/s" if best else "no rate sustained")
        fraud_on_simulator(settings, tmp, args.fraud_subscribers)


if __name__ == "__main__":
    main()

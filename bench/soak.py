"""Soak benchmark: `telcolake up` against a steady producer for N minutes, with faults injected.

For each rate: a fresh lake and state dir, the embedded broker (``[broker] storage``, default
memory), `telcolake up`, and a producer process writing unique usage records at the rate. Faults
(unless --no-faults), at 1/4, 1/2 and 3/4 of the run: kill -9 of the service and a restart;
the broker unreachable for 20 s (SIGSTOP/SIGCONT of its process); a second `telcolake ingest`
started beside the service for 30 s. At the end the producer stops, the service catches up and
gets SIGTERM, and the bench prints: records produced vs landed (lost, duplicated), freshness
produce -> bronze and produce -> silver (p50/p99, overall and outside the fault windows), the
service's RSS over time, and job runs ok/failed.

Usage: python bench/soak.py [--minutes 10] [--rates 5000,20000] [--storage memory|s3://bucket/] [--no-faults]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
TOPIC = "usage.events"
PARTITIONS = 4


def producer_main(bootstrap: str, rate: int, stop, counts, start_id: int) -> None:
    """Produce unique usage records at ``rate``/s until ``stop``; ``counts[0]`` delivered, ``counts[1]`` failed."""
    from datetime import UTC, datetime

    import msgspec
    from confluent_kafka import Producer

    enc = msgspec.json.Encoder()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0, "message.timeout.ms": 600_000,
                  "queue.buffering.max.messages": 2_000_000, "enable.idempotence": True})  # no retry duplicates on the topic
    delivered = failed = 0

    def done(err, _msg):
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1

    i, started = start_id, time.time()
    sent = 0
    while not stop.is_set():
        due = int((time.time() - started) * rate)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        while sent < due:
            rec = {"record_id": f"S{i:012d}", "event_type": ("voice", "sms", "data")[i % 3], "subscriber_id": f"SUB{i % 5000:07d}",
                   "msisdn": f"49151{i % 5000:07d}", "started_at": now, "duration_s": 30 + i % 300,
                   "bytes_up": 0 if i % 3 != 2 else 1000 + i % 9000, "bytes_down": 0 if i % 3 != 2 else 50_000 + i % 9000,
                   "called_number": None if i % 3 == 2 else f"4930{i % 100000:06d}", "cell_id": f"C{i % 40:04d}"}
            try:
                p.produce(TOPIC, value=enc.encode(rec), partition=i % PARTITIONS, on_delivery=done)
                i += 1
                sent += 1
            except BufferError:
                p.poll(0.05)
                break
        p.poll(0)
        counts[0], counts[1] = delivered, failed
        time.sleep(0.002)
    p.flush(600)
    counts[0], counts[1] = delivered, failed


class Freshness(threading.Thread):
    """Polls a table's version; for each new version, now minus the new rows' Kafka timestamps."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.lags, self.stop, self.errors = path, [], threading.Event(), []

    def run(self) -> None:
        version, dt = None, None
        while not self.stop.is_set():
            try:
                if dt is None:
                    dt = DeltaTable(str(self.path))
                else:
                    dt.update_incremental()  # new commits only: the probe stays cheap
            except Exception:
                time.sleep(0.1)
                continue
            current = dt.version()
            if version is not None and current > version:
                seen = time.time()
                try:
                    changes = pa.table(dt.load_cdf(starting_version=version + 1, ending_version=current, columns=["_kafka_timestamp", "_change_type"]).read_all())
                    inserted = pa.compute.equal(changes["_change_type"].cast(pa.string()), "insert")
                    ts = changes["_kafka_timestamp"].filter(inserted).cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
                    self.lags.append(np.stack([np.full(len(ts), seen), seen - ts]))
                except Exception as exc:  # counted, never silently
                    self.errors.append(repr(exc))
            version = current
            time.sleep(0.1)

    def percentiles(self, exclude: list[tuple[float, float]] = ()) -> tuple[float, float, int]:
        if not self.lags:
            return float("nan"), float("nan"), 0
        seen, lag = np.concatenate(self.lags, axis=1)
        keep = np.ones(len(lag), bool)
        for a, b in exclude:
            keep &= ~((seen >= a) & (seen <= b))
        lag = lag[keep]
        if not len(lag):
            return float("nan"), float("nan"), 0
        return float(np.percentile(lag, 50)), float(np.percentile(lag, 99)), len(lag)


def _part(p: psutil.Process, root: int) -> str:
    """Which part of the service a process is: up itself, a component, or a job run."""
    if p.pid == root:
        return "up"
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "other"
    if "pipelines.ops.up.worker" in cmd:
        return cmd[cmd.index("pipelines.ops.up.worker") + 1] if cmd[-1] != "pipelines.ops.up.worker" else "component"
    return "jobs"


def parts_rss_mb(pid: int) -> dict[str, float]:
    """RSS per part of the process tree under ``pid`` (MB)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out: dict[str, float] = {}
    for p in procs:
        try:
            out[_part(p, pid)] = out.get(_part(p, pid), 0.0) + p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            pass
    return out


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def start_up(env: dict, port: int, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "up", "--port", str(port)], env=env, stdout=log, stderr=log)


def wait_ready(port: int, timeout: float = 120) -> float:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t
        except Exception:
            pass
        time.sleep(0.3)
    return float("nan")


def bronze_coords(lake: Path) -> np.ndarray:
    """(partition, offset) of every usage record landed, in bronze or in quarantine, as one int each."""
    out = []
    for table in ("bronze", "quarantine"):
        path = lake / table / TOPIC
        if (path / "_delta_log").exists():
            t = DeltaTable(str(path)).to_pyarrow_dataset().to_table(columns=["_kafka_partition", "_kafka_offset"])
            out.append(t["_kafka_partition"].to_numpy().astype(np.int64) * (1 << 40) + t["_kafka_offset"].to_numpy())
    return np.concatenate(out) if out else np.array([], np.int64)


def silver_caught_up(lake: Path) -> bool:
    """Whether silver/usage covers the current bronze version (its app transaction in the Delta log)."""
    try:
        bronze = DeltaTable(str(lake / "bronze" / TOPIC)).version()
        return DeltaTable(str(lake / "silver" / "usage")).transaction_version("telcolake-silver:usage") == bronze
    except Exception:
        return False


def soak(rate: int, minutes: float, storage: str, faults: bool) -> dict:
    from pipelines.core import broker
    from pipelines.core.config import load_settings

    work = Path(tempfile.mkdtemp(prefix=f"telcolake-soak-{rate}-"))
    lake, state = work / "lake", work / "state"
    env = dict(os.environ, TELCOLAKE_LAKE=str(lake), TELCOLAKE_STATE_DIR=str(state), TELCOLAKE_BROKER_STORAGE=storage,
               TELCOLAKE_SECRETS_FILE=str(work / "secrets.toml"), PYTHONUNBUFFERED="1")
    env.pop("TELCOLAKE_KAFKA_BOOTSTRAP", None)
    env.pop("TELCOLAKE_CONFIG", None)
    os.environ.update({k: env[k] for k in ("TELCOLAKE_LAKE", "TELCOLAKE_STATE_DIR", "TELCOLAKE_BROKER_STORAGE", "TELCOLAKE_SECRETS_FILE")})
    os.environ.pop("TELCOLAKE_KAFKA_BOOTSTRAP", None)
    settings = load_settings()
    for setup in (["partners", "secrets", "init"], ["catalog", "load"]):
        subprocess.run([sys.executable, "-m", "pipelines.cli", *setup], env=env, check=True, capture_output=True)
    bstate = broker.start_embedded(state, storage=broker.storage_of(settings))
    broker.ensure_topics(bstate.address, settings.topics)
    # a small simulated telco first (lifecycle, network and usage events), so the jobs have a whole lake
    from pipelines.core.contracts import CONTRACTS
    from pipelines.simulate import SimConfig, produce, simulate

    world = simulate(SimConfig.from_settings(settings, subscribers=200, days=2))
    seeded = produce(world, bstate.address, {t: settings.topic(t) for t in CONTRACTS})
    seeded_usage = seeded.get("usage.events", 0)
    port = broker.free_port()
    log = open(work / "up.out", "ab")
    proc = start_up(env, port, log)
    ready_s = wait_ready(port)
    print(f"  rate {rate:,}/s: up ready in {ready_s:.1f}s (work dir {work}, broker storage {bstate.storage})", flush=True)
    fresh_b, fresh_s = Freshness(lake / "bronze" / TOPIC), Freshness(lake / "silver" / "usage")
    fresh_b.start()
    fresh_s.start()
    stop, counts = mp.Event(), mp.Array("q", 2)
    prod = mp.Process(target=producer_main, args=(bstate.address, rate, stop, counts, 0), daemon=True)
    prod.start()
    duration = minutes * 60
    started = time.time()
    windows: list[tuple[float, float]] = []
    events: list[str] = []
    rss: list[tuple[float, float, float]] = []
    parts: list[tuple[float, dict[str, float]]] = []
    plan = [(0.25, "kill9"), (0.5, "broker_pause"), (0.75, "second_ingest")] if faults else []
    second = None
    next_rss = started
    while time.time() - started < duration:
        now = time.time()
        if now >= next_rss:
            rss.append((now - started, tree_rss_mb(proc.pid), tree_rss_mb(bstate.pid)))
            parts.append((now - started, parts_rss_mb(proc.pid)))
            next_rss = now + 10
        if plan and now - started >= plan[0][0] * duration:
            _, fault = plan.pop(0)
            t0 = time.time()
            if fault == "kill9":
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                time.sleep(2)
                proc = start_up(env, port, log)
                back = wait_ready(port)
                events.append(f"kill -9 of up at {t0 - started:.0f}s; restarted, ready again in {back:.1f}s")
            elif fault == "broker_pause":
                os.kill(bstate.pid, signal.SIGSTOP)
                time.sleep(20)
                os.kill(bstate.pid, signal.SIGCONT)
                events.append(f"broker SIGSTOP for 20 s at {t0 - started:.0f}s")
            elif fault == "second_ingest":
                second = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", "--quiet", "--no-silver"], env=env,
                                          stdout=log, stderr=log)
                time.sleep(30)
                second.send_signal(signal.SIGTERM)
                code = second.wait(60)
                events.append(f"a second `telcolake ingest` beside up for 30 s at {t0 - started:.0f}s (exit {code})")
            windows.append((t0, time.time() + 30))
        time.sleep(0.5)
    stop.set()
    prod.join(600)
    delivered, failed = counts[0], counts[1]
    # catch up, then stop the service
    deadline = time.time() + 300
    landed = np.array([], np.int64)
    caught_up = False
    while time.time() < deadline:
        landed = bronze_coords(lake)
        if len(np.unique(landed)) >= delivered + seeded_usage:
            caught_up = True
            break
        time.sleep(1)
    deadline = time.time() + 300
    while time.time() < deadline and not silver_caught_up(lake):
        time.sleep(1)
    silver_rows = DeltaTable(str(lake / "silver" / "usage")).to_pyarrow_dataset().count_rows()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    stop_s = time.monotonic() - t0
    fresh_b.stop.set()
    fresh_s.stop.set()
    fresh_b.join()
    fresh_s.join()
    unique = len(np.unique(landed))
    on_topic = sum(broker.end_offsets(bstate.address, TOPIC).values())  # every offset of the topic, read to its true end
    runs = {}
    jr = lake / "ops" / "job_runs"
    if (jr / "_delta_log").exists():
        t = DeltaTable(str(jr)).to_pyarrow_dataset().to_table(columns=["job", "status", "attempt", "error"]).to_pylist()
        for r in t:
            status = "interrupted" if (r["error"] or "").rstrip().endswith("the scheduler stopped") else r["status"]
            runs.setdefault(r["job"], {}).setdefault(status, 0)
            runs[r["job"]][status] += 1
    broker.stop_embedded(state)
    out = {
        "rate": rate, "minutes": minutes, "storage": bstate.storage, "delivered": delivered, "produce_failed": failed,
        "seeded": seeded_usage, "landed_rows": len(landed), "landed_unique": unique, "on_topic": on_topic, "caught_up": caught_up, "lost": on_topic - unique,
        "duplicated": len(landed) - unique, "freshness_errors": fresh_b.errors[:3] + fresh_s.errors[:3],
        "silver_rows": silver_rows, "bronze_fresh_all": fresh_b.percentiles(), "bronze_fresh_steady": fresh_b.percentiles(windows),
        "silver_fresh_all": fresh_s.percentiles(), "silver_fresh_steady": fresh_s.percentiles(windows),
        "rss": rss, "rss_parts": parts, "jobs": runs, "faults": events, "sigterm_exit": code, "sigterm_s": round(stop_s, 1),
    }
    return out


def report(r: dict) -> None:
    print(f"== {r['rate']:,} events/s for {r['minutes']:g} min, broker storage {r['storage']}")
    for e in r["faults"]:
        print(f"   fault: {e}")
    print(f"   produced {r['delivered']:,} at the rate + {r['seeded']:,} simulated at start (delivery failures {r['produce_failed']}), "
          f"{r['on_topic']:,} records on the topic; landed {r['landed_rows']:,} rows (bronze + quarantine), {r['landed_unique']:,} distinct offsets: "
          + (f"lost {r['lost']:,}" if r["caught_up"] else f"NOT CAUGHT UP: {r['lost']:,} still unlanded when the 300 s catch-up wait ended")
          + f", duplicated {r['duplicated']:,}; silver/usage {r['silver_rows']:,} rows")
    for name in ("bronze", "silver"):
        a, s = r[f"{name}_fresh_all"], r[f"{name}_fresh_steady"]
        print(f"   produce -> {name}: p50 {s[0]:.2f}s p99 {s[1]:.2f}s outside fault windows ({s[2]:,} rows); "
              f"p50 {a[0]:.2f}s p99 {a[1]:.2f}s overall")
    rss = r["rss"]
    if rss:
        line = ", ".join(f"{t / 60:.0f}m {m:,.0f}" for t, m, _ in rss[:: max(1, len(rss) // 12)])
        print(f"   RSS of up + components (MB): {line}")
        warm = [m for t, m, _ in rss if t >= 120]
        if len(warm) >= 4:
            first, last = np.nanmean(warm[: len(warm) // 3]), np.nanmean(warm[-len(warm) // 3:])
            print(f"   RSS after warm-up: first third {first:,.0f} MB, last third {last:,.0f} MB ({(last / first - 1) * 100:+.1f} %); "
                  f"broker {rss[-1][2]:,.0f} MB at the end")
    samples = [(t, d) for t, d in r.get("rss_parts", []) if t >= 60]
    if len(samples) >= 2:
        (t0, a), (t1, b) = samples[0], samples[-1]
        line = ", ".join(f"{k} {a.get(k, 0):,.0f} -> {b.get(k, 0):,.0f}" for k in sorted(set(a) | set(b)))
        print(f"   RSS per part (MB, {t0 / 60:.0f}m -> {t1 / 60:.0f}m): {line}")
    print(f"   job runs: {json.dumps(r['jobs'])}")
    if r["freshness_errors"]:
        print(f"   freshness probe errors: {r['freshness_errors']}")
    print(f"   SIGTERM: exit {r['sigterm_exit']} in {r['sigterm_s']}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rates", default="5000,20000")
    ap.add_argument("--storage", default="memory", help="[broker] storage: memory or s3://bucket/ (AWS_* in the environment)")
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args()
    print(f"soak: {args.minutes:g} min per rate, {os.cpu_count()} cores (shared: load average {os.getloadavg()[0]:.1f} at start)")
    results = []
    for rate in (int(r) for r in args.rates.split(",")):
        r = soak(rate, args.minutes, args.storage, not args.no_faults)
        report(r)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    main()

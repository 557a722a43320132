"""Hand-built network and usage scenarios for the stream tests (keyed like real producers)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.helpers import ENC, produce

T0 = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def kpi(i: int, cell: str, site: str, at: datetime, attempts: int, dropped: int, latency: float = 20.0, prb: float = 50.0) -> dict:
    return {"event_id": f"N{i:08d}", "cell_id": cell, "site_id": site, "observed_at": iso(at), "kind": "kpi",
            "call_attempts": attempts, "dropped_calls": dropped, "latency_ms": latency, "prb_utilization": prb}


def alarm(i: int, cell: str, site: str, at: datetime, *, code: str, severity: str = "critical", cleared: bool = False) -> dict:
    return {"event_id": f"N{i:08d}", "cell_id": cell, "site_id": site, "observed_at": iso(at), "kind": "alarm",
            "severity": severity, "code": code, "cleared": cleared}


def produce_keyed(bootstrap: str, topic: str, records: list[dict], key: str, partitions: int) -> None:
    """Produce records with their ``key`` field as the Kafka key, on a stable partition per key."""
    import zlib

    values = [ENC.encode(r) for r in records]
    keys = [r[key].encode() for r in records]
    by_part: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        by_part.setdefault(zlib.crc32(k) % partitions, []).append(i)
    for p, idx in sorted(by_part.items()):
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "log_level": 2})
        for i in idx:
            while True:
                try:
                    producer.produce(topic, value=values[i], key=keys[i], partition=p)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)


def network_load(sites: int, cells_per_site: int, minutes: int, *, seed: int = 7) -> list[dict]:
    """A steady network: one KPI sample per cell per minute, some jitter, a few degraded cells."""
    rng = random.Random(seed)
    out, i = [], 0
    for m in range(minutes):
        for s in range(sites):
            for c in range(cells_per_site):
                cell = f"C{s * cells_per_site + c:04d}"
                bad = (s + c) % 17 == 0 and 20 <= m < 40
                at = T0 + timedelta(minutes=m, seconds=rng.randint(0, 59))
                out.append(kpi(i, cell, f"S{s:03d}", at, rng.randint(20, 60), rng.randint(5, 15) if bad else rng.randint(0, 1),
                               latency=round(rng.uniform(10, 80), 1), prb=round(rng.uniform(5, 95), 1)))
                i += 1
        if m % 30 == 5:
            out.append(alarm(i, "C0001", "S000", T0 + timedelta(minutes=m, seconds=5), code=f"A{m}", severity="critical"))
            i += 1
    return out


def usage(i: int, sub: str, at: datetime, *, kind: str = "voice", direction: str = "mo", called: str | None = None,
          cell: str = "C0001", dropped: bool = False, duration: int = 60) -> dict:
    return {"record_id": f"U{i:09d}", "event_type": kind, "subscriber_id": sub, "msisdn": "49151" + sub[-7:],
            "started_at": iso(at), "duration_s": duration if kind == "voice" else 0, "bytes_up": 100 if kind == "data" else 0,
            "bytes_down": 1000 if kind == "data" else 0, "called_number": called, "direction": direction,
            "cell_id": cell, "is_dropped": dropped if kind == "voice" else None}


def fraud_population(*, seed: int, normal: int = 300, simbox: int = 6, intl: int = 3, hours: int = 4) -> tuple[list[dict], set[str], set[str]]:
    """Normal subscribers, busy-but-honest callers, SIM-box fraudsters and international callers."""
    rng = random.Random(seed)
    recs: list[dict] = []
    i = 0
    fraud = {f"SUB{9_000_000 + k:07d}" for k in range(simbox)}
    intl_subs = {f"SUB{8_000_000 + k:07d}" for k in range(intl)}
    busy = {f"SUB{7_000_000 + k:07d}" for k in range(10)}
    subs = [f"SUB{k:07d}" for k in range(normal)]
    for h in range(hours):
        base = T0 + timedelta(hours=h)
        for sub in subs:
            for _ in range(rng.randint(0, 6)):
                at = base + timedelta(seconds=rng.randint(0, 3599))
                kind = rng.choice(["voice", "voice", "sms", "data"])
                recs.append(usage(i, sub, at, kind=kind, direction=rng.choice(["mo", "mt"]), called=f"4930{rng.randint(0, 999999):06d}",
                                  cell=f"C{rng.randint(0, 50):04d}", dropped=rng.random() < 0.05))
                i += 1
        for sub in busy:  # many calls to many numbers, but also incoming and data, from many cells
            for _ in range(45):
                at = base + timedelta(seconds=rng.randint(0, 3599))
                kind = rng.choice(["voice", "voice", "voice", "data"])
                recs.append(usage(i, sub, at, kind=kind, direction=rng.choice(["mo", "mo", "mt"]), called=f"4916{rng.randint(0, 999999):06d}",
                                  cell=f"C{rng.randint(0, 50):04d}"))
                i += 1
        for sub in fraud:
            cell = f"C{rng.randint(0, 50):04d}"
            for _ in range(rng.randint(50, 70)):
                at = base + timedelta(seconds=rng.randint(0, 3599))
                recs.append(usage(i, sub, at, called=f"4917{rng.randint(0, 9_999_999):07d}", cell=cell, duration=rng.randint(20, 200)))
                i += 1
        for sub in intl_subs:
            for _ in range(25):
                at = base + timedelta(seconds=rng.randint(0, 3599))
                recs.append(usage(i, sub, at, called=f"44{rng.randint(0, 99_999_999):08d}", cell=f"C{rng.randint(0, 50):04d}"))
                i += 1
    rng.shuffle(recs)
    recs.sort(key=lambda r: r["started_at"][:15])  # roughly time-ordered (10-minute buckets), shuffled inside
    return recs, fraud, intl_subs


__all__ = ["T0", "alarm", "fraud_population", "iso", "kpi", "network_load", "produce", "produce_keyed", "usage"]


def kill_mid_stream(cmd: list[str], lake, state: str, *, seed: int, rows: Callable[[], int], times: int = 3) -> list[int]:
    """Start ``cmd`` (a stream until caught up) ``times`` times, each killed with SIGKILL 0-0.3 s after its
    next checkpoint commit to ``state``; ``rows()`` read at each kill, in order (asserts one kill hit a running stream)."""
    rng = random.Random(seed)
    rows_at_kill = []
    for _ in range(times):
        before = lake.version(state) if lake.exists(state) else -1
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and (lake.version(state) if lake.exists(state) else -1) <= before + 1:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            rows_at_kill.append(rows())
        proc.wait()
    assert rows_at_kill, "no kill hit a running stream"
    return rows_at_kill

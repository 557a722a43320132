"""Benchmark: the bronze usage quality gate on a 10,000,000-row table against a 1,000,000-row baseline.

Builds bronze/usage.events-shaped Delta tables in a temp dir (10M rows in 1M-row commits, and
a 1M-row sample), then validates each in a fresh child process with ``run_gate`` and reports
seconds and peak RSS (ru_maxrss of the child). The 1M-row table is one pandas batch (the
baseline); the 10M-row table is validated in 1M-row batches plus DuckDB for the Kafka
coordinates' uniqueness. Run: ``python bench/quality.py [--rows 10000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# this file is bench/quality.py: keep its folder off sys.path so `quality` is the project package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
TABLE = "bronze/usage.events"
CHUNK = 1_000_000


def chunk(start: int, n: int, now: datetime) -> pa.Table:
    """``n`` bronze usage rows numbered from ``start`` (all valid), built columnar."""
    from pipelines.core.contracts import USAGE

    rng = np.random.default_rng(start)
    ids = pa.array(np.arange(start, start + n))
    subs = pa.array(rng.integers(0, 100_000, n))
    base = np.datetime64((now - timedelta(days=6)).replace(tzinfo=None), "us")
    started = pa.array(base + rng.integers(0, 6 * 86400 * 10**6, n).astype("timedelta64[us]")).cast(pa.timestamp("us", tz="UTC"))
    kinds = pa.array(["voice", "sms", "data"]).take(pa.array(rng.integers(0, 3, n)))
    cols = {
        "record_id": pc.binary_join_element_wise("R", pc.cast(ids, pa.string()), ""),
        "event_type": kinds,
        "subscriber_id": pc.binary_join_element_wise("SUB", pc.utf8_lpad(pc.cast(subs, pa.string()), 7, "0"), ""),
        "msisdn": pc.binary_join_element_wise("49151", pc.utf8_lpad(pc.cast(subs, pa.string()), 7, "0"), ""),
        "started_at": started,
        "duration_s": pa.array(rng.integers(0, 3600, n)),
        "bytes_up": pa.array(rng.integers(0, 10**6, n)),
        "bytes_down": pa.array(rng.integers(0, 10**7, n)),
        "cell_id": pc.binary_join_element_wise("C", pc.utf8_lpad(pc.cast(pa.array(rng.integers(1, 500, n)), pa.string()), 4, "0"), ""),
        "direction": pa.array(["mo", "mt"]).take(pa.array(rng.integers(0, 2, n))),
    }
    table = pa.table({f.name: cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in USAGE.schema})
    extra = {
        "_source": pa.array(["kafka"] * n),
        "_kafka_topic": pa.array(["usage.events"] * n),
        "_kafka_partition": pa.array(np.arange(start, start + n) % 4, pa.int32()),
        "_kafka_offset": pa.array(np.arange(start, start + n) // 4),
        "_kafka_timestamp": started,
        "_source_row": pa.nulls(n, pa.int64()),
        "_ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "event_date": pc.cast(started, pa.date32()),
    }
    for name, column in extra.items():
        table = table.append_column(name, column)
    return table


def build(lake_root: Path, rows: int) -> None:
    from pipelines.core.lake import Lake

    lake = Lake(root=str(lake_root))
    now = datetime.now(UTC)
    for start in range(0, rows, CHUNK):
        lake.write(TABLE, chunk(start, min(CHUNK, rows - start), now))


def measure(lake_root: Path, state_dir: Path) -> dict:
    """Child process: validate TABLE and report seconds, peak RSS and the gate's verdict."""
    os.environ["TELCOLAKE_LAKE"] = str(lake_root)
    os.environ["TELCOLAKE_STATE_DIR"] = str(state_dir)
    from pipelines.core.config import load_settings
    from quality.runner import run_gate

    settings = load_settings()
    t0 = time.perf_counter()
    result = run_gate(settings, [TABLE], raise_on_failure=False)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": rss_mb, "ok": result.ok, "failures": result.failures, "expectations": len(result.rows)}


def run_child(lake_root: Path, state_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", str(lake_root), str(state_dir)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measuring {lake_root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--baseline-rows", type=int, default=1_000_000)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="telcolake-bench-quality-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build(root / "big", args.rows)
        build(root / "sample", args.baseline_rows)
        print(f"built {args.rows:,} + {args.baseline_rows:,} rows in {time.perf_counter() - t0:.1f}s")
        base = run_child(root / "sample", root / "state-sample")
        big = run_child(root / "big", root / "state-big")
        for label, rows, r in (("baseline (one pandas batch)", args.baseline_rows, base), ("batched + DuckDB", args.rows, big)):
            print(f"{label:30s} {rows:>12,} rows  {r['seconds']:8.1f}s  {rows / r['seconds']:>12,.0f} rows/s  "
                  f"peak RSS {r['peak_rss_mb']:8.0f} MB  ok={r['ok']} expectations={r['expectations']}")
        print(f"ratio {args.rows // args.baseline_rows}x rows: time x{big['seconds'] / base['seconds']:.2f}, "
              f"peak RSS x{big['peak_rss_mb'] / base['peak_rss_mb']:.2f}")
        if not (base["ok"] and big["ok"]):
            print("unexpected failures:", *base["failures"], *big["failures"], sep="\n  ")


if __name__ == "__main__":
    main()

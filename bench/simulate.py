"""Simulator benchmark: peak RSS and records/s of the day-by-day path against the whole-window path.

Run as ``python bench/simulate.py [--subscribers 2000] [--days 7 120] [--whole-up-to 120]``.
Each measurement runs in a process of its own (so its peak RSS, ``ru_maxrss``, is its own):
simulate the window and write it as JSON-lines dumps, once with ``simulate`` (the whole
window in memory, the baseline) and once with ``simulate_days``. Prints per path and window:
records, seconds, records/s, peak RSS and RSS per record, the ratios day-by-day / whole, and
whether both paths wrote byte-identical dump files (a digest of every file). ``--whole-up-to``
skips the baseline above that many days (it needs about 1 KB per record).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(path: str, subscribers: int, days: int, fmt: str) -> None:
    """The measured run, in its own process: simulate + write dumps; print one JSON line."""
    from pipelines.simulate import SimConfig, simulate, simulate_days, write_dir

    cfg = SimConfig(subscribers=subscribers, days=days)
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as out:
        t0 = time.perf_counter()
        result = simulate(cfg) if path == "whole" else simulate_days(cfg)
        planned = time.perf_counter() - t0
        files = write_dir(result, out, fmt)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        digest = hashlib.sha256()
        for f in sorted(files):
            digest.update(f"{f.parent.name}/{f.name}".encode())
            digest.update(f.read_bytes())
        records = sum(result.planted.per_topic.values())
        if path == "days":
            result.close()
    print(json.dumps({"records": records, "seconds": seconds, "generate_s": planned, "peak_rss_mb": rss,
                      "files": len(files), "digest": digest.hexdigest()}))
    sys.stdout.flush()
    os._exit(0)


def run(path: str, subscribers: int, days: int, fmt: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", path, "--subscribers", str(subscribers), "--days", str(days), "--format", fmt],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{path} {days} days failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--days", type=int, nargs="+", default=[7, 120])
    parser.add_argument("--whole-up-to", type=int, default=120, help="measure the whole-window baseline only up to this many days")
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "csv", "parquet"])
    parser.add_argument("--child", choices=["whole", "days"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.child, args.subscribers, args.days[0], args.format)
        return
    print(f"simulator, {args.subscribers:,} subscribers, dumps as {args.format}")
    print(f"{'days':>5} {'path':>6} {'records':>12} {'seconds':>8} {'records/s':>10} {'peak RSS':>10} {'RSS/record':>11}")
    for days in args.days:
        got = {}
        for path in ("whole", "days"):
            if path == "whole" and days > args.whole_up_to:
                continue
            r = got[path] = run(path, args.subscribers, days, args.format)
            print(f"{days:>5} {path:>6} {r['records']:>12,} {r['seconds']:>8.1f} {r['records'] / r['seconds']:>10,.0f} "
                  f"{r['peak_rss_mb']:>8,.0f} MB {r['peak_rss_mb'] * 2**20 / r['records']:>9,.0f} B")
        if "whole" in got:
            w, d = got["whole"], got["days"]
            same = "identical" if w["digest"] == d["digest"] and w["files"] == d["files"] else "DIFFERENT"
            print(f"{days:>5} ratio  day-by-day / whole: peak RSS {d['peak_rss_mb'] / w['peak_rss_mb']:.2f}, "
                  f"records/s {(d['records'] / d['seconds']) / (w['records'] / w['seconds']):.2f}; dump files {same} ({d['files']} files)")


if __name__ == "__main__":
    main()

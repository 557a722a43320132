"""Silver refresh benchmark: does a refresh cost what it adds, or what the day already holds?

A small simulated day is backfilled into bronze once; then ``--batches`` batches of
``--rows`` usage rows (that day's rows with fresh record_ids, ids growing batch by batch as
at the sources, 1 % repeats of the previous batch) are appended to bronze one commit at a
time, and silver is refreshed after each (``pipelines.ingest.silver.refresh_usage``, as
`telcolake up`'s silver component does). It prints the refresh time of the first and last
batches and their ratio: an incremental refresh stays near 1x while silver's day partition
grows; one that rereads the day grows with it.

Usage: python bench/silver.py [--batches 60] [--rows 50000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.core.config import load_settings  # noqa: E402
from pipelines.core.lake import Lake  # noqa: E402
from pipelines.ingest.silver import SILVER_USAGE, refresh_usage  # noqa: E402

BRONZE = "bronze/usage.events"


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-silver-"))
    os.environ.update(TELCOLAKE_LAKE=str(work / "lake"), TELCOLAKE_STATE_DIR=str(work / "state"))
    _cli("simulate", "--to-dir", str(work / "dumps"), "--days", "1", "--subscribers", "300", "--quiet")
    _cli("backfill", str(work / "dumps"), "--no-silver")
    settings = load_settings()
    lake = Lake.from_settings(settings)
    day = lake.read(BRONZE)
    day = day.filter(pc.equal(day["event_date"], pc.min(day["event_date"])))
    template = day.take(pa.array([i % day.num_rows for i in range(args.rows)]))
    refresh_usage(settings)  # the simulated day itself
    times, rows = [], []
    previous = None
    for b in range(args.batches):
        ids = pa.array([f"B{b:06d}{i:09d}" for i in range(args.rows)])
        batch = template.set_column(template.schema.get_field_index("record_id"), "record_id", ids)
        if previous is not None:  # mediation repeats: 1 % of the previous batch again
            batch = pa.concat_tables([batch, previous.slice(0, args.rows // 100)])
        lake.write(BRONZE, batch)
        previous = batch
        started = time.perf_counter()
        result = refresh_usage(settings)
        times.append(time.perf_counter() - started)
        rows.append(lake.dataset(SILVER_USAGE).count_rows())
        assert result.new_rows == args.rows, (b, result.new_rows)
    k = max(1, args.batches // 10)
    first, last = statistics.mean(times[:k]), statistics.mean(times[-k:])
    print(f"{args.batches} batches of {args.rows:,} rows (+1 % repeats), one silver refresh after each")
    print(f"  silver/usage rows: {rows[0]:,} after the first batch, {rows[-1]:,} after the last")
    print(f"  refresh time, mean of the first {k}: {first:.3f} s; of the last {k}: {last:.3f} s")
    print(f"  last / first: {last / first:.2f}x (an incremental refresh stays near 1x)")


if __name__ == "__main__":
    main()

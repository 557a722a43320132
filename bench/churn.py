"""Churn features benchmark: one as-of date and a 30-day backfill over N subscribers x D days.

Run as ``python bench/churn.py [--subscribers 100000] [--days 90] [--events-per-day 10]``.
The inputs (silver/usage, bronze/bss.events, bronze/network.events) are generated with numpy
straight into a fresh Delta lake (not through Kafka). Each measured phase runs in its own child
process so its peak RSS is its own. Prints seconds, feature rows/s, input usage rows/s and peak
RSS of one as-of date and of a 30-day backfill, then the same one as-of date for a sample of
subscribers with the straightforward pandas implementation and with the SQL path on a lake of
that sample alone, with the speed ratios.
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
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.churn import synthetic  # noqa: E402
from pipelines.core.config import load_settings  # noqa: E402
from pipelines.core.lake import Lake  # noqa: E402

WRITE_DAYS = 5


def _settings(lake_dir: str):
    os.environ["TELCOLAKE_LAKE"] = lake_dir
    os.environ["TELCOLAKE_STATE_DIR"] = lake_dir + "-state"
    return load_settings()


def generate(lake_dir: str, cfg: synthetic.SynthConfig, sample: int) -> dict:
    """Write the full lake and a sample lake (the first ``sample`` subscribers); returns counts."""
    lake = Lake.from_settings(_settings(lake_dir))
    small = Lake.from_settings(_settings(lake_dir + "-sample"))
    pop = synthetic.Population(cfg)
    keep = pop.ids.slice(0, sample)
    rows = sample_rows = 0
    pending: list[pa.Table] = []

    def flush() -> None:
        table = pa.concat_tables(pending)
        lake.write("silver/usage", table, partition_by=["event_date"])
        part = table.filter(pc.is_in(table["subscriber_id"], keep))
        small.write("silver/usage", part, partition_by=["event_date"])
        pending.clear()
        nonlocal sample_rows
        sample_rows += part.num_rows

    for day in synthetic.usage_days(pop):
        rows += day.num_rows
        pending.append(day)
        if len(pending) == WRITE_DAYS:
            flush()
    if pending:
        flush()
    bss, kpi = synthetic.bss_events(pop), synthetic.kpi_samples(cfg)
    for target, table in ((lake, bss), (small, bss.filter(pc.is_in(bss["subscriber_id"], keep)))):
        target.write("bronze/bss.events", table, partition_by=["event_month"])
        target.write("bronze/network.events", kpi, partition_by=["event_date"])
    return {"usage_rows": rows, "sample_usage_rows": sample_rows, "bss_rows": bss.num_rows, "kpi_rows": kpi.num_rows}


def phase_sql(lake_dir: str, start: str, end: str) -> dict:
    from pipelines.churn.features import build_features

    settings = _settings(lake_dir)
    began = time.perf_counter()
    run = build_features(settings, date.fromisoformat(start), date.fromisoformat(end))
    return {"seconds": time.perf_counter() - began, "rows": run.rows, "days": len(run.days)}


def phase_pandas(lake_dir: str, day: str) -> dict:
    from pipelines.churn.pandas_reference import features
    from pipelines.churn.plans import plan_table

    lake = Lake.from_settings(_settings(lake_dir))
    as_of = date.fromisoformat(day)
    began = time.perf_counter()
    usage = lake.read("silver/usage").to_pandas()
    bss, kpi = lake.read("bronze/bss.events").to_pandas(), lake.read("bronze/network.events").to_pandas()
    out = features(usage, bss, kpi, plan_table(as_of).to_pandas(), as_of)
    return {"seconds": time.perf_counter() - began, "rows": len(out), "days": 1}


def child(args: list[str]) -> dict:
    """Run one phase in a child process; its result plus its own peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--events-per-day", type=float, default=10.0)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--backfill-days", type=int, default=30)
    parser.add_argument("--lake", default=None, help="Reuse (or keep) the generated lake in this directory.")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, *rest = args.phase
        result = phase_sql(*rest) if kind == "sql" else phase_pandas(*rest)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    cfg = synthetic.SynthConfig(subscribers=args.subscribers, days=args.days, events_per_day=args.events_per_day, seed=1)
    lake_dir = args.lake or tempfile.mkdtemp(prefix="churn-bench-") + "/lake"
    marker = Path(lake_dir + ".json")
    if marker.exists():
        counts = json.loads(marker.read_text())
        print(f"reusing {lake_dir}: {counts}")
    else:
        began = time.perf_counter()
        counts = generate(lake_dir, cfg, args.sample)
        counts["generate_seconds"] = round(time.perf_counter() - began, 1)
        marker.write_text(json.dumps(counts))
        print(f"generated {counts['usage_rows']:,} usage rows, {counts['bss_rows']:,} BSS events, "
              f"{counts['kpi_rows']:,} KPI samples in {counts['generate_seconds']} s")
    last = cfg.start + timedelta(days=cfg.days)
    first = last - timedelta(days=args.backfill_days - 1)
    per_day_usage = counts["usage_rows"] / cfg.days

    def show(name: str, r: dict, usage_rows: float) -> None:
        print(f"{name:<34} {r['seconds']:8.2f} s  {r['rows'] / r['seconds']:>12,.0f} feature rows/s  "
              f"{usage_rows / r['seconds']:>12,.0f} usage rows/s  peak RSS {r['peak_rss_mb']:,.0f} MB")

    one = child(["sql", lake_dir, str(last), str(last)])
    show(f"one as-of date ({one['rows']:,} rows)", one, per_day_usage * min(cfg.days, 90))
    fill = child(["sql", lake_dir, str(first), str(last)])
    show(f"{fill['days']}-day backfill ({fill['rows']:,} rows)", fill, per_day_usage * min(cfg.days, 90 + args.backfill_days))
    sample_sql = child(["sql", lake_dir + "-sample", str(last), str(last)])
    show(f"sample {args.sample:,}: SQL", sample_sql, counts["sample_usage_rows"])
    sample_pd = child(["pandas", lake_dir + "-sample", str(last)])
    show(f"sample {args.sample:,}: pandas", sample_pd, counts["sample_usage_rows"])
    rate = lambda r: r["rows"] / r["seconds"]  # noqa: E731
    print(f"speed ratio, feature rows/s: SQL at full scale / pandas on the sample = {rate(one) / rate(sample_pd):.1f}x; "
          f"SQL / pandas on the same sample = {rate(sample_sql) / rate(sample_pd):.1f}x")


if __name__ == "__main__":
    main()

"""Billing benchmark: rate N synthetic usage records and bill 100k accounts; compare with the reference.

Run as ``python bench/billing.py [--records 10000000] [--accounts 100000]``. Usage is generated
straight into a fresh Delta lake (not through Kafka). Prints: generation time, the bill run's
end-to-end time (read Delta, rate, invoice, write Delta), records rated per second, the time
of each SQL model, peak RSS, and the per-record reference rater's speed on a sample of whole
subscribers (all their records, so allowances and tiers mean the same) with the ratio and
whether both agree to the cent on that sample.
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
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.billing.catalog import read_catalog  # noqa: E402
from pipelines.billing.reference import load_catalog  # noqa: E402
from pipelines.billing.run import bill_run  # noqa: E402
from pipelines.billing.synthetic import cycle_start, subscribers, usage  # noqa: E402
from pipelines.core.config import load_settings  # noqa: E402
from pipelines.core.lake import Lake  # noqa: E402
from tests import billing_reference as ref  # noqa: E402

CHUNK = 2_000_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bill_only() -> None:
    """The measured phase, in its own process so its peak RSS is its own."""
    steps: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    result = bill_run(load_settings(), "2026-10", on_step=lambda s: steps.append((s, time.perf_counter())))
    seconds = time.perf_counter() - t0
    marks = [*steps, ("end", t0 + seconds)]
    timings = ", ".join(f"{name} {b - a:.2f}s" for (name, a), (_, b) in zip(marks, marks[1:], strict=False))
    print(json.dumps({"rated": result.rated, "unrated": result.unrated, "invoices": result.invoices, "seconds": seconds,
                      "steps": timings, "peak_rss_mb": peak_rss_mb()}))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (delta-rs/pyarrow threads can abort it)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=120_000)
    parser.add_argument("--sample", type=int, default=100_000, help="records for the reference rater")
    parser.add_argument("--lake", default=None, help="lake root (default: a fresh temp dir)")
    parser.add_argument("--bill-only", action="store_true", help="internal: run only the bill run, print JSON")
    args = parser.parse_args()
    if args.bill_only:
        os.environ["TELCOLAKE_LAKE"] = args.lake
        bill_only()
        return

    os.environ["TELCOLAKE_LAKE"] = args.lake or tempfile.mkdtemp(prefix="bench-billing-") + "/lake"
    settings = load_settings()
    lake = Lake.from_settings(settings)
    start = cycle_start("2026-10")
    print(f"lake: {settings.lake_root}")

    t0 = time.perf_counter()
    load_catalog(settings)
    subs = subscribers(args.subscribers, accounts=args.accounts, start=start, seed=11)
    lake.write("silver/subscribers", subs)
    for offset in range(0, args.records, CHUNK):
        n = min(CHUNK, args.records - offset)
        chunk = usage(n, subscribers=args.subscribers, start=start, days=31, seed=offset + 1, offset=offset)
        lake.write("silver/usage", chunk, partition_by=["event_date"])
    gen_s = time.perf_counter() - t0
    print(f"generated {args.records:,} usage records, {subs.num_rows:,} subscriber intervals, "
          f"{args.accounts:,} accounts in {gen_s:.1f} s")

    print(f"  (generator peak RSS {peak_rss_mb():,.0f} MB; the bill run below runs in a fresh process)")
    out = subprocess.run([sys.executable, __file__, "--bill-only", "--lake", settings.lake_root], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    bill = json.loads(out.strip().splitlines()[-1])
    bill_s, rps = bill["seconds"], (bill["rated"] + bill["unrated"]) / bill["seconds"]
    print(f"bill run: {bill['rated']:,} rated + {bill['unrated']:,} unrated, {bill['invoices']:,} invoices in {bill_s:.2f} s")
    print(f"  steps: {bill['steps']}")
    print(f"  records rated per second (read Delta, rate, invoice, write Delta): {rps:,.0f}")
    print(f"  peak RSS of the bill-run process: {bill['peak_rss_mb']:,.0f} MB")

    # reference rater on whole subscribers whose records add up to about --sample records
    per_sub = max(1, args.records // args.subscribers)
    chosen = pa.array([f"SUB{i:07d}" for i in range(0, max(1, args.sample // per_sub))])
    sample = lake.table("silver/usage").to_pyarrow_dataset().to_table(filter=ds.field("subscriber_id").isin(chosen))
    sample_subs = subs.filter(pc.is_in(subs["subscriber_id"], chosen)).to_pylist()
    rows = sample.to_pylist()
    versions = read_catalog()
    t0 = time.perf_counter()
    expected, expected_unrated = ref.rate_usage(versions, sample_subs, rows)
    ref_s = time.perf_counter() - t0
    ref_rps = len(rows) / ref_s
    rated = lake.table("gold/billing/rated_usage").to_pyarrow_dataset().to_table(
        columns=["record_id", "charge"], filter=ds.field("subscriber_id").isin(chosen))
    got = dict(zip(rated["record_id"].to_pylist(), rated["charge"].to_pylist(), strict=True))
    mismatches = sum(1 for k, r in expected.items() if got.get(k) != r.charge) + abs(len(got) - len(expected))
    print(f"reference rater: {len(rows):,} records of {len(chosen):,} subscribers in {ref_s:.2f} s = {ref_rps:,.0f} records/s "
          f"(rating only, in memory)")
    print(f"ratio SQL end-to-end / reference: {rps / ref_rps:,.1f}x; sample agreement: "
          f"{'all charges equal' if not mismatches else f'{mismatches} differences'} "
          f"({len(expected_unrated):,} unrated in sample)")


if __name__ == "__main__":
    main()

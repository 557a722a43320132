"""Billing benchmark: bill 10M synthetic usage records against this machine's ceiling, a minimal DuckDB pass.

Run as ``python bench/billing.py [--records 10000000] [--accounts 100000]``. Usage is generated
straight into a fresh Delta lake (not through Kafka). Then, each in a fresh process (its peak RSS
its own), measured in the same run:

- the bill run, end to end: read Delta, rate, invoice, write Delta (records/s, time and CPU of
  each step, peak RSS);
- a minimal DuckDB pass over the same usage, before and after the bill run: read the cycle's
  Delta files, one per-subscriber running-sum window, an integer charge, write Delta (the same
  reader and writer as the bill run): what this machine does at best with one window over the
  records. The ratio bill run / minimal pass (records/s) is robust to other load on the
  machine; absolute numbers are not;
- the per-record reference rater (tests/billing_reference.py) on a sample of whole subscribers,
  and whether it agrees with the bill run to the cent on that sample.
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
MINIMAL = "bench/minimal_pass"
MINIMAL_SQL = """
    select record_id, subscriber_id, started_at, quantity_base,
           sum(quantity_base) over (partition by subscriber_id order by started_at, record_id) as running_base,
           quantity_base * 7 // 1000 as charge_e4
    from (select record_id, subscriber_id, started_at,
                 case event_type when 'voice' then duration_s when 'sms' then 1 else bytes_up + bytes_down end as quantity_base
          from silver_usage
          where event_date >= date '2026-10-01' and event_date < date '2026-11-01')
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _report(**fields: object) -> None:
    print(json.dumps(fields))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (delta-rs/pyarrow threads can abort it)


def bill_only() -> None:
    """The measured bill run, in its own process."""
    steps: list[tuple[str, float, float]] = []
    t0, c0 = time.perf_counter(), time.process_time()
    result = bill_run(load_settings(), "2026-10", on_step=lambda s: steps.append((s, time.perf_counter(), time.process_time())))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    marks = [*steps, ("end", t0 + seconds, c0 + cpu)]
    timings = ", ".join(f"{name} {b - a:.2f}s ({cb - ca:.2f} cpu)" for (name, a, ca), (_, b, cb) in zip(marks, marks[1:], strict=False))
    _report(rated=result.rated, unrated=result.unrated, invoices=result.invoices, seconds=seconds, cpu=cpu, steps=timings,
            peak_rss_mb=peak_rss_mb())


def minimal_only() -> None:
    """The minimal pass, in its own process: read Delta, one window, an integer charge, write Delta."""
    import shutil

    import duckdb

    from pipelines.billing.engine import register
    from pipelines.billing.rating import write_files

    lake = Lake.from_settings(load_settings())
    t0, c0 = time.perf_counter(), time.process_time()
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    register(con, lake, "silver/usage", lake.version("silver/usage"))
    con.execute(f"create view minimal as select *, '2026-10' as billed_cycle from ({MINIMAL_SQL})")
    schema = con.sql("select * from minimal where false").to_arrow_table().schema
    files = write_files(con, lake, MINIMAL, "minimal", "2026-10", None)
    lake.commit_files(MINIMAL, files, schema=schema, partition_by=["billed_cycle"], replace={"billed_cycle": "2026-10"})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    records = sum(f.num_records for f in files)
    shutil.rmtree(lake.uri(MINIMAL), ignore_errors=True)
    _report(records=records, seconds=seconds, cpu=cpu, peak_rss_mb=peak_rss_mb())


def _run(lake_root: str, flag: str) -> dict:
    out = subprocess.run([sys.executable, __file__, flag, "--lake", lake_root], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=120_000)
    parser.add_argument("--sample", type=int, default=100_000, help="records for the reference rater")
    parser.add_argument("--lake", default=None, help="lake root (default: a fresh temp dir)")
    parser.add_argument("--bill-only", action="store_true", help="internal: run only the bill run, print JSON")
    parser.add_argument("--minimal-only", action="store_true", help="internal: run only the minimal pass, print JSON")
    args = parser.parse_args()
    if args.bill_only or args.minimal_only:
        os.environ["TELCOLAKE_LAKE"] = args.lake
        bill_only() if args.bill_only else minimal_only()
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
    print(f"generated {args.records:,} usage records, {subs.num_rows:,} subscriber intervals, "
          f"{args.accounts:,} accounts in {time.perf_counter() - t0:.1f} s (generator peak RSS {peak_rss_mb():,.0f} MB)")

    before = _run(settings.lake_root, "--minimal-only")
    bill = _run(settings.lake_root, "--bill-only")
    after = _run(settings.lake_root, "--minimal-only")
    records = bill["rated"] + bill["unrated"]
    rps = records / bill["seconds"]
    minimal_s = (before["seconds"] + after["seconds"]) / 2
    minimal_rps = before["records"] / minimal_s
    print(f"bill run: {bill['rated']:,} rated + {bill['unrated']:,} unrated, {bill['invoices']:,} invoices in {bill['seconds']:.2f} s "
          f"({bill['cpu']:.1f} s CPU)")
    print(f"  steps: {bill['steps']}")
    print(f"  records rated per second (read Delta, rate, invoice, write Delta): {rps:,.0f}")
    print(f"  peak RSS of the bill-run process: {bill['peak_rss_mb']:,.0f} MB")
    print(f"minimal pass (read Delta, one running-sum window, integer charge, write Delta): {before['seconds']:.2f} s before, "
          f"{after['seconds']:.2f} s after the bill run ({before['cpu']:.1f} / {after['cpu']:.1f} s CPU) = {minimal_rps:,.0f} records/s, "
          f"peak RSS {max(before['peak_rss_mb'], after['peak_rss_mb']):,.0f} MB")
    print(f"ratio bill run / minimal pass: {rps / minimal_rps:.2f}x by time, "
          f"{(before['cpu'] + after['cpu']) / 2 / bill['cpu']:.2f}x by CPU")

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
          f"(rating only, in memory); bill run / reference: {rps / ref_rps:,.1f}x; sample agreement: "
          f"{'all charges equal' if not mismatches else f'{mismatches} differences'} ({len(expected_unrated):,} unrated in sample)")


if __name__ == "__main__":
    main()

"""Two real processes writing the same tables at once: nothing is written twice, nothing lost.

Each test starts two ``python -m pipelines.cli ...`` processes together on one lake (the
embedded broker for ingest) and counts what landed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from tests.helpers import ENC, all_offsets, produce, usage_record, usage_values

RECORDS = 30_000
REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


def _together(cmd: list[str], n: int = 2, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Start ``n`` copies of ``cmd`` at once; wait for all of them."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.monotonic() + timeout
    done = []
    for p in procs:
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def _small_batches(rows: int) -> None:
    path = os.environ["TELCOLAKE_CONFIG"]
    text = open(path).read().replace("flush_rows = 200000", f"flush_rows = {rows}")
    open(path, "w").write(text)


def _duplicates(values: list) -> int:
    return len(values) - len(set(values))


def test_two_ingests_at_once_land_every_offset_exactly_once(env, kafka):
    _small_batches(1000)  # many small commits, so the two writers interleave
    usage, bss = env.topic("usage.events"), env.topic("bss.events")
    produce(kafka, usage, usage_values(RECORDS) + [b"{broken"] * 200, partitions=4)
    bad_bss = [ENC.encode({"event_id": f"B{i}", "kind": "not-a-kind"}) for i in range(300)]
    produce(kafka, bss, bad_bss, partitions=2)  # every record quarantined
    runs = _together(_cli("ingest", "--until-caught-up", "--no-silver", "--quiet", "--json"))
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    own = [json.loads(r.stdout.strip().splitlines()[-1])["rows"].get("usage.events", 0) for r in runs]
    lake = Lake.from_settings(load_settings())
    t = lake.read("bronze/usage.events", columns=["_kafka_partition", "_kafka_offset"])
    q = lake.read("quarantine/usage.events", columns=["_kafka_partition", "_kafka_offset"])
    qb = lake.read("quarantine/bss.events", columns=["_kafka_partition", "_kafka_offset"])
    coords = list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))
    rejected = list(zip(q["_kafka_partition"].to_pylist(), q["_kafka_offset"].to_pylist(), strict=True))
    rejected_bss = list(zip(qb["_kafka_partition"].to_pylist(), qb["_kafka_offset"].to_pylist(), strict=True))
    print(f"bronze rows {len(coords)} (duplicates {_duplicates(coords)}), quarantine rows {len(rejected)} "
          f"(duplicates {_duplicates(rejected)}), bss quarantine {len(rejected_bss)} (duplicates {_duplicates(rejected_bss)})")
    assert _duplicates(coords) == 0 and _duplicates(rejected) == 0 and _duplicates(rejected_bss) == 0
    assert len(coords) == RECORDS and len(rejected) == 200 and len(rejected_bss) == 300
    assert set(coords) | set(rejected) == all_offsets(kafka, usage), "an offset is missing"
    print(f"rows each process committed: {own}")
    assert sum(own) == RECORDS, "the two runs' own counts do not add up to what landed"
    assert not set(coords) & set(rejected), "an offset is in bronze and in quarantine"


def _bronze_usage(lake: Lake, start: int, n: int, batches: int) -> None:
    """Bronze usage records ``start..start+n`` in ``batches`` commits, every 10th one repeated
    (mediation duplicates), from one dump-like segment."""
    import numpy as np

    from pipelines.ingest.kafka_source import RawBatch
    from pipelines.ingest.landing import BronzeWriter

    records = [usage_record(i) for i in range(start, start + n)] + [usage_record(i) for i in range(start, start + n, 10)]
    size = -(-len(records) // batches)
    writer = BronzeWriter(lake)
    for b in range(batches):
        chunk = records[b * size : (b + 1) * size]
        lo = b * size
        writer.land(RawBatch(topic="usage.events", source=f"file:test/{start}.jsonl", values=[ENC.encode(r) for r in chunk],
                             keys=[None] * len(chunk), segments=[f"file:{start}"], seg=np.zeros(len(chunk), dtype=np.int32),
                             pos=np.arange(lo, lo + len(chunk), dtype=np.int64)))


def test_two_silver_refreshes_at_once_keep_each_record_id_once(local_settings):
    lake = Lake.from_settings(local_settings)
    for round_ in range(3):  # a first refresh, then incremental ones, each time two at once
        _bronze_usage(lake, round_ * 10_000, 10_000, batches=10)
        for run in _together(_cli("silver", "--json")):
            assert run.returncode == 0, run.stderr[-2000:]
    ids = lake.read("silver/usage", columns=["record_id"])["record_id"].to_pylist()
    dupes = lake.read("silver/usage_duplicates", columns=["record_id"])["record_id"].to_pylist()
    print(f"silver rows {len(ids)} (duplicate record_ids {_duplicates(ids)}), usage_duplicates rows {len(dupes)}")
    assert _duplicates(ids) == 0 and len(ids) == 30_000
    assert len(dupes) == 3_000 and _duplicates(dupes) == 0


@pytest.fixture
def small_chunks(local_settings, tmp_path, monkeypatch):
    """Local settings whose dumps are landed in chunks of 1,000 rows (many commits per file)."""
    config = tmp_path / "telcolake.toml"
    config.write_text((REPO / "telcolake.toml").read_text().replace("flush_rows = 200000", "flush_rows = 1000"))
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(config))
    return load_settings()


def test_two_backfills_of_the_same_dumps_at_once_land_each_file_once(small_chunks, tmp_path):
    folder = tmp_path / "dumps" / "usage.events"
    folder.mkdir(parents=True)
    records = [usage_record(i) for i in range(30_000)]
    for k in range(6):
        part = records[k * 5000 : (k + 1) * 5000]
        (folder / f"2026-10-0{k + 1}.jsonl").write_bytes(b"\n".join(ENC.encode(r) for r in part) + b"\n{broken\n")
    pl.DataFrame(records[:500]).write_parquet(folder / "2026-10-09.parquet")
    runs = _together(_cli("backfill", str(tmp_path / "dumps"), "--no-silver", "--json", "--workers", "2"))
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    lake = Lake.from_settings(small_chunks)
    t = lake.read("bronze/usage.events", columns=["_source", "_source_row"])
    rows = list(zip(t["_source"].to_pylist(), t["_source_row"].to_pylist(), strict=True))
    q = lake.read("quarantine/usage.events", columns=["_source", "_source_row"])
    rejected = list(zip(q["_source"].to_pylist(), q["_source_row"].to_pylist(), strict=True))
    print(f"bronze rows {len(rows)} (duplicates {_duplicates(rows)}), quarantine rows {len(rejected)} (duplicates {_duplicates(rejected)})")
    assert _duplicates(rows) == 0 and len(rows) == 30_000 + 500
    assert _duplicates(rejected) == 0 and len(rejected) == 6
    landed = sum(json.loads(r.stdout.strip().splitlines()[-1])["rows"].get("usage.events", 0) for r in runs)
    assert landed == 30_500, "the two runs' own counts do not add up to what landed"


def test_two_bill_runs_at_once_close_the_cycle_once(local_settings, tmp_path):
    from pipelines.billing.reference import load_catalog
    from tests.billing_data import TEST_CATALOG, interval, usage, write_subscribers, write_usage

    catalog = tmp_path / "catalog.toml"
    catalog.write_text(TEST_CATALOG)
    load_catalog(local_settings, catalog)
    lake = Lake.from_settings(local_settings)
    subs = [f"SUB{i}" for i in range(50)]
    write_subscribers(lake, [interval(s, f"ACC{s}", "lite", "2026-09-01T00:00:00") for s in subs])
    write_usage(lake, [usage(s, "voice", f"2026-10-{1 + d:02d}T10:00:00", duration_s=60 + d, called_number="4930111")
                       for s in subs for d in range(20)])
    runs = _together(_cli("bill-run", "--cycle", "2026-10", "--no-gate", "--json"))
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    summaries = [json.loads(r.stdout.strip().splitlines()[-1]) for r in runs]
    print("already closed:", [s["already_closed"] for s in summaries])
    assert sorted(s["already_closed"] for s in summaries) == [False, True], "exactly one run closes the cycle"
    assert len({(s["invoices"], s["amount_incl_tax"]) for s in summaries}) == 1
    assert lake.read("gold/billing/bill_runs").num_rows == 1
    rated = lake.read("gold/billing/rated_usage", columns=["record_id"])["record_id"].to_pylist()
    bills = lake.read("gold/billing/invoices", columns=["bill_no"])["bill_no"].to_pylist()
    print(f"rated rows {len(rated)} (duplicates {_duplicates(rated)}), invoices {len(bills)} (duplicates {_duplicates(bills)})")
    assert len(rated) == 1000 and _duplicates(rated) == 0
    assert len(bills) == 50 and _duplicates(bills) == 0


@pytest.mark.slow
def test_two_publishes_of_a_partner_at_once_publish_one_version(tmp_path, monkeypatch):
    from tests.unit.sharing.conftest import make_env

    shared = make_env(tmp_path, monkeypatch)
    runs = _together(_cli("publish", "--partner", "fr-orange", "--json"))
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    statuses = sorted(t["status"] for r in runs for t in json.loads(r.stdout.strip().splitlines()[-1])[0]["tables"])
    print("statuses:", statuses)
    assert statuses == ["published", "published", "unchanged", "unchanged"]
    for table in ("roaming_settlement", "roaming_records"):
        assert shared.lake.version(f"shares/fr-orange/{table}") == 0, f"{table}: published twice"

"""`telcolake maintain`: one compaction commit per table, idempotent, a safe retention, and ingest after it."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta

import pyarrow as pa

from pipelines.core.lake import Lake
from pipelines.core.lease import Lease
from pipelines.ingest import run_ingest
from pipelines.ingest.maintain import maintain_all
from pipelines.ingest.silver import refresh
from tests.helpers import ENC, produce, usage_values


def _many_small_files(lake: Lake, name: str, days: int = 30, files_per_day: int = 3) -> None:
    for k in range(files_per_day):
        dates = [date(2026, 10, 1) + timedelta(days=d) for d in range(days)]
        lake.write(name, pa.table({"event_date": dates, "n": [k] * days}), partition_by=["event_date"])


def test_maintain_compacts_each_partition_once_and_a_second_run_changes_nothing(local_settings):
    lake = Lake.from_settings(local_settings)
    _many_small_files(lake, "bronze/bss.events")
    with Lease(lake, "publish:fr-orange").held():  # a table partitioned by a value that needs escaping
        pass
    before = lake.version("bronze/bss.events")
    first = {r["table"]: r for r in maintain_all(local_settings, retention_hours=0, force=True)}
    history = lake.table("bronze/bss.events").history()
    optimizes = [h for h in history if h.get("operation") == "OPTIMIZE"]
    print(f"bronze/bss.events: version {before} -> {first['bronze/bss.events']['version']}, {len(optimizes)} OPTIMIZE commit(s)")
    assert len(optimizes) == 1, "every partition compacted in one commit"
    assert first["bronze/bss.events"]["files_removed"] == 90 and first["bronze/bss.events"]["files_added"] == 30
    assert lake.read("bronze/bss.events").num_rows == 90
    versions = {n: lake.version(n) for n in lake.list_tables()}
    second = maintain_all(local_settings, retention_hours=0, force=True)
    assert {n: lake.version(n) for n in lake.list_tables()} == versions, "a second run committed something"
    assert all(r["files_removed"] == r["files_added"] == r["vacuumed"] == 0 for r in second), second


def _maintain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "maintain", "--json", *args], capture_output=True, text=True, timeout=300)


def test_a_retention_below_the_safe_minimum_is_refused_unless_forced(local_settings):
    lake = Lake.from_settings(local_settings)
    _many_small_files(lake, "bronze/bss.events", days=3)
    lake.write("gold/t/short", pa.table({"n": [1]}), configuration={"delta.deletedFileRetentionDuration": "interval 2 days"})
    versions = {n: lake.version(n) for n in lake.list_tables()}
    refused = _maintain("--retention-hours", "0")
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-2000:]
    assert "below the safe minimum of" in lines[0] and "--force" in lines[0]
    assert {n: lake.version(n) for n in lake.list_tables()} == versions, "a refused run changed a table"
    short = _maintain("--retention-hours", "100")  # enough for the 2-day table, not for the 168 h default
    assert short.returncode == 2 and "168 h for bronze/bss.events" in short.stderr
    forced = _maintain("--retention-hours", "0", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert lake.read("bronze/bss.events").num_rows == 9


def test_ingest_after_maintain_with_no_new_lifecycle_events(env, kafka):
    bss = [ENC.encode({"event_id": f"E{i}", "subscriber_id": f"S{i % 7}", "account_id": f"A{i % 7}", "kind": "activated",
                       "occurred_at": f"2026-10-0{1 + i % 5}T08:00:00Z", "plan_id": "lite", "attributes": {"msisdn": f"49{i}"}})
           for i in range(40)]
    produce(kafka, env.topic("bss.events"), bss, partitions=2)
    produce(kafka, env.topic("usage.events"), usage_values(500), partitions=4)
    run_ingest(env, until_caught_up=True)
    refresh(env)
    subscribers = Lake.from_settings(env).read("silver/subscribers").num_rows
    maintain_all(env)
    produce(kafka, env.topic("usage.events"), usage_values(500, start=500), partitions=4)  # usage only, no lifecycle events
    run_ingest(env, until_caught_up=True)
    usage, subs = refresh(env)
    assert usage.new_rows == 500 and subs.new_rows == 0
    assert Lake.from_settings(env).read("silver/subscribers").num_rows == subscribers

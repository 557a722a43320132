"""Legacy dumps through the same path; silver dedupes mediation repeats and stream/dump overlap."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.ingest import run_ingest
from pipelines.ingest.silver import refresh
from tests.helpers import ENC, produce, usage_record, usage_values


def _backfill(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "backfill", "--json", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _dump(tmp_path, n: int = 1000):
    folder = tmp_path / "dumps" / "usage.events"
    folder.mkdir(parents=True)
    records = [usage_record(i) for i in range(n)]
    (folder / "2026-10-01.jsonl").write_bytes(b"\n".join(ENC.encode(r) for r in records) + b"\n{broken\n")
    pl.DataFrame(records[:100]).write_csv(folder / "2026-10-02.csv")
    pl.DataFrame(records[100:200]).write_parquet(folder / "2026-10-03.parquet")
    return tmp_path / "dumps"


def test_backfill_twice_gives_the_same_table(env, tmp_path):
    dumps = _dump(tmp_path)
    first = _backfill(str(dumps), "--no-silver")
    lake = Lake.from_settings(load_settings())
    table = lake.read("bronze/usage.events").sort_by([("_source", "ascending"), ("_source_row", "ascending")])
    assert first["files"] == 3
    assert table.num_rows == 1000 + 100 + 100
    assert lake.read("quarantine/usage.events")["reason"].to_pylist() == ["malformed_json"]
    second = _backfill(str(dumps), "--no-silver")
    assert second["rows"].get("usage.events", 0) == 0
    again = lake.read("bronze/usage.events").sort_by([("_source", "ascending"), ("_source_row", "ascending")])
    assert again.equals(table)
    assert lake.read("quarantine/usage.events").num_rows == 1
    # CSV and Parquet rows decode to the same typed values as the JSON lines
    csv_rows = table.filter(pl.Series([s.endswith(".csv") for s in table["_source"].to_pylist()]).to_arrow())
    row = csv_rows.to_pylist()[0]
    assert row["duration_s"] == usage_record(0)["duration_s"] and row["started_at"].isoformat() == "2026-10-01T00:00:00+00:00"


def test_stream_plus_backfill_overlap_and_mediation_repeats_dedupe_in_silver(env, kafka, tmp_path):
    topic = env.topic("usage.events")
    values = usage_values(600)
    repeats = values[:50]  # mediation sends 50 records twice
    produce(kafka, topic, values + repeats, partitions=2)
    run_ingest(env, until_caught_up=True, topics=["usage.events"])
    first = refresh(env)[0]
    assert (first.new_rows, first.duplicates) == (600, 50)

    dumps = _dump(tmp_path, n=1000)  # records 0..999 again from the legacy side, 0..599 overlap
    _backfill(str(dumps), "--no-silver")
    second = refresh(env)[0]
    lake = Lake.from_settings(env)
    silver = lake.read("silver/usage")
    ids = silver["record_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 1000
    assert second.new_rows == 400
    # stream arrived first: overlapping records keep their Kafka source
    sources = dict(zip(ids, silver["_source"].to_pylist(), strict=True))
    assert sources["R000000001"] == "kafka" and sources["R000000999"].startswith("file:")
    assert lake.read("silver/usage_duplicates").num_rows == 50 + 600 + 200
    assert refresh(env)[0].new_rows == 0  # nothing new, nothing written


def test_subscriber_intervals_follow_lifecycle_events(env, kafka):
    topic = env.topic("bss.events")

    def ev(i, kind, at, **kw):
        return ENC.encode({"event_id": f"E{i}", "subscriber_id": "SUB0000001", "account_id": "ACC0000001", "occurred_at": at, "kind": kind, **kw})

    produce(kafka, topic, [
        ev(1, "activated", "2026-01-01T00:00:00Z", plan_id="max", attributes={"msisdn": "491510000001", "country": "DE", "currency": "EUR"}),
        ev(2, "payment", "2026-02-01T00:00:00Z", amount="45.00"),
    ], partitions=1)
    run_ingest(env, until_caught_up=True, topics=["bss.events"])
    refresh(env)
    lake = Lake.from_settings(env)
    rows = lake.read("silver/subscribers").to_pylist()
    assert [(r["plan_id"], r["status"], r["is_current"]) for r in rows] == [("max", "active", True)]

    produce(kafka, topic, [ev(3, "plan_changed", "2026-03-10T00:00:00Z", plan_id="plus"), ev(4, "terminated", "2026-04-01T00:00:00Z")], partitions=1)
    run_ingest(env, until_caught_up=True, topics=["bss.events"])
    result = refresh(env)[1]
    assert result.changed_subscribers == 1
    rows = sorted(lake.read("silver/subscribers").to_pylist(), key=lambda r: r["valid_from"])
    assert [(r["plan_id"], r["status"], r["is_current"]) for r in rows] == [("max", "active", False), ("plus", "active", False), ("plus", "terminated", True)]
    assert rows[0]["valid_to"] == rows[1]["valid_from"] and rows[0]["msisdn"] == "491510000001"


def test_a_badly_typed_csv_cell_rejects_only_its_row(env, tmp_path):
    folder = tmp_path / "d" / "usage.events"
    folder.mkdir(parents=True)
    frame = pl.DataFrame([usage_record(i) for i in range(20)]).with_columns(pl.col("duration_s").cast(pl.String))
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("forever")).otherwise(pl.col("duration_s")).alias("duration_s"))
    frame.write_csv(folder / "bad.csv")
    _backfill(str(tmp_path / "d"), "--no-silver")
    lake = Lake.from_settings(load_settings())
    assert lake.read("bronze/usage.events").num_rows == 19
    q = lake.read("quarantine/usage.events").to_pylist()
    assert [(r["reason"], r["_source_row"]) for r in q] == [("bad_type:duration_s", 7)]

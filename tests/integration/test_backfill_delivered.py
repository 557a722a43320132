"""A dump named by its date is known from the end of that day: bronze and silver carry ``_delivered_at``,
and the churn features of the days after see its rows (the demo's legacy history depends on it)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow.compute as pc

from pipelines.churn.features import build_features
from pipelines.core.lake import Lake
from pipelines.ingest.backfill import run_backfill
from pipelines.ingest.dumps import delivered_ms
from pipelines.ingest.silver import refresh
from tests.helpers import ENC, usage_record


def _bss(i: int, sub: str, kind: str, at: str) -> dict:
    return {"event_id": f"E{i}", "subscriber_id": sub, "account_id": "ACC1", "occurred_at": at, "kind": kind, "plan_id": "lite"}


def test_dump_rows_are_known_from_the_end_of_the_day_their_file_is_named_after(local_settings, tmp_path):
    d = tmp_path / "dumps"
    (d / "usage.events").mkdir(parents=True)
    (d / "bss.events").mkdir(parents=True)
    calls = [usage_record(i, subscriber_id="SUB0000001", started_at=f"2026-07-14T1{i}:00:00Z", event_type="voice",
                          bytes_up=0, bytes_down=0, called_number="4930123456") for i in range(3)]
    (d / "usage.events" / "2026-07-14.jsonl").write_bytes(b"\n".join(ENC.encode(r) for r in calls) + b"\n")
    late = [usage_record(9, subscriber_id="SUB0000001", started_at="2026-07-14T23:00:00Z", event_type="voice", called_number="4930123456")]
    (d / "usage.events" / "extra_export.jsonl").write_bytes(ENC.encode(late[0]) + b"\n")  # no date in the name
    (d / "bss.events" / "2026-07-01.jsonl").write_bytes(ENC.encode(_bss(1, "SUB0000001", "activated", "2026-07-01T08:00:00Z")) + b"\n")

    result = run_backfill(local_settings, [d])
    assert sum(result.stats.rows.values()) == 5
    refresh(local_settings)
    lake = Lake(local_settings.lake_root)
    for table in ("bronze/usage.events", "silver/usage"):
        rows = {r["record_id"]: r["_delivered_at"] for r in lake.read(table).to_pylist()}
        assert {rows[c["record_id"]] for c in calls} == {datetime(2026, 7, 15, tzinfo=UTC)}
        assert rows[late[0]["record_id"]] is None  # falls back to _ingested_at (today)
    assert delivered_ms("2026-07-14.csv") == int(datetime(2026, 7, 15, tzinfo=UTC).timestamp() * 1000)
    assert delivered_ms("2026-13-40.csv") is None and delivered_ms("usage.csv") is None

    # the file of 2026-07-14 was delivered at 2026-07-15 00:00: known for as-of 07-16, not 07-15
    build_features(local_settings, date(2026, 7, 15), date(2026, 7, 16))
    feats = lake.read("gold/churn/features_daily").to_pylist()
    calls_by_day = {r["as_of_date"]: r["call_count_7d"] for r in feats if r["subscriber_id"] == "SUB0000001"}
    assert calls_by_day == {date(2026, 7, 15): 0, date(2026, 7, 16): 3}  # the undated file's call is not known yet
    assert pc.sum(lake.read("bronze/bss.events")["_delivered_at"].is_valid()).as_py() == 1

"""Gold tables recomputed for the same inputs are the same rows, floats bit for bit.

A churn feature day is recomputed several times with DuckDB on two threads (parallel float sums
used to change the last digits of cell_drop_rate_30d); a KPI minute is recomputed from the same
records arriving in other orders and batches (the window means used to depend on the order).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.churn.features import FEATURES, build_features
from pipelines.core.contracts import NETWORK, decode_batch, encode_records
from pipelines.core.lake import Lake
from pipelines.simulate import SimConfig
from pipelines.streams.config import stream_config
from pipelines.streams.kpi import KpiLogic
from tests.unit.churn.simulated import land

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def bits(table: pa.Table) -> dict[str, list]:
    """Every column as comparable values; floats as their 64-bit patterns (nulls as None)."""
    out = {}
    for name in table.column_names:
        col = table[name].combine_chunks()
        if pa.types.is_floating(col.type):
            raw = pc.fill_null(col, 0.0).to_numpy(zero_copy_only=False).astype(np.float64).view(np.int64)
            out[name] = [None if null else int(v) for v, null in zip(raw, col.is_null().to_numpy(zero_copy_only=False), strict=True)]
        else:
            out[name] = col.to_pylist()
    return out


@pytest.mark.slow
def test_a_churn_feature_day_recomputed_on_two_threads_is_bit_identical(local_settings) -> None:
    start = date(2026, 9, 1)
    land(local_settings, SimConfig(subscribers=150, days=31, seed=5, start=start, kpi_interval_s=900))
    settings = replace(local_settings, raw={**local_settings.raw, "churn": {**local_settings.section("churn"), "threads": 2}})
    day = start + timedelta(days=30)
    lake = Lake.from_settings(settings)
    runs = []
    for _ in range(4):
        build_features(settings, day)  # replaces the day's partition
        table = lake.read(FEATURES)
        runs.append(table.sort_by("subscriber_id"))
    rates = runs[0]["cell_drop_rate_30d"]
    assert runs[0].num_rows > 100 and pc.count(pc.unique(rates)).as_py() > 100  # real, varied rates
    first = bits(runs[0])
    for again in runs[1:]:
        assert bits(again) == first


def _kpi_records(seed: int) -> list[dict]:
    """Two cells, 20 minutes, 7 samples per cell-minute with long-fraction floats, then a late-enough record."""
    rng = random.Random(seed)
    records = []
    for minute in range(20):
        for cell in ("C1", "C2"):
            for k in range(7):
                at = T0 + timedelta(minutes=minute, seconds=rng.randint(0, 59))
                records.append({"event_id": f"N{cell}{minute:02d}{k}", "cell_id": cell, "site_id": "S1", "observed_at": at.isoformat(),
                                "kind": "kpi", "call_attempts": rng.randint(5, 50), "dropped_calls": rng.randint(0, 5),
                                "prb_utilization": rng.uniform(0, 100), "latency_ms": rng.uniform(10, 200)})
    closing = T0 + timedelta(hours=1)
    records += [{"event_id": f"Nend{cell}", "cell_id": cell, "site_id": "S1", "observed_at": closing.isoformat(), "kind": "kpi",
                 "call_attempts": 1, "dropped_calls": 0, "prb_utilization": 1.0, "latency_ms": 1.0} for cell in ("C1", "C2")]
    return records


def _kpi(settings, records: list[dict], cuts: list[int]) -> pa.Table:
    logic = KpiLogic(stream_config(settings), "network.events")
    decoded = pl.from_arrow(decode_batch(NETWORK, encode_records(records), now=T0 + timedelta(days=1)).table)
    rows = []
    bounds = [0, *cuts, decoded.height]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        result = logic.process(decoded.slice(lo, hi - lo))
        if "kpi" in result.rows:
            rows.append(result.rows["kpi"])
    return pa.concat_tables(rows).sort_by([("cell_id", "ascending"), ("window_start", "ascending")])


def test_a_kpi_window_recomputed_from_reordered_records_is_bit_identical(local_settings) -> None:
    records = _kpi_records(seed=3)
    first = _kpi(local_settings, records, [])
    assert first.num_rows == 40 and set(first["kpi_samples"].to_pylist()) == {7}
    rng = random.Random(4)
    body, closing = records[:-2], records[-2:]
    for _ in range(4):
        # the same records, each minute's samples in another order, cut into other batches
        minutes = [body[i : i + 14] for i in range(0, len(body), 14)]
        shuffled = [r for m in minutes for r in rng.sample(m, len(m))] + closing
        cuts = sorted(rng.sample(range(1, len(shuffled)), 5))
        assert bits(_kpi(local_settings, shuffled, cuts)) == bits(first)

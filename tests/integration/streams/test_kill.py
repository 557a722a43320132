"""kill -9 the stream mid-flight, restart: the same KPI, alert and quarantine tables as one clean run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import pytest

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.streams import run_streams
from tests.integration.streams.conftest import configure, other_lake
from tests.integration.streams.scenarios import kill_mid_stream, kpi, network_load, produce_keyed

TABLES = {
    "gold/network/cell_kpi_1m": ["cell_id", "window_start"],
    "gold/network/alerts": ["alert_id"],
    "quarantine/streams": ["flow", "_kafka_topic", "_kafka_partition", "_kafka_offset"],
}


def _table(lake: Lake, name: str) -> list[dict]:
    return lake.read(name).sort_by([(k, "ascending") for k in TABLES[name]]).to_pylist()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])  # with 2, the shards of each worker checkpoint independently
def test_kill_nine_mid_stream_then_restart_gives_the_same_tables(senv, kafka, tmp_path, workers):
    settings = configure(streams={"flush_rows": 1500, "shards": 4})
    records = network_load(40, 4, 90, seed=11)
    stragglers = [kpi(900_000 + n, r["cell_id"], r["site_id"], datetime.fromisoformat(r["observed_at"]), 5, 1) for n, r in enumerate(records[2000::700])]
    half = len(records) // 2
    records = records[:half] + stragglers + records[half:] + stragglers[:3]  # half an hour or more behind: too late
    produce_keyed(kafka, settings.topic("network.events"), records, "site_id", partitions=2)

    lake = Lake.from_settings(load_settings())
    state = "ops/stream_state/kpi"
    cmd = [sys.executable, "-m", "pipelines.cli", "stream", "--until-caught-up", "--only", "kpi", "--quiet", "--workers", str(workers)]
    rows_at_kill = kill_mid_stream(cmd, lake, state, seed=5, rows=lambda: lake.read("gold/network/cell_kpi_1m").num_rows)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]

    clean = other_lake(settings, tmp_path, "clean")
    run_streams(clean, only="kpi", until_caught_up=True)
    clean_lake = Lake.from_settings(clean)
    for name in TABLES:
        assert _table(lake, name) == _table(clean_lake, name), name
    final = len(_table(lake, "gold/network/cell_kpi_1m"))
    assert final > 10_000
    assert any(0 < n < final for n in rows_at_kill), f"no kill landed mid-stream: {rows_at_kill} of {final}"
    print(f"killed at {rows_at_kill} of {final} KPI rows")
    assert any(r["reason"] == "too_late" for r in _table(lake, "quarantine/streams"))
    assert _table(lake, "gold/network/alerts")

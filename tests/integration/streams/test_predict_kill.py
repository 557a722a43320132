"""The KPI flow with its prediction step, kill -9 mid-flight and restarted: the same tables as one clean run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.assurance.history import replay_network
from pipelines.assurance.model import MODEL_RUNS, train
from pipelines.assurance.scoring import PREDICTIONS_TABLE, RULE
from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.simulate import SimConfig
from pipelines.streams import run_streams
from tests.integration.streams.conftest import configure, other_lake
from tests.integration.streams.scenarios import kill_mid_stream, network_load, produce_keyed

TABLES = {
    "gold/network/cell_kpi_1m": ["cell_id", "window_start"],
    "gold/network/alerts": ["alert_id"],
    PREDICTIONS_TABLE: ["alert_id"],
}


def _table(lake: Lake, name: str) -> list[dict]:
    return lake.read(name).sort_by([(k, "ascending") for k in TABLES[name]]).to_pylist()


def _model_into(lake_root: str, source: Path) -> None:
    shutil.copytree(source, Path(lake_root) / MODEL_RUNS)


@pytest.mark.slow
def test_kill_nine_with_prediction_then_restart_gives_the_same_tables(senv, kafka, tmp_path):
    # short histories count (a 90-minute load) and a low threshold, so the step raises alerts here
    settings = configure(streams={"flush_rows": 1500, "shards": 4},
                         predict={"test_days": 1, "max_iter": 30, "min_history_minutes": 10.0, "threshold": 0.05})
    history = other_lake(settings, tmp_path, "history")
    replay_network(history, SimConfig(subscribers=100, days=4, seed=2, incidents_per_day=10, drifts_per_day=3))
    train(history)
    _model_into(settings.lake_root, Path(history.lake_root) / MODEL_RUNS)
    produce_keyed(kafka, settings.topic("network.events"), network_load(40, 4, 90, seed=11), "site_id", partitions=2)

    lake = Lake.from_settings(load_settings())
    state = "ops/stream_state/kpi"
    cmd = [sys.executable, "-m", "pipelines.cli", "stream", "--until-caught-up", "--only", "kpi", "--quiet", "--workers", "1"]
    rows_at_kill = kill_mid_stream(cmd, lake, state, seed=6, rows=lambda: lake.read(PREDICTIONS_TABLE).num_rows if lake.exists(PREDICTIONS_TABLE) else 0)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]

    clean = other_lake(settings, tmp_path, "clean")
    _model_into(clean.lake_root, Path(history.lake_root) / MODEL_RUNS)
    run_streams(clean, only="kpi", until_caught_up=True)
    clean_lake = Lake.from_settings(clean)
    for name in TABLES:
        a, b = _table(lake, name), _table(clean_lake, name)
        assert a == b, (name, [x for x in a if x not in b][:2], [x for x in b if x not in a][:2])
    predicted = [r for r in _table(lake, "gold/network/alerts") if r["rule"] == RULE]
    final = len(_table(lake, PREDICTIONS_TABLE))
    assert predicted and final == len(predicted)
    assert all(r["top_features"] and r["horizon_minutes"] == 120 for r in _table(lake, PREDICTIONS_TABLE))
    assert any(0 < n < final for n in rows_at_kill), f"no kill landed mid-stream: {rows_at_kill} of {final}"
    print(f"killed with {rows_at_kill} of {final} predictions written")

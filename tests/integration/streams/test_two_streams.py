"""Two `telcolake stream` processes on the same flow at once: one stops with one line, nothing doubles."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.streams import run_streams
from tests.integration.streams.conftest import configure, other_lake
from tests.integration.streams.scenarios import network_load, produce_keyed

KEYS = {"gold/network/cell_kpi_1m": ["cell_id", "window_start"], "gold/network/alerts": ["alert_id"]}


def _rows(lake: Lake, name: str) -> list[dict]:
    return lake.read(name).sort_by([(k, "ascending") for k in KEYS[name]]).to_pylist()


def test_a_second_stream_on_the_same_flow_stops_with_one_line_and_nothing_doubles(senv, kafka, tmp_path):
    settings = configure(streams={"flush_rows": 1000, "shards": 4})
    produce_keyed(kafka, settings.topic("network.events"), network_load(30, 4, 60, seed=3), "site_id", partitions=2)
    cmd = [sys.executable, "-m", "pipelines.cli", "stream", "--until-caught-up", "--only", "kpi", "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)) for _ in range(2)]
    outcomes = []
    for p in procs:
        _out, err = p.communicate(timeout=240)
        outcomes.append((p.returncode, err))
    print("exit codes:", [c for c, _ in outcomes])
    for code, err in outcomes:
        assert "Traceback" not in err, err[-2000:]
        if code != 0:
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 1 and len(lines) == 1 and "another process checkpointed" in lines[0], err[-2000:]
    assert any(code == 0 for code, _ in outcomes) or all(code == 1 for code, _ in outcomes)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ))  # finish what a stopped one left
    assert done.returncode == 0, done.stderr[-2000:]

    lake = Lake.from_settings(load_settings())
    clean = other_lake(settings, tmp_path, "clean")
    run_streams(clean, only="kpi", until_caught_up=True)
    for name in KEYS:
        got = _rows(lake, name)
        keys = [tuple(r[k] for k in KEYS[name]) for r in got]
        assert len(keys) == len(set(keys)), f"{name}: a key twice"
        assert got == _rows(Lake.from_settings(clean), name), name

"""kill -9 at random moments, restart: bronze equals the topic exactly; maintain runs alongside."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.ingest.maintain import maintain_table
from tests.helpers import all_offsets, produce, usage_values


def _small_batches(env) -> None:
    """Flush every 20k records so a kill lands between many commits."""
    path = os.environ["TELCOLAKE_CONFIG"]
    text = open(path).read().replace("flush_rows = 200000", "flush_rows = 20000")
    open(path, "w").write(text)


def _ingest_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "ingest", "--until-caught-up", "--no-silver", "--quiet", *extra]


def _coords(lake: Lake) -> list[tuple[int, int]]:
    t = lake.read("bronze/usage.events", columns=["_kafka_partition", "_kafka_offset"])
    return list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_nine_three_times_then_restart_lands_exactly_once(env, kafka, workers):
    _small_batches(env)
    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(200_000), partitions=4)
    lake = Lake.from_settings(load_settings())
    rng = random.Random(workers)
    kills = 0
    for _ in range(3):
        before = lake.version("bronze/usage.events") or -1
        proc = subprocess.Popen(_ingest_cmd("--workers", str(workers)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # kill at a random moment once this run has committed something (mid-stream)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and (lake.version("bronze/usage.events") or -1) <= before:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            if len(_coords(lake)) < 200_000:
                kills += 1  # killed mid-stream, with records still to land
        proc.wait()
    assert kills >= 1, "no kill hit a running ingest with records still to land"
    done = subprocess.run(_ingest_cmd("--workers", str(workers)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    coords = _coords(lake)
    assert len(coords) == len(set(coords)), "a record landed twice"
    assert set(coords) == all_offsets(kafka, topic), "a record is missing"


@pytest.mark.slow
def test_maintain_while_ingesting_loses_nothing(env, kafka):
    _small_batches(env)
    topic = env.topic("usage.events")
    lake = Lake.from_settings(load_settings())
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--quiet", "--no-silver"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        results = []
        for round_ in range(4):
            produce(kafka, topic, usage_values(30_000, start=round_ * 30_000), partitions=4)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not lake.exists("bronze/usage.events"):
                time.sleep(0.2)
            results.append(maintain_table(lake, "bronze/usage.events", retention_hours=0, force=True))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_coords(lake)) < 120_000:
            time.sleep(0.5)
        assert proc.poll() is None, "ingest died while maintain ran: " + proc.stderr.read().decode()[-2000:]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0
    coords = _coords(lake)
    assert len(coords) == len(set(coords)) == 120_000
    assert set(coords) == all_offsets(kafka, topic)
    assert all("error" not in r for r in results), results

"""Once caught up, continuous ingest commits a small batch at idle_flush_seconds, not at flush_seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from tests.helpers import produce, usage_values


def test_a_trickle_lands_long_before_flush_seconds(env, kafka):
    path = os.environ["TELCOLAKE_CONFIG"]
    text = open(path).read().replace("flush_seconds = 2.0", "flush_seconds = 120.0")
    open(path, "w").write(text)
    assert load_settings().ingest.flush_seconds == 120.0 and load_settings().ingest.idle_flush_seconds == 0.2
    lake = Lake.from_settings(load_settings())
    topic = env.topic("usage.events")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", "--quiet", "--no-silver"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for round_ in (1, 2):  # at start, and once the consumer sits at the end of its partitions
            produce(kafka, topic, usage_values(10, start=round_ * 10), partitions=4)
            started = time.monotonic()
            while time.monotonic() - started < 60 and proc.poll() is None:
                if lake.exists("bronze/usage.events") and lake.dataset("bronze/usage.events").count_rows() == 10 * round_:
                    break
                time.sleep(0.1)
            # with flush_seconds = 120 the old source held these records for two minutes
            assert lake.exists("bronze/usage.events") and lake.dataset("bronze/usage.events").count_rows() == 10 * round_, \
                f"round {round_}: not landed within 60 s; {proc.stderr.read() if proc.poll() is not None else ''}"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0

"""Fulfilment inside `telcolake up`: orders produced to the topic complete with no command run by hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import polars as pl
import pytest

from pipelines.core import broker
from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.oss import OrderSimConfig, simulate_orders
from pipelines.oss.config import fulfilment_config, responder_config
from pipelines.oss.drive import produce_orders
from pipelines.oss.tables import ORDERS
from tests.integration.oss.conftest import read_topic

NO_FAULTS = "\n".join(f"{k} = 0.0" for k in ("permanent_rate", "retryable_rate", "exhausted_rate", "slow_rate", "timeout_rate",
                                             "lost_rate", "duplicate_rate", "stale_rate"))


def _configure() -> None:
    """up runs only fulfilment and the simulated targets, no scheduler; targets answer without faults, quickly."""
    path = os.environ["TELCOLAKE_CONFIG"]
    text = open(path).read()
    text = text[: text.index("[service]")] + text[text.index("[sharing]"):]
    text = text[: text.index("[fulfilment.responders]")] + text[text.index("[ingest]"):]
    text = text.replace("commit_interval_s = 1.0", "commit_interval_s = 0.2").replace("tick_interval_s = 1.0", "tick_interval_s = 0.2")
    text += f"\n[fulfilment.responders]\nrealtime = true\n{NO_FAULTS}\n"
    text += "\n[fulfilment.responders.latency_ms]\nsim = 10\nhss = 10\npcrf = 10\nott = 10\n"
    text += '\n[service]\ncomponents = ["fulfilment", "responders"]\nscheduler = false\nstatus_interval_s = 1.0\n'
    open(path, "w").write(text)


@pytest.mark.slow
def test_up_runs_the_orchestrator_and_the_targets_until_every_order_completes(env, kafka):
    _configure()
    s = load_settings()
    sim = simulate_orders(OrderSimConfig(orders=40, seed=5, start=datetime.now(UTC), per_second=200.0),
                          fulfilment_config(s), responder_config(s))
    port = broker.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "up", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lake = Lake.from_settings(s)
    try:
        produce_orders(s, sim.records)
        placed = {v["order_id"] for _, v, _ in read_topic(kafka, s.topic("orders.events")) if v.get("order_id") and "items" in v}
        assert placed, "the simulator produced no orders"
        deadline, ended = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            if lake.exists(ORDERS):
                orders = pl.from_arrow(lake.read(ORDERS, columns=["order_id", "state"]))
                ended = orders.filter(pl.col("order_id").is_in(list(placed)) & pl.col("state").is_in(["completed", "cancelled"]))
                if ended.height == len(placed):
                    break
            time.sleep(0.5)
        assert ended is not None and ended.height == len(placed), f"{0 if ended is None else ended.height} of {len(placed)} ended"
        bss = [v for _, v, _ in read_topic(kafka, s.topic("bss.events")) if (v.get("attributes") or {}).get("order_id") in placed]
        assert bss, "no lifecycle event went back to the BSS"
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert time.monotonic() - started < 30

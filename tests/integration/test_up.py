"""`telcolake up` as a real process: endpoints, SIGTERM, kill -9 and restart, a crashed component."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from pipelines.core import broker
from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from tests.helpers import WebhookReceiver, all_offsets, produce, usage_values

TINY_JOBS = """
[jobs.ingest]
cron = "* * * * *"
command = ["ingest", "--until-caught-up", "--json"]
under_up = false

[jobs.tick]
cron = "* * * * * */2"
exec = ["{py}", "-c", "print(1)"]
retries = 0
"""


def _configure(env, *, jobs: str | None = TINY_JOBS, flush_rows: int | None = None, scheduler: bool = True,
               extra: str = "") -> None:
    """Keep the env fixture's topics; replace the shipped jobs by tiny ones; small batches if asked."""
    path = os.environ["TELCOLAKE_CONFIG"]
    text = open(path).read()
    text = text[: text.index("[service]")] + text[text.index("[sharing]"):]
    if flush_rows:
        text = text.replace("flush_rows = 200000", f"flush_rows = {flush_rows}")
    text += f"\n[service]\nscheduler = {'true' if scheduler else 'false'}\nstatus_interval_s = 1.0\nsilver_interval_s = 0.5\n"
    text += "restart_backoff_s = 0.5\n"
    text += extra
    if jobs:
        text += jobs.format(py=sys.executable)
    open(path, "w").write(text)


def _start(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "up", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"up exited with {proc.returncode} while waiting for {what}: {proc.stderr.read()[-3000:]}")
        try:
            last = predicate()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def _coords(lake: Lake) -> list[tuple[int, int]]:
    if not lake.exists("bronze/usage.events"):
        return []
    t = lake.read("bronze/usage.events", columns=["_kafka_partition", "_kafka_offset"])
    return list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))


def _sigterm(proc: subprocess.Popen) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return time.monotonic() - started


@pytest.mark.slow
def test_up_serves_endpoints_runs_jobs_refreshes_silver_and_stops_on_sigterm(env, kafka):
    _configure(env)
    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(3000) + usage_values(50), partitions=4)  # 50 repeats
    port = broker.free_port()
    proc = _start(port)
    try:
        assert _wait(lambda: _get(port, "/health")[0] == 200, 30, "/health", proc)
        code, body = _wait(lambda: (r := _get(port, "/ready"))[0] == 200 and r, 90, "/ready", proc)
        assert body == {"ready": True, "reasons": []}
        lake = Lake.from_settings(load_settings())

        def caught_up_status():
            _, st = _get(port, "/api/status")
            usage = next(t for t in st.get("topics", []) if t["topic"] == topic)
            silver = next((t for t in st.get("tables", []) if t["table"] == "silver/usage"), None)
            ran = [j for j in st.get("jobs", []) if j["job"] == "tick" and j["status"] == "ok"]
            done = all(p["lag"] == 0 for p in usage["partitions"]) and silver and silver["rows"] == 3000 and ran
            return st if done else None

        st = _wait(caught_up_status, 60, "lag 0, silver refreshed and a job run in /api/status", proc)
        assert {n: c["state"] for n, c in st["components"].items()} == {"ingest": "running", "silver": "running", "streams": "running", "fulfilment": "running"}
        assert all(c["restarts"] == 0 for c in st["components"].values())
        assert st["broker"]["reachable"] and not st["errors"]
        assert "ingest" not in {j["job"] for j in st["jobs"]}, "the scheduler inside up ran the ingest job"
        assert lake.dataset("silver/usage").count_rows() == 3000 and lake.dataset("silver/usage_duplicates").count_rows() == 50
        # more records while it runs: silver follows within seconds, without any command
        produce(kafka, topic, usage_values(1000, start=3000), partitions=4)
        _wait(lambda: lake.dataset("silver/usage").count_rows() == 4000, 30, "silver to follow a new batch", proc)
    finally:
        took = _sigterm(proc)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert took < 30


@pytest.mark.slow
def test_kill_nine_mid_ingest_then_restart_loses_and_duplicates_nothing(env, kafka):
    _configure(env, jobs=None, flush_rows=10_000, scheduler=False)
    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(150_000), partitions=4)
    lake = Lake.from_settings(load_settings())
    port = broker.free_port()
    proc = _start(port)
    _wait(lambda: 0 < len(_coords(lake)) < 150_000, 90, "a first bronze commit", proc)
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    landed_at_kill = len(_coords(lake))
    assert landed_at_kill < 150_000, "ingest finished before the kill; nothing was tested"
    _wait(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in children),
          15, "the components to die with the service")
    proc = _start(port)
    try:
        _wait(lambda: len(_coords(lake)) >= 150_000, 120, "everything to land after the restart", proc)
        _wait(lambda: lake.exists("silver/usage") and lake.dataset("silver/usage").count_rows() == 150_000, 60, "silver", proc)
    finally:
        _sigterm(proc)
    assert proc.returncode == 0
    coords = _coords(lake)
    assert len(coords) == len(set(coords)), "a record landed twice"
    assert set(coords) == all_offsets(kafka, topic), "a record is missing"


@pytest.mark.slow
def test_a_crashed_component_is_restarted_with_backoff_and_reported(env, kafka):
    hook = WebhookReceiver()
    _configure(env, jobs=None, scheduler=False, extra=f'[notify]\nwebhook_url = "{hook.url}"\nbackoff_s = 0.2\n')
    port = broker.free_port()
    proc = _start(port)
    try:
        _wait(lambda: _get(port, "/ready")[0] == 200, 90, "/ready", proc)
        _, st = _get(port, "/api/status")
        victim = st["components"]["streams"]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted():
            _, s = _get(port, "/api/status")
            c = s["components"]["streams"]
            return s if c["restarts"] == 1 and c["state"] == "running" and c["pid"] not in (None, victim) else None

        st = _wait(restarted, 30, "the streams component to be restarted", proc)
        assert "exit code -9" in st["components"]["streams"]["last_error"]
        assert _wait(lambda: _get(port, "/ready")[0] == 200, 60, "/ready again", proc)
        # the restart went out as a notification, and /metrics and the page show it
        sent = hook.wait_for(1, timeout=30)
        assert sent[0]["kind"] == "component_restart" and sent[0]["details"] == {"component": "streams", "exit_code": -9}
        assert sent[0]["link"] == f"http://127.0.0.1:{port}/#components"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'telcolake_component_restarts_total{component="streams"} 1.0' in metrics
        assert 'telcolake_notify_deliveries_total{kind="component_restart",result="delivered"} 1.0' in metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html") and "exit code -9" in page
    finally:
        _sigterm(proc)
        hook.close()
    assert proc.returncode == 0
    log = (load_settings().state_dir / "up" / "up.log").read_text()
    assert "component streams exited with code -9" in log and "restart 1 in" in log

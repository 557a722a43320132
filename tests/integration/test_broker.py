"""The embedded broker: start, status, stop through the CLI, with its own state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines.core import broker
from pipelines.core.config import load_settings
from pipelines.core.errors import BrokerError, ConfigError


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def isolated_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELCOLAKE_")}
    env["TELCOLAKE_STATE_DIR"] = str(tmp_path / "state")
    env["TELCOLAKE_LAKE"] = str(tmp_path / "lake")
    return env


def test_start_twice_status_stop(isolated_env, tmp_path):
    first = cli("broker", "start", env=isolated_env)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / "state" / "broker.json").read_text())
    pid = state["pid"]
    second = cli("broker", "start", env=isolated_env)
    assert "already running" in second.stdout and str(pid) in second.stdout
    status = cli("broker", "status", env=isolated_env)
    assert status.returncode == 0 and state["address"] in status.stdout and "usage.events" in status.stdout
    stop = cli("broker", "stop", env=isolated_env)
    assert stop.returncode == 0 and str(pid) in stop.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "state" / "broker.json").exists()
    assert "no embedded broker" in cli("broker", "stop", env=isolated_env).stdout


def test_two_state_dirs_get_two_brokers(tmp_path):
    a = broker.start_embedded(tmp_path / "a")
    b = broker.start_embedded(tmp_path / "b")
    try:
        assert a.address != b.address and a.pid != b.pid
    finally:
        broker.stop_embedded(tmp_path / "a")
        broker.stop_embedded(tmp_path / "b")


def test_taken_port_and_missing_broker_give_clear_errors(tmp_path, kafka, monkeypatch):
    port = int(kafka.rsplit(":", 1)[1])
    with pytest.raises(BrokerError, match=f"port {port}.*taken"):
        broker.start_embedded(tmp_path / "x", port=port)
    monkeypatch.delenv("TELCOLAKE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("TELCOLAKE_STATE_DIR", str(tmp_path / "nothing"))
    with pytest.raises(BrokerError, match="telcolake broker start"):
        broker.resolve_bootstrap(load_settings())
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-binary"))
    with pytest.raises(BrokerError, match="binary is missing"):
        broker.broker_binary()


def test_status_end_offsets_are_true_despite_low_watermark(env, kafka):
    from tests.helpers import produce, usage_values

    topic = env.topic("usage.events")
    start = 0
    for size in (10, 1, 1, 1, 5):
        produce(kafka, topic, usage_values(size, start), partitions=None)
        start += size
    assert sum(broker.end_offsets(kafka, topic).values()) == 18


def test_external_bootstrap_starts_nothing(isolated_env, kafka, tmp_path):
    isolated_env["TELCOLAKE_KAFKA_BOOTSTRAP"] = kafka
    out = cli("broker", "start", env=isolated_env)
    assert out.returncode == 0 and "nothing started" in out.stdout
    assert not (tmp_path / "state" / "broker.json").exists()


def test_bad_config_value_is_one_clear_line(tmp_path, monkeypatch, isolated_env):
    bad = tmp_path / "bad.toml"
    bad.write_text('[ingest]\nflush_rows = "many"\n')
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=r"ingest.flush_rows = 'many': expected an integer"):
        load_settings()
    isolated_env["TELCOLAKE_CONFIG"] = str(bad)
    out = cli("status", env=isolated_env)
    assert out.returncode == 2 and "ingest.flush_rows" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    bad.write_text("[topics]\n\"usage.events\" = 0\n")
    with pytest.raises(ConfigError, match="topics.usage.events = 0"):
        load_settings()

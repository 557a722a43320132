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


def test_status_says_when_the_lake_is_ahead_of_the_topic(env, kafka, tmp_path):
    """After the in-memory broker restarted, the lake has read past the topics' end: status says so, not lag 0."""
    from pipelines.core.lake import Lake
    from pipelines.ingest import run_ingest
    from tests.helpers import produce, usage_values

    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(400), partitions=4)
    run_ingest(env, until_caught_up=True, topics=["usage.events"])
    assert Lake.from_settings(env).read("bronze/usage.events").num_rows == 400
    restarted = broker.start_embedded(tmp_path / "restarted")
    try:
        broker.ensure_topics(restarted.address, env.topics)
        produce(restarted.address, topic, usage_values(8, start=9000), partitions=4)
        moved = {**os.environ, "TELCOLAKE_KAFKA_BOOTSTRAP": restarted.address}
        out = cli("status", "--json", env=moved)
        assert out.returncode == 0, out.stderr[-2000:]
        usage = next(t for t in json.loads(out.stdout)["topics"] if t["topic"] == topic)
        assert [(p["state"], p["ahead"], p["lag"]) for p in usage["partitions"]] == [("lake ahead of topic", 98, None)] * 4
        text = cli("status", env={**moved, "COLUMNS": "200"})
        assert text.returncode == 0 and "lake ahead of topic by 98" in text.stdout, text.stdout
        same = cli("status", "--json", env=os.environ.copy())  # the original broker still has every record
        assert {p["state"] for t in json.loads(same.stdout)["topics"] if t["topic"] == topic for p in t["partitions"]} == {"caught up"}
    finally:
        broker.stop_embedded(tmp_path / "restarted")


@pytest.mark.slow  # each command waits out the 10 s metadata timeout
def test_an_unreachable_broker_is_one_line_naming_bootstrap_and_timeout(isolated_env):
    closed = f"127.0.0.1:{broker.free_port()}"  # nothing listens there
    isolated_env["TELCOLAKE_KAFKA_BOOTSTRAP"] = closed
    commands = [["ingest", "--until-caught-up"], ["stream", "--until-caught-up"], ["simulate", "--subscribers", "20", "--days", "1"]]
    procs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=isolated_env) for c in commands]
    for command, p in zip(commands, procs, strict=True):
        _out, err = p.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert p.returncode == 1 and len(lines) == 1, f"{command}: exit {p.returncode}\n{err[-2000:]}"
        assert closed in lines[0] and f"within {broker.METADATA_TIMEOUT_S:g} s" in lines[0], lines[0]
    status = cli("status", "--json", env=isolated_env)  # status still reports the lake, and why the broker is missing
    assert status.returncode == 0, status.stderr[-2000:]
    info = json.loads(status.stdout)["broker"]
    assert info["running"] is False and closed in info["error"]

"""The embedded broker's storage: what survives a broker restart (S3, on moto's server) and what does not (memory)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest

from pipelines.core import broker
from pipelines.core.config import load_settings
from pipelines.core.errors import ConfigError
from tests.helpers import all_offsets, produce, usage_values


def _restart_keeps(state_dir, storage) -> tuple[int, int]:
    """Produce 2,000 records, stop and start the broker, count what is still there."""
    state = broker.start_embedded(state_dir, storage=storage)
    try:
        broker.ensure_topics(state.address, {"kept": 2})
        produce(state.address, "kept", usage_values(2000), partitions=2)
        before = len(all_offsets(state.address, "kept"))
        broker.stop_embedded(state_dir)
        assert broker.read_state(state_dir) is None
        state = broker.start_embedded(state_dir, storage=storage, port=state.port)
        meta = broker.ensure_topics(state.address, {"kept": 2})
        after = len(all_offsets(state.address, "kept")) if meta else 0
        return before, after
    finally:
        broker.stop_embedded(state_dir)


def test_memory_storage_loses_records_on_a_restart(tmp_path):
    before, after = _restart_keeps(tmp_path / "state", broker.BrokerStorage("memory", "memory://tansu/", {}))
    assert before == 2000 and after == 0


def test_storage_setting_is_validated(local_settings, monkeypatch):
    def with_storage(value):
        return dataclasses.replace(local_settings, raw={**local_settings.raw, "broker": {"storage": value}})

    assert broker.storage_of(local_settings).kind == "memory"  # the default
    assert broker.storage_of(with_storage("s3://topics")).url == "s3://topics/"
    with pytest.raises(ConfigError, match="broker.storage = 'disk'"):
        broker.storage_of(with_storage("disk"))
    monkeypatch.setenv("TELCOLAKE_BROKER_STORAGE", "s3://other/")
    assert broker.storage_of(local_settings).url == "s3://other/"


@pytest.fixture
def moto(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    port = broker.free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    deadline = time.monotonic() + 20
    while True:
        try:
            client.create_bucket(Bucket="topics")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(k, v)
    yield client
    proc.kill()
    proc.wait()


def test_s3_storage_keeps_records_across_a_restart(moto, local_settings, tmp_path):
    settings = dataclasses.replace(local_settings, raw={**local_settings.raw, "broker": {"storage": "s3://topics/"}})
    storage = broker.storage_of(settings)
    assert storage.kind == "s3" and storage.env["AWS_ENDPOINT"].startswith("http://127.0.0.1:")
    before, after = _restart_keeps(tmp_path / "state", storage)
    assert before == after == 2000
    keys = [o["Key"] for o in moto.list_objects_v2(Bucket="topics").get("Contents", [])]
    assert any("/topics/kept/partitions/" in k for k in keys), keys[:5]


def test_broker_start_uses_the_configured_storage(moto, tmp_path, monkeypatch):
    monkeypatch.setenv("TELCOLAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TELCOLAKE_BROKER_STORAGE", "s3://topics/")
    monkeypatch.delenv("TELCOLAKE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TELCOLAKE_CONFIG", raising=False)
    settings = load_settings()
    try:
        bootstrap = broker.ensure_broker(settings)
        state = broker.read_state(settings.state_dir)
        assert state.address == bootstrap and state.storage == "s3://topics/"
    finally:
        broker.stop_embedded(settings.state_dir)
    assert broker.read_state(settings.state_dir) is None

"""Scale-out parts: Delta on an S3-compatible store, a Bytewax cluster of processes, external Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import polars as pl
import pytest

from pipelines.core import broker
from pipelines.core.config import load_settings
from pipelines.core.duck import connect, query
from pipelines.core.lake import Lake
from pipelines.ingest import run_ingest
from pipelines.ingest.silver import refresh
from tests.helpers import all_offsets, produce, usage_values


@pytest.fixture
def s3_lake(env, monkeypatch, tmp_path):
    """A moto S3 server on a free loopback port, and the lake pointed at a bucket on it."""
    boto3 = pytest.importorskip("boto3")
    port = broker.free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    deadline = time.monotonic() + 20
    while True:
        try:
            client.create_bucket(Bucket="telco")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for k, v in {**creds, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "TELCOLAKE_LAKE": "s3://telco/lake"}.items():
        monkeypatch.setenv(k, v)
    yield load_settings()
    proc.kill()
    proc.wait()


def test_ingest_and_silver_on_object_storage_read_back_by_duckdb_and_polars(s3_lake, kafka):
    settings = s3_lake
    topic = settings.topic("usage.events")
    produce(kafka, topic, usage_values(3000) + usage_values(100), partitions=4)  # 100 repeats
    stats = run_ingest(settings, until_caught_up=True, topics=["usage.events"])
    assert stats.rows["usage.events"] == 3100
    usage = refresh(settings)[0]
    assert (usage.new_rows, usage.duplicates) == (3000, 100)
    lake = Lake.from_settings(settings)
    assert lake.root.startswith("s3://") and "bronze/usage.events" in lake.list_tables()
    con = connect(lake, {"silver_usage": "silver/usage"})
    assert query(con, "select count(distinct record_id) as n from silver_usage")["n"][0].as_py() == 3000
    frame = pl.read_delta(lake.uri("bronze/usage.events"), storage_options=dict(lake.storage_options))
    assert frame.height == 3100
    # exactly once on S3 too: a second run lands nothing
    assert run_ingest(settings, until_caught_up=True, topics=["usage.events"]).rows.get("usage.events", 0) == 0


def test_two_ingests_and_two_silvers_at_once_on_object_storage_write_nothing_twice(s3_lake, kafka):
    """No lock file: the commit checks work on S3 (conditional put) as on a local disk."""
    settings = s3_lake
    path = os.environ["TELCOLAKE_CONFIG"]
    text = open(path).read().replace("flush_rows = 200000", "flush_rows = 1000")
    open(path, "w").write(text)
    topic = settings.topic("usage.events")
    produce(kafka, topic, usage_values(8000) + usage_values(400), partitions=4)  # 400 mediation repeats

    def two(*args: str) -> list[subprocess.CompletedProcess]:
        procs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        done = [subprocess.CompletedProcess(p.args, p.wait(300), *p.communicate()) for p in procs]
        for d in done:
            assert d.returncode == 0, d.stderr[-2000:]
        return done

    two("ingest", "--until-caught-up", "--no-silver", "--quiet")
    lake = Lake.from_settings(load_settings())
    t = lake.read("bronze/usage.events", columns=["_kafka_partition", "_kafka_offset"])
    coords = list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))
    assert len(coords) == len(set(coords)) == 8400
    assert set(coords) == all_offsets(kafka, topic)
    two("silver", "--json")
    ids = lake.read("silver/usage", columns=["record_id"])["record_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 8000
    assert lake.read("silver/usage_duplicates").num_rows == 400


@pytest.mark.slow
def test_cluster_of_two_processes_lands_exactly_once(env, kafka):
    topic = env.topic("usage.events")
    produce(kafka, topic, usage_values(20_000), partitions=4)
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--until-caught-up", "--processes", "2", "--workers", "2", "--json", "--no-silver"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["processes"] == 2
    lake = Lake.from_settings(load_settings())
    t = lake.read("bronze/usage.events", columns=["_kafka_partition", "_kafka_offset", "record_id"])
    coords = list(zip(t["_kafka_partition"].to_pylist(), t["_kafka_offset"].to_pylist(), strict=True))
    assert len(coords) == len(set(coords)) == 20_000
    assert set(coords) == all_offsets(kafka, topic)
    assert sorted(t["record_id"].to_pylist()) == [f"R{i:09d}" for i in range(20_000)]


def test_external_kafka_starts_nothing_and_keeps_existing_partitions(tmp_path, monkeypatch):
    """A broker process started outside telcolake is the 'external' cluster."""
    port = broker.free_port()
    address = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [broker.broker_binary(), "broker", "--listener-url", f"tcp://{address}", "--advertised-listener-url", f"tcp://{address}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        broker.wait_ready(address)
        broker.ensure_topics(address, {"usage.events": 3})  # created by someone else, 3 partitions
        monkeypatch.setenv("TELCOLAKE_KAFKA_BOOTSTRAP", address)
        monkeypatch.setenv("TELCOLAKE_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("TELCOLAKE_LAKE", str(tmp_path / "lake"))
        monkeypatch.delenv("TELCOLAKE_CONFIG", raising=False)
        settings = load_settings()
        assert broker.ensure_broker(settings) == address
        have = broker.ensure_topics(address, settings.topics)
        assert have["usage.events"] == 3 and have["network.events"] == 2
        assert not (tmp_path / "state" / "broker.json").exists()
        produce(address, "usage.events", usage_values(900), partitions=3)
        run_ingest(settings, until_caught_up=True, topics=["usage.events"])
        assert Lake.from_settings(settings).read("bronze/usage.events").num_rows == 900
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_bill_run_and_publish_on_object_storage(s3_lake, kafka, tmp_path, monkeypatch):
    from pipelines.billing.reference import load_catalog
    from pipelines.billing.run import bill_run
    from pipelines.core.contracts import CONTRACTS
    from pipelines.sharing.publish import publish
    from pipelines.sharing.registry import init_secrets
    from pipelines.simulate import SimConfig, simulate
    from pipelines.simulate import produce as produce_sim

    settings = s3_lake
    monkeypatch.setenv("TELCOLAKE_SECRETS_FILE", str(tmp_path / "secrets.toml"))
    result = simulate(SimConfig.from_settings(settings, subscribers=120, days=2))
    produce_sim(result, kafka, {t: settings.topic(t) for t in CONTRACTS})
    run_ingest(settings, until_caught_up=True)
    refresh(settings)
    load_catalog(settings, None)
    billed = bill_run(settings, SimConfig.from_settings(settings).start.strftime("%Y-%m"), early=True)
    lake = Lake.from_settings(settings)
    con = connect(lake, {"invoices": "gold/billing/invoices", "usage": "silver/usage"})
    assert billed.invoices == query(con, "select count(*) as n from invoices")["n"][0].as_py() > 0
    assert billed.rated + billed.unrated == query(con, "select count(*) as n from usage")["n"][0].as_py()
    init_secrets(settings)
    results = publish(settings)
    assert results and not any(r.failures for r in results)
    shares = [t for t in lake.list_tables() if t.startswith("shares/")]
    assert shares and all(lake.dataset(t).count_rows() >= 0 for t in shares)
    assert pl.read_delta(lake.uri("gold/billing/invoices"), storage_options=dict(lake.storage_options)).height == billed.invoices

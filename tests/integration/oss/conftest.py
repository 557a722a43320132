"""Fixtures for the fulfilment tests: a tuned config, orders whose planted fate is known, topic readers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import polars as pl
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipelines.core import broker
from pipelines.core.config import Settings, load_settings
from pipelines.oss.config import fulfilment_config, responder_config
from pipelines.oss.responders import fates
from tests.integration.streams.conftest import configure

ENC = msgspec.json.Encoder()
T0 = datetime(2026, 10, 8, 9, 0, tzinfo=UTC)
RATES = {"permanent_rate": 0.1, "retryable_rate": 0.1, "exhausted_rate": 0.05, "slow_rate": 0.05, "timeout_rate": 0.05,
         "lost_rate": 0.05, "duplicate_rate": 0.2, "stale_rate": 0.2}


def tuned(**fulfilment) -> Settings:
    """The test's config with fault rates high enough to plant every case, and quick commits."""
    return configure(**{"fulfilment": {"commit_interval_s": 0.2, **fulfilment}, "fulfilment.responders": dict(RATES)})


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def line(n: int, *, ott: bool = False) -> list[dict]:
    items = [{"item_id": "1", "action": "add", "product": "mobile_line", "plan_id": "plus", "msisdn": f"4915170{n:05d}",
              "imsi": f"2620170{n:08d}", "country": "DE", "currency": "EUR", "segment": "consumer"}]
    if ott:
        items.append({"item_id": "2", "action": "add", "product": "ott_bundle", "ott_partner_id": "ott-musicbox"})
    return items


def order(order_id: str, items: list[dict], at: datetime, *, sub: str = "SUB7000001", channel: str = "web") -> tuple[bytes, bytes]:
    return order_id.encode(), ENC.encode({"event_id": f"E-{order_id}", "order_id": order_id, "kind": "order", "requested_at": iso(at),
                                          "account_id": "ACC7000001", "subscriber_id": sub, "channel": channel, "items": items})


def cancel(order_id: str, at: datetime) -> tuple[bytes, bytes]:
    return order_id.encode(), ENC.encode({"event_id": f"C-{order_id}", "order_id": order_id, "kind": "cancel", "requested_at": iso(at)})


def pick(settings: Settings, prefix: str, fate: str, steps: int, *, fault_seq: int | None = None, retries: int | None = None) -> str:
    """An order id (``prefix-<n>``) whose planted fate for a ``steps``-step order is ``fate`` (at ``fault_seq``)."""
    ids = pl.DataFrame({"order_id": [f"{prefix}-{n}" for n in range(20_000)], "step_count": [steps] * 20_000})
    f = fates(ids, responder_config(settings), fulfilment_config(settings).max_attempts).filter(pl.col("fate") == fate)
    if fault_seq is not None:
        f = f.filter(pl.col("fault_seq") == fault_seq)
    if retries is not None:
        f = f.filter(pl.col("retries") == retries)
    return f["order_id"][0]


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict, int]]:
    """Every (key, decoded value, Kafka timestamp ms) on ``topic``, partition by partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "oss-test", "enable.partition.eof": True, "log_level": 2})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out, eof = [], set()
    deadline = time.monotonic() + 60
    while len(eof) < len(meta.partitions) and time.monotonic() < deadline:
        for m in consumer.consume(10_000, timeout=0.2):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            out.append((m.key(), msgspec.json.decode(m.value()), m.timestamp()[1]))
    consumer.close()
    return out


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory, kafka: str):
    """Like ``env`` (its own lake, state dir and uuid-suffixed topics, the session broker), for a whole module."""
    tmp = tmp_path_factory.mktemp("oss")
    suffix = uuid.uuid4().hex[:8]
    text = (Path(__file__).resolve().parents[3] / "telcolake.toml").read_text()
    for name, n in load_settings().topics.items():
        text = text.replace(f'"{name}" = {n}', f'"{name}.{suffix}" = {n}')
    (tmp / "telcolake.toml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TELCOLAKE_CONFIG", str(tmp / "telcolake.toml"))
        mp.setenv("TELCOLAKE_LAKE", str(tmp / "lake"))
        mp.setenv("TELCOLAKE_STATE_DIR", str(tmp / "state"))
        mp.setenv("TELCOLAKE_KAFKA_BOOTSTRAP", kafka)
        settings = load_settings()
        broker.ensure_topics(kafka, settings.topics)
        yield settings

"""Recovery from the compacted topic: ``gold/oss/orders`` rebuilt from ``orders.state`` read from offset 0.

Every change of an order is also a message on ``orders.state`` keyed by ``order_id`` whose
value is the whole row; the last message of a key is the order's current state (what log
compaction keeps). Reading the topic from the start and keeping the last value per key gives
the table back. The embedded broker accepts ``cleanup.policy=compact`` but does not compact,
so the read also sees the superseded values; the result is the same.
"""

from __future__ import annotations

import io

import polars as pl
import pyarrow as pa
import pyarrow.json as pj
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipelines.core.broker import client_config
from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.oss.tables import ORDER_SCHEMA, ORDERS, STATE_TOPIC, TS


def read_state_topic(settings: Settings) -> pa.Table:
    """The last value per key of ``orders.state`` (read to partition EOF), as ``gold/oss/orders`` rows."""
    topic = settings.topic(STATE_TOPIC)
    consumer = Consumer({**client_config(settings), "group.id": "telcolake-orders-replay", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    last: dict[bytes, bytes] = {}
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        eof: set[int] = set()
        while len(eof) < len(meta.partitions):
            for m in consumer.consume(20_000, timeout=0.2):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                if m.value() is None:
                    last.pop(m.key(), None)  # a tombstone deletes the key
                else:
                    last[m.key()] = m.value()
    finally:
        consumer.close()
    if not last:
        return ORDER_SCHEMA.empty_table()
    wire = pa.schema([pa.field(f.name, pa.string()) if f.type == TS else f for f in ORDER_SCHEMA])
    table = pj.read_json(io.BytesIO(b"\n".join(last.values())), parse_options=pj.ParseOptions(explicit_schema=wire,
                                                                                              unexpected_field_behavior="ignore"))
    typed = {f.name: (pa.compute.cast(table[f.name], TS) if f.type == TS else table[f.name]) for f in ORDER_SCHEMA}
    return pa.table(typed, schema=ORDER_SCHEMA)


def rebuild_orders(settings: Settings, *, table: str = ORDERS) -> int:
    """Overwrite ``table`` with the orders read back from ``orders.state``; returns the row count."""
    rows = read_state_topic(settings)
    rows = pl.from_arrow(rows).sort("order_id").to_arrow()
    Lake.from_settings(settings).write(table, rows, mode="overwrite", schema_mode="overwrite")
    return rows.num_rows

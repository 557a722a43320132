"""The orchestrator's shards, the simulated targets and the clock wired in memory, without Kafka or Delta.

The same :class:`~pipelines.oss.saga.SagaLogic` and :func:`~pipelines.oss.responders.answer`
as the real flow, messages decoded with the real contracts: tests use it to check the saga
case by case and the vectorised paths against the reference machine; the bench uses it to
measure the saga's own cost per order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.core.contracts import CLOCK, COMMANDS, ORDERS, RESULTS, decode_batch
from pipelines.oss.config import FulfilmentConfig, ResponderConfig
from pipelines.oss.responders import Ledger, answer
from pipelines.oss.saga import SagaLogic
from pipelines.oss.tables import OUTPUTS
from pipelines.streams.state import QUARANTINE_KEYS, shard_of

SOURCES = {ORDERS.topic: ("orders", ORDERS), RESULTS.topic: ("results", RESULTS), CLOCK.topic: ("clock", CLOCK)}
KEYS = {**{name: out.keys for name, out in OUTPUTS.items()}, "quarantine": QUARANTINE_KEYS}


class InMemory:
    """Feed records topic by topic; the outputs collect per topic and per table (last row per key wins)."""

    def __init__(self, fcfg: FulfilmentConfig, rcfg: ResponderConfig, *, shards: int = 1, fast: bool = True) -> None:
        self.fcfg, self.rcfg, self.shards = fcfg, rcfg, shards
        self.logics = [SagaLogic(fcfg, fast=fast) for _ in range(shards)]
        self.ledger = Ledger()
        self.offsets: dict[str, int] = {}
        self.topics: dict[str, list[tuple[bytes, bytes]]] = {}
        self.rows: dict[str, list[pa.Table]] = {}
        self.counts: dict[str, int] = {}
        self.ticks = 0
        self.processed_at = datetime(2030, 1, 1)

    def feed(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
        """Decode ``records`` of a fulfilment input topic and apply them, shard by shard."""
        if not records:
            return
        source, contract = SOURCES[topic]
        base = self.offsets.get(topic, 0)
        self.offsets[topic] = base + len(records)
        self.topics.setdefault(topic, []).extend(records)
        decoded = decode_batch(contract, [v for _, v in records], now=datetime(2100, 1, 1, tzinfo=UTC))
        idx = decoded.index.to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = pl.Series("_kafka_offset", base + idx, pl.Int64)
        # the log-append time of a record is a function of its offset, as it is for a record re-read from Kafka
        stamps = (pl.lit(self.processed_at) + pl.duration(milliseconds=pl.col("_kafka_offset"))).dt.cast_time_unit("us")
        df = pl.from_arrow(decoded.table).with_columns(pl.lit(0, pl.Int32).alias("_kafka_partition"), offsets)
        df = df.with_columns(stamps.dt.replace_time_zone("UTC").alias("_kafka_timestamp"))
        self.counts[f"rejected_{source}"] = self.counts.get(f"rejected_{source}", 0) + len(decoded.rejects)
        if source == "clock":
            parts = [df] * self.shards
        else:
            shard = shard_of(df["order_id"].to_arrow(), self.shards) if df.height else np.zeros(0, np.int32)
            parts = [df.filter(pl.Series(shard == s)) for s in range(self.shards)]
        for logic, part in zip(self.logics, parts, strict=True):
            out = logic.process(source, part)
            for name, table in out.rows.items():
                self.rows.setdefault(name, []).append(table)
            for t, msgs in out.messages.items():
                self.topics.setdefault(t, []).extend(msgs)
            for k, v in out.counts.items():
                self.counts[k] = self.counts.get(k, 0) + v

    def tick(self, at: datetime) -> None:
        self.ticks += 1
        value = f'{{"tick_id":"T{self.ticks}","tick_at":"{at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"}}'.encode()
        self.feed(CLOCK.topic, [(None, value)])

    def gauges(self) -> dict[str, int]:
        g = [logic.gauges() for logic in self.logics]
        timers = [x["next_timer_us"] for x in g if x["next_timer_us"]]
        return {"in_flight": sum(x["in_flight"] for x in g), "held": sum(x["held"] for x in g), "next_timer_us": min(timers, default=0)}

    def respond(self, *, drop: set[str] | None = None) -> int:
        """Answer the commands not answered yet; returns how many results were fed back."""
        sent = self.topics.get(COMMANDS.topic, [])
        done = self.offsets.get("_answered", 0)
        fresh = sent[done:]
        self.offsets["_answered"] = len(sent)
        if not fresh:
            return 0
        decoded = decode_batch(COMMANDS, [v for _, v in fresh], now=datetime(2100, 1, 1, tzinfo=UTC))
        cmds = pl.from_arrow(decoded.table)
        if drop:
            cmds = cmds.filter(~pl.col("command_id").is_in(list(drop)))
        out, _delays, counts = answer(cmds, self.ledger, self.rcfg, self.fcfg)
        for k, v in counts.items():
            self.counts[f"responders_{k}"] = self.counts.get(f"responders_{k}", 0) + v
        self.feed(RESULTS.topic, out)
        return len(out)

    def run(self, records: list[tuple[bytes, bytes]], *, max_steps: int = 100_000) -> None:
        """Feed orders, then answer and tick (to the next timer + grace) until nothing is in flight."""
        self.feed(ORDERS.topic, records)
        for _ in range(max_steps):
            if self.respond():
                continue
            g = self.gauges()
            if not g["in_flight"] or not g["next_timer_us"]:
                return
            due = datetime.fromtimestamp(g["next_timer_us"] / 1e6, UTC) + timedelta(seconds=self.fcfg.grace_s)
            self.tick(due)
        raise RuntimeError(f"orders still in flight after {max_steps} steps")

    def table(self, name: str) -> pl.DataFrame:
        """Table ``name`` as MERGE would leave it: the last row per key."""
        parts = self.rows.get(name, [])
        if not parts:
            return pl.DataFrame()
        frame = pl.from_arrow(pa.concat_tables(parts))
        return frame.unique(subset=list(KEYS[name]), keep="last", maintain_order=True)

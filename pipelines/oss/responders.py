"""The simulated network functions (SIM, HSS, PCRF) and OTT partners: they consume provisioning commands and answer.

They stand in for systems outside telcolake, so they are a plain consumer loop rather than a
Bytewax flow. What they plant is a function of the seed and the order id (:func:`fates`):
latency, retryable and permanent failures, slow and late answers, lost commands; and of the
command id: duplicate answers and stale re-sends of an order's previous answer (out of
order). Like real targets they are idempotent by ``command_id``: a command applied once is
never applied again (a repeat answers ``done`` with ``effect = replayed``), a compensation
undoes its apply once, and an answer already given is given again, unchanged, when the same
command and attempt come back (the orchestrator re-sends after a crash). The ledger of
applied effects is rebuilt from ``provisioning.results`` on start; :class:`ResponderStats`
counts effects per command so a test can show none was applied twice.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import polars as pl
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipelines.core.broker import client_config, resolve_bootstrap
from pipelines.core.config import Settings
from pipelines.core.contracts import COMMANDS, RESULTS, decode_batch
from pipelines.ingest.kafka_source import StopFlag
from pipelines.oss.config import (
    FulfilmentConfig,
    ResponderConfig,
    fulfilment_config,
    responder_config,
)
from pipelines.oss.wire import keyed

FATES = ("ok", "permanent", "retryable", "exhausted", "slow", "timeout", "lost")
ERRORS = {"sim": "imsi_in_use", "hss": "profile_conflict", "pcrf": "policy_rejected", "ott": "partner_rejected"}
_SCALE = float(2**53)


def _unit(values: pl.Expr, seed: int) -> pl.Expr:
    """A uniform number in [0, 1) from a stable hash of ``values`` and ``seed``."""
    return (values.hash(seed) % (2**53)).cast(pl.Float64) / _SCALE


def fates(orders: pl.DataFrame, cfg: ResponderConfig, max_attempts: int) -> pl.DataFrame:
    """The planted fate of each order (columns ``order_id``, ``step_count``).

    Returns:
        ``order_id, fate, fault_seq, retries``: the step (by position) the fault hits and, for
        ``retryable``, how many attempts fail before one succeeds.
    """
    rates = [("permanent", cfg.permanent_rate), ("retryable", cfg.retryable_rate), ("exhausted", cfg.exhausted_rate),
             ("slow", cfg.slow_rate), ("timeout", cfg.timeout_rate), ("lost", cfg.lost_rate)]
    u = _unit(pl.col("order_id"), cfg.seed)
    edge = 0.0
    cases = []
    for name, rate in rates:
        cases.append((edge, edge + rate, name))
        edge += rate
    expr = pl.lit("ok")
    for lo, hi, name in reversed(cases):
        expr = pl.when((u >= lo) & (u < hi)).then(pl.lit(name)).otherwise(expr)
    return orders.select(
        "order_id", expr.alias("fate"),
        (pl.col("order_id").hash(cfg.seed + 1) % pl.col("step_count").cast(pl.UInt64)).cast(pl.Int32).alias("fault_seq"),
        (1 + pl.col("order_id").hash(cfg.seed + 2) % 2).cast(pl.Int32).alias("retries"),
        pl.lit(max_attempts, pl.Int32).alias("max_attempts"),
    )


def decide(cmds: pl.DataFrame, rcfg: ResponderConfig, fcfg: FulfilmentConfig) -> pl.DataFrame:
    """What each command's target answers (before the ledger): ``status, error_code, latency_ms`` (status null: lost)."""
    f = fates(cmds.select("order_id", "step_count").unique("order_id"), rcfg, fcfg.max_attempts)
    j = cmds.join(f, on="order_id", how="left")
    kind = pl.col("target").str.split(":").list.first()
    median = pl.lit(None, pl.Float64)
    timeout = pl.lit(None, pl.Float64)
    error = pl.lit(None, pl.String)
    for k in ERRORS:
        median = pl.when(kind == k).then(pl.lit(rcfg.latency_ms[k])).otherwise(median)
        timeout = pl.when(kind == k).then(pl.lit(fcfg.timeouts[k] * 1000.0)).otherwise(timeout)
        error = pl.when(kind == k).then(pl.lit(ERRORS[k])).otherwise(error)
    here = (pl.col("action") == "apply") & (pl.col("step_seq") == pl.col("fault_seq"))
    first = here & (pl.col("attempt") == 1)
    fate = pl.col("fate")
    u = _unit(pl.concat_str([pl.col("command_id"), pl.col("attempt").cast(pl.String)]), rcfg.seed + 3)
    normal = median * (0.5 + 1.5 * u)
    share = fcfg.sla_share
    status = (
        pl.when(first & (fate == "lost")).then(pl.lit(None, pl.String))
        .when(first & (fate == "permanent")).then(pl.lit("failed"))
        .when(here & (fate == "retryable") & (pl.col("attempt") <= pl.col("retries"))).then(pl.lit("retryable"))
        .when(here & (fate == "exhausted") & (pl.col("attempt") <= pl.col("max_attempts"))).then(pl.lit("retryable"))
        .otherwise(pl.lit("done"))
    )
    code = (
        pl.when(status == "failed").then(error)
        .when(status == "retryable").then(pl.when(fate == "exhausted").then(pl.lit("unavailable")).otherwise(pl.lit("busy")))
        .otherwise(pl.lit(None, pl.String))
    )
    latency = (
        pl.when(first & (fate == "slow")).then(timeout * (share + (1 - share) / 2))
        .when(first & (fate == "timeout")).then(timeout * 1.5)
        .otherwise(normal)
    )
    return j.with_columns(status.alias("status"), code.alias("error_code"), latency.alias("latency_ms"),
                          (_unit(pl.col("command_id"), rcfg.seed + 4) < rcfg.duplicate_rate).alias("_dup"),
                          (_unit(pl.col("command_id"), rcfg.seed + 5) < rcfg.stale_rate).alias("_stale"))


@dataclass
class Ledger:
    """What the targets have applied and answered (rebuilt from ``provisioning.results``)."""

    applied: set[str] = field(default_factory=set)  # apply command ids whose effect exists
    undone: set[str] = field(default_factory=set)  # apply command ids compensated
    answers: dict[tuple[str, int], tuple[bytes, bytes]] = field(default_factory=dict)
    last_done: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # order -> its last apply answer
    effects: Counter = field(default_factory=Counter)  # command id -> effects applied

    def learn(self, results: pl.DataFrame, messages: list[tuple[bytes, bytes]]) -> None:
        for r, msg in zip(results.select("command_id", "attempt", "action", "status", "effect", "order_id").iter_rows(), messages, strict=True):
            cid, attempt, action, status, effect, order = r
            self.answers.setdefault((cid, attempt), msg)
            if effect == "applied":
                self.effects[cid] += 1
                if action == "apply":
                    self.applied.add(cid)
                else:
                    self.undone.add(cid.rsplit(":", 1)[0] + ":apply")
            if action == "apply" and status == "done":
                self.last_done[order] = msg


def answer(cmds: pl.DataFrame, ledger: Ledger, rcfg: ResponderConfig, fcfg: FulfilmentConfig) -> tuple[list[tuple[bytes, bytes]], list[float], dict[str, int]]:
    """Answer decoded commands: (key, value) messages, each one's latency in seconds, and counters.

    Repeats of an answered (command, attempt) get the stored answer again; the rest are decided,
    checked against the ledger (no effect twice) and stored.
    """
    counts: Counter = Counter()
    keys = list(zip(cmds["command_id"].to_list(), cmds["attempt"].to_list(), strict=True))
    seen_here: set[tuple[str, int]] = set()
    fresh_mask = []
    out: list[tuple[bytes, bytes]] = []
    delays: list[float] = []
    for k in keys:
        repeat = k in ledger.answers or k in seen_here
        fresh_mask.append(not repeat)
        seen_here.add(k)
    for k, fresh in zip(keys, fresh_mask, strict=True):
        if not fresh and k in ledger.answers:
            out.append(ledger.answers[k])
            delays.append(0.0)
            counts["repeats_answered"] += 1
    fresh = cmds.filter(pl.Series(fresh_mask, dtype=pl.Boolean))
    if not fresh.height:
        return out, delays, dict(counts)
    d = decide(fresh, rcfg, fcfg)
    lost = d.filter(pl.col("status").is_null())
    counts["lost"] += lost.height
    d = d.filter(pl.col("status").is_not_null())
    applied = pl.Series(sorted(ledger.applied), dtype=pl.String).implode()
    undone = pl.Series(sorted(ledger.undone), dtype=pl.String).implode()
    target_apply = pl.when(pl.col("action") == "compensate").then(pl.col("command_id").str.replace(r":compensate$", ":apply")).otherwise(pl.col("command_id"))
    d = d.with_columns(target_apply.alias("_apply"))
    was_applied = pl.col("_apply").is_in(applied)
    was_undone = pl.col("_apply").is_in(undone)
    d = d.with_columns(
        pl.when((pl.col("action") == "apply") & was_applied).then(pl.lit("done")).otherwise(pl.col("status")).alias("status"),
    ).with_columns(
        pl.when(pl.col("status") != "done").then(pl.col("error_code")).otherwise(pl.lit(None, pl.String)).alias("error_code"),
        pl.when(pl.col("status") != "done").then(pl.lit("none"))
        .when(pl.col("action") == "apply").then(pl.when(was_applied).then(pl.lit("replayed")).otherwise(pl.lit("applied")))
        .when(was_undone).then(pl.lit("replayed"))
        .when(was_applied).then(pl.lit("applied"))
        .otherwise(pl.lit("none")).alias("effect"),
    )
    # One command id twice in this batch with different attempts: only the first may apply.
    d = d.with_columns(
        pl.when((pl.col("effect") == "applied") & (pl.int_range(pl.len()).over("_apply", "effect") > 0))
        .then(pl.lit("replayed")).otherwise(pl.col("effect")).alias("effect"))
    results = d.select(
        pl.concat_str([pl.col("command_id"), pl.col("attempt").cast(pl.String)], separator=":").alias("result_id"),
        "command_id", "order_id", "step_seq", "step", "target", "action", "attempt", "status", "error_code", "effect",
        (pl.col("issued_at") + pl.duration(microseconds=(pl.col("latency_ms") * 1000).cast(pl.Int64))).alias("completed_at"),
    )
    messages = keyed(results, "order_id")
    stale_prev = [ledger.last_done.get(o) for o in d["order_id"].to_list()]
    ledger.learn(results, messages)
    for msg, lat, dup, stale, prev, status, seq in zip(messages, d["latency_ms"].to_list(), d["_dup"].to_list(), d["_stale"].to_list(),
                                                        stale_prev, d["status"].to_list(), d["step_seq"].to_list(), strict=True):
        out.append(msg)
        delays.append(lat / 1000.0)
        if dup:
            out.append(msg)
            delays.append(lat / 1000.0)
            counts["duplicates_sent"] += 1
        if stale and prev is not None and status == "done" and seq > 0:
            out.append(prev)
            delays.append(lat / 1000.0)
            counts["stale_sent"] += 1
    counts["effects_applied"] += int((results["effect"] == "applied").sum())
    return out, delays, dict(counts)


@dataclass
class ResponderStats:
    """Counters of a responder run, and the effects applied per command id (thread-safe reads)."""

    commands_in: int = 0
    results_out: int = 0
    rejected: int = 0
    pending: int = 0
    counts: Counter = field(default_factory=Counter)
    ledger: Ledger = field(default_factory=Ledger)
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        with self._lock:
            return {"commands_in": self.commands_in, "results_out": self.results_out, "rejected": self.rejected,
                    "pending": self.pending, **dict(self.counts), "max_effects_per_command": max(self.ledger.effects.values(), default=0),
                    "seconds": round(self.seconds, 3)}


def _read_results(bootstrap: str, topic: str, conf: dict) -> tuple[pl.DataFrame, list[tuple[bytes, bytes]]]:
    """Every answer on ``provisioning.results`` so far (to rebuild the ledger)."""
    consumer = Consumer({**conf, "group.id": "telcolake-responders-ledger", "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        values, keys, eof = [], [], set()
        while len(eof) < len(meta.partitions):
            for m in consumer.consume(10_000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                values.append(m.value())
                keys.append(m.key())
        decoded = decode_batch(RESULTS, values)
        idx = decoded.index.to_pylist()
        table = pl.from_arrow(decoded.table).with_columns(pl.Series("_i", range(len(idx))))
        first = table.unique(["command_id", "attempt"], keep="first", maintain_order=True)  # duplicates were sent on purpose
        return first.drop("_i"), [(keys[idx[i]] or b"", values[idx[i]]) for i in first["_i"].to_list()]
    finally:
        consumer.close()


def run_responders(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    stop: StopFlag | None = None,
    realtime: bool | None = None,
    stats: ResponderStats | None = None,
) -> ResponderStats:
    """Answer ``provisioning.commands`` on ``provisioning.results`` until ``stop`` (or caught up).

    Args:
        settings: the run's settings (``[fulfilment]`` and ``[fulfilment.responders]``).
        until_caught_up: stop once every command on the topic at start is answered.
        stop: ends the loop after the batch in hand.
        realtime: wait out the planted latencies (default: ``[fulfilment.responders] realtime``).
        stats: counters to update (a caller watching them from another thread passes its own).
    """
    rcfg, fcfg = responder_config(settings), fulfilment_config(settings)
    realtime = rcfg.realtime if realtime is None else realtime
    stop = stop or StopFlag()
    stats = stats or ResponderStats()
    bootstrap = resolve_bootstrap(settings)
    conf = client_config(settings, bootstrap=bootstrap)
    cmd_topic, res_topic = settings.topic(COMMANDS.topic), settings.topic(RESULTS.topic)
    started = time.monotonic()
    table, msgs = _read_results(bootstrap, res_topic, conf)
    if table.height:
        stats.ledger.learn(table, msgs)
    consumer = Consumer({**conf, "group.id": "telcolake-responders", "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": fcfg.fetch_wait_ms})
    producer = Producer({**conf, "linger.ms": 2, "enable.idempotence": True})
    meta = consumer.list_topics(cmd_topic, timeout=10).topics[cmd_topic]
    parts = sorted(meta.partitions)
    consumer.assign([TopicPartition(cmd_topic, p) for p in parts])
    committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(cmd_topic, p) for p in parts], timeout=10)}
    targets = {p: consumer.get_watermark_offsets(TopicPartition(cmd_topic, p), timeout=10)[1] for p in parts}
    done: set[int] = set()
    heap: list[tuple[float, int, bytes, bytes]] = []
    seq = 0
    positions: dict[int, int] = {}
    try:
        while not stop.is_set():
            wait = 0.005 if not heap else max(0.0, min(0.005, heap[0][0] - time.monotonic()))
            messages = consumer.consume(num_messages=20_000, timeout=wait)
            good = []
            for m in messages:
                err = m.error()
                if err is None:
                    good.append(m)
                elif err.code() == KafkaError._PARTITION_EOF and m.offset() >= max(targets.get(m.partition(), 0), committed.get(m.partition(), 0)):
                    done.add(m.partition())
            if good:
                decoded = decode_batch(COMMANDS, [m.value() for m in good])
                for m in good:
                    positions[m.partition()] = m.offset() + 1
                counts: dict[str, int] = {}
                if decoded.table.num_rows:
                    out, delays, counts = answer(pl.from_arrow(decoded.table), stats.ledger, rcfg, fcfg)
                    now = time.monotonic()
                    for (key, value), delay in zip(out, delays, strict=True):
                        heapq.heappush(heap, (now + (delay if realtime else 0.0), seq, key, value))
                        seq += 1
                with stats._lock:  # commands counted with their answers queued: a watcher never sees a gap
                    stats.commands_in += len(good)
                    stats.rejected += len(decoded.rejects)
                    stats.pending = len(heap)
                    stats.counts.update(counts)
            now = time.monotonic()
            sent = 0
            while heap and heap[0][0] <= now:
                _, _, key, value = heapq.heappop(heap)
                while True:
                    try:
                        producer.produce(res_topic, key=key, value=value)
                        break
                    except BufferError:
                        producer.poll(0.01)
                sent += 1
            if sent:
                producer.flush(30)
                with stats._lock:
                    stats.results_out += sent
                    stats.pending = len(heap)
            if not heap and positions:
                try:
                    consumer.commit(offsets=[TopicPartition(cmd_topic, p, o) for p, o in positions.items()], asynchronous=True)
                except Exception:  # offsets only say where to resume; a failed commit never fails the batch
                    pass
                positions = {}
            if until_caught_up and len(done) == len(parts) and not heap:
                break
    finally:
        producer.flush(30)
        consumer.close()
        stats.seconds = time.monotonic() - started
    return stats

"""One shard of the orchestrator: the keyed state of its orders and what each batch of input does to it.

The state is three Polars frames: ``orders`` (one row per order, the ``gold/oss/orders``
columns), ``steps`` and ``completions`` (of orders not yet finished), plus the clock (the
latest tick). A batch of one input topic is applied in *rounds*: round r takes the r-th event
of every order in the batch, so an order's events apply in their Kafka order and a round
touches each order once. The common events take vectorised paths (a new order: intake and
its first command; a ``done`` result of an apply step: the next command or the completion);
everything else (fallout, cancellations, operator retries, timers) goes through
:class:`pipelines.oss.machine.Machine` one order at a time — rare by construction.

Outputs of a batch: rows for the tables (the changed orders, transitions, commands, the result
log, jeopardy alerts, quarantine) and messages (commands, BSS lifecycle events, the orders'
current state, jeopardy events). All of them are functions of the shard's input order only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa

from pipelines.oss.config import FulfilmentConfig
from pipelines.oss.intake import COMPLETION_PL, STEP_PL, intake
from pipelines.oss.machine import Machine, Out, Row
from pipelines.oss.tables import (
    COMMAND_PL,
    JEOPARDY_PL,
    ORDER_PL,
    RESULT_PL,
    TERMINAL,
    TRANSITION_PL,
)
from pipelines.oss.wire import keyed
from pipelines.streams.state import QUARANTINE_SCHEMA

UTC_US = pl.Datetime("us", "UTC")
QUARANTINE_PL = dict(pl.from_arrow(QUARANTINE_SCHEMA.empty_table()).schema)
BSS_PL = {"event_id": pl.String, "subscriber_id": pl.String, "account_id": pl.String, "occurred_at": UTC_US, "kind": pl.String,
          "plan_id": pl.String, "attributes": pl.String}
FLOW = "fulfilment"


@dataclass
class SagaOutput:
    """What one batch produced: table rows by output name, messages by contract topic, counters."""

    rows: dict[str, pa.Table] = field(default_factory=dict)
    messages: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Batch:
    frames: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    out: Out = field(default_factory=Out)
    changed: list[pl.Series] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, frame: pl.DataFrame) -> None:
        if frame.height:
            self.frames.setdefault(name, []).append(frame)

    def count(self, name: str, n: int) -> None:
        if n:
            self.counts[name] = self.counts.get(name, 0) + n


def _frame(rows: list[Row], schema: dict) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


class SagaLogic:
    """The orders of one shard.

    Args:
        cfg: the fulfilment settings.
        topics: contract topic -> configured topic (for quarantine rows).
        fast: take the vectorised paths; False sends every event through the Machine (the
            reference the tests compare against).
        hold_until_clock: keep orders and results until the shard has seen its first tick (the
            wall clock): a backlog read before the clock would be stamped with its old event times
            and time out at the first tick although its answers are on the way.
    """

    def __init__(self, cfg: FulfilmentConfig, topics: dict[str, str] | None = None, *, fast: bool = True,
                 hold_until_clock: bool = False) -> None:
        self.cfg, self.fast, self.hold = cfg, fast, hold_until_clock
        self.pending: dict[str, pl.DataFrame] = {}
        self.topics = topics or {}
        self.orders = pl.DataFrame(schema=ORDER_PL)
        self.steps = pl.DataFrame(schema=STEP_PL)
        self.completions = pl.DataFrame(schema=COMPLETION_PL)
        self.clock: datetime | None = None
        self._snapshot: dict[str, pl.DataFrame] | None = None
        self._gauges: dict[str, int] | None = None

    # --- state ------------------------------------------------------------------------------

    def _floor(self) -> datetime | None:
        return None if self.clock is None else self.clock - timedelta(seconds=self.cfg.grace_s)

    def _replace(self, b: _Batch, rows: pl.DataFrame) -> None:
        """Put updated order rows into the state (and forget the plans of orders that ended)."""
        if not rows.height:
            return
        rows = rows.select(list(ORDER_PL)).cast(ORDER_PL)
        ids = rows["order_id"]
        self.orders = pl.concat([self.orders.filter(~pl.col("order_id").is_in(ids.implode())), rows])
        ended = rows.filter(pl.col("state").is_in(list(TERMINAL)))["order_id"]
        if ended.len():
            self.steps = self.steps.filter(~pl.col("order_id").is_in(ended.implode()))
            self.completions = self.completions.filter(~pl.col("order_id").is_in(ended.implode()))
        b.changed.append(ids)

    def _python(self, b: _Batch, ids: pl.Series, apply: Callable[[Machine, dict[str, Row]], None]) -> None:
        """Run ``apply`` on the orders ``ids`` as dicts through the Machine, then store them back."""
        want = ids.unique().implode()
        rows = {r["order_id"]: r for r in self.orders.filter(pl.col("order_id").is_in(want)).to_dicts()}
        steps: dict[str, list[Row]] = {}
        for s in self.steps.filter(pl.col("order_id").is_in(want)).sort("order_id", "seq").to_dicts():
            steps.setdefault(s["order_id"], []).append(s)
        comps: dict[str, list[Row]] = {}
        for c in self.completions.filter(pl.col("order_id").is_in(want)).to_dicts():
            comps.setdefault(c["order_id"], []).append(c)
        machine = Machine(self.cfg, steps, comps, b.out)
        machine.floor = self._floor()
        apply(machine, rows)
        self._replace(b, pl.DataFrame(list(rows.values()), schema=ORDER_PL))

    # --- vectorised paths -----------------------------------------------------------------------

    def _timeout_us(self) -> pl.Expr:
        kind = pl.col("target").str.split(":").list.first()
        expr = pl.lit(None, pl.Int64)
        for k, seconds in self.cfg.timeouts.items():
            expr = pl.when(kind == k).then(pl.lit(_us(seconds), pl.Int64)).otherwise(expr)
        return expr

    def _send(self, b: _Batch, rows: pl.DataFrame, trigger: str) -> pl.DataFrame:
        """Send the apply command of each row's ``step_seq`` at ``_at`` (rows without an open jeopardy)."""
        floor = self._floor()
        j = rows.join(self.steps.rename({"seq": "step_seq"}), on=["order_id", "step_seq"], how="left")
        issued = pl.max_horizontal(pl.col("_at"), pl.lit(floor, UTC_US)) if floor is not None else pl.col("_at")
        timeout = self._timeout_us()
        share = self.cfg.sla_share
        j = j.with_columns(issued.alias("_issued"), timeout.alias("_timeout"))
        j = j.with_columns(
            pl.lit("result").alias("waiting"),
            pl.concat_str([pl.col("order_id"), pl.col("step_seq").cast(pl.String), pl.col("step"), pl.lit("apply")], separator=":").alias("command_id"),
            pl.col("_issued").alias("issued_at"),
            (pl.col("_issued") + pl.duration(microseconds=pl.col("_timeout"))).alias("deadline_at"),
            (pl.col("_issued") + pl.duration(microseconds=(pl.col("_timeout").cast(pl.Float64) * share).cast(pl.Int64))).alias("jeopardy_at"),
            pl.lit(None, UTC_US).alias("retry_at"),
            pl.col("step").alias("current_step"), pl.col("target").alias("current_target"),
            (pl.col("attempts_total") + 1).alias("attempts_total"),
            (pl.col("transitions") + 1).alias("transitions"),
            pl.col("_issued").alias("updated_at"),
        ).with_columns(pl.col("jeopardy_at").alias("next_timer_at"))
        b.add("commands", j.select(
            "command_id", "attempt", "order_id", "subscriber_id", "step_seq", "step_count", "step", "target",
            pl.lit("apply").alias("action"), "operation", "issued_at", "payload"))
        b.add("transitions", self._transitions(j, "step_sent", trigger, at="issued_at", step=True, command=True))
        return j

    def _transitions(self, j: pl.DataFrame, kind: str, trigger: str, *, at: str, step: bool, command: bool = False,
                     from_state: str | pl.Expr = "state") -> pl.DataFrame:
        none_s, none_i = pl.lit(None, pl.String), pl.lit(None, pl.Int32)
        return j.select(
            pl.concat_str([pl.col("order_id"), pl.col("transitions").cast(pl.String)], separator=":").alias("transition_id"),
            "order_id", pl.col("transitions").alias("seq"), pl.lit(kind).alias("kind"),
            (pl.col(from_state) if isinstance(from_state, str) else from_state).alias("from_state"), "state",
            (pl.col("step_seq") if step else none_i).alias("step_seq"),
            (pl.col("current_step") if step else none_s).alias("step"),
            (pl.col("current_target") if step else none_s).alias("target"),
            (pl.col("attempt") if step else none_i).alias("attempt"),
            (pl.col("command_id") if command else none_s).alias("command_id"),
            none_s.alias("reason"), pl.lit(trigger).alias("trigger"), pl.col(at).alias("event_at"), pl.col("_recv").alias("received_at"),
        )

    def _fast_done(self, b: _Batch, m: pl.DataFrame) -> None:
        """``done`` results of apply steps nothing else touches: the next step's command, or completion."""
        m = m.with_columns((pl.col("transitions") + 1).alias("transitions"), pl.lit("none").alias("waiting"),
                           pl.lit(False).alias("maybe_applied"), pl.col("_at").alias("updated_at"))
        b.add("transitions", self._transitions(m, "step_done", "result", at="_at", step=True))
        m = m.with_columns((pl.col("step_seq") + 1).alias("_next"))
        done = m.filter(pl.col("_next") == pl.col("step_count"))
        if done.height:
            done = done.with_columns(
                pl.lit("completed").alias("state"), pl.lit(None, UTC_US).alias("deadline_at"), pl.lit(None, UTC_US).alias("jeopardy_at"),
                pl.lit(None, UTC_US).alias("retry_at"), pl.lit(None, UTC_US).alias("next_timer_at"), pl.col("_at").alias("completed_at"),
                ((pl.col("_at") - pl.col("requested_at")).dt.total_microseconds().cast(pl.Float64) / 1e6).round(6).alias("lead_time_s"),
                pl.lit(None, pl.String).alias("current_step"), pl.lit(None, pl.String).alias("current_target"),
                (pl.col("transitions") + 1).alias("transitions"),
            )
            b.add("transitions", self._transitions(done, "completed", "result", at="_at", step=False, from_state=pl.lit("in_progress")))
            bss = done.select("order_id", "subscriber_id", "account_id", pl.col("_at").alias("occurred_at")).join(self.completions, on="order_id")
            b.add("bss", bss.select(
                pl.concat_str([pl.lit("oss"), pl.col("order_id"), pl.col("item_id"), pl.col("kind")], separator=":").alias("event_id"),
                "subscriber_id", "account_id", "occurred_at", "kind", "plan_id", "attributes"))
            self._replace(b, done)
        rest = m.filter(pl.col("_next") < pl.col("step_count"))
        if rest.height:
            rest = rest.with_columns(pl.col("_next").cast(pl.Int32).alias("step_seq"), pl.lit(1, pl.Int32).alias("attempt"),
                                     pl.lit(0, pl.Int32).alias("attempt_base"))
            self._replace(b, self._send(b, rest.select(list(ORDER_PL) + ["_at", "_recv"]), "result"))

    # --- inputs -------------------------------------------------------------------------------

    def _quarantine(self, b: _Batch, rows: pl.DataFrame, topic: str, reason: pl.Expr | str, event_id: str, entity: str, at: str) -> None:
        if not rows.height:
            return
        b.count("quarantined", rows.height)
        b.add("quarantine", rows.select(
            pl.lit(FLOW).alias("flow"), (reason if isinstance(reason, pl.Expr) else pl.lit(reason)).alias("reason"),
            pl.lit(self.topics.get(topic, topic)).alias("_kafka_topic"), "_kafka_partition", "_kafka_offset",
            pl.col(event_id).alias("event_id"), pl.col(entity).alias("entity_id"), pl.col(at).alias("event_at"),
            pl.lit(None, UTC_US).alias("watermark_at"), pl.lit(None, pl.Binary).alias("raw")))

    def _rounds(self, df: pl.DataFrame) -> list[pl.DataFrame]:
        df = df.with_row_index("_row").with_columns(pl.int_range(pl.len()).over("order_id").alias("_rank"))
        return [df.filter(pl.col("_rank") == r) for r in range(int(df["_rank"].max()) + 1)] if df.height else []

    def _orders(self, b: _Batch, df: pl.DataFrame) -> None:
        b.count("orders_in", df.height)
        for ev in self._rounds(df):
            new = ev.filter(pl.col("kind") == "order")
            if new.height:
                known = new.join(self.orders.select("order_id"), on="order_id", how="semi")
                self._quarantine(b, known, "orders.events", "duplicate_order", "event_id", "order_id", "requested_at")
                fresh = new.join(self.orders.select("order_id"), on="order_id", how="anti")
                taken = intake(fresh)
                self._quarantine(b, taken.rejects, "orders.events", pl.col("reason"), "event_id", "order_id", "requested_at")
                if taken.orders.height:
                    self.steps = pl.concat([self.steps, taken.steps])
                    self.completions = pl.concat([self.completions, taken.completions])
                    rows = taken.orders.join(fresh.select("order_id", pl.col("_kafka_timestamp").alias("_recv")), on="order_id")
                    rows = rows.with_columns((pl.col("transitions") + 1).alias("transitions"), pl.col("requested_at").alias("_at"))
                    b.add("transitions", self._transitions(rows, "received", "order", at="requested_at", step=False, from_state=pl.lit(None, pl.String)))
                    b.count("orders_accepted", rows.height)
                    if self.fast:
                        self._replace(b, self._send(b, rows, "order"))
                    else:
                        self._replace(b, rows)
                        recv = dict(zip(rows["order_id"].to_list(), rows["_recv"].to_list(), strict=True))

                        def first(m: Machine, os: dict[str, Row], recv: dict = recv) -> None:
                            m.trigger = "order"
                            for oid, o in os.items():
                                m.received_at = recv[oid]
                                m.send(o, o["requested_at"])

                        self._python(b, rows["order_id"], first)
            other = ev.filter(pl.col("kind") != "order")
            if other.height:
                unknown = other.join(self.orders.select("order_id"), on="order_id", how="anti")
                self._quarantine(b, unknown, "orders.events", "unknown_order", "event_id", "order_id", "requested_at")
                known = other.join(self.orders.select("order_id"), on="order_id", how="semi")
                if known.height:
                    events = known.select("order_id", "kind", "requested_at", "_kafka_timestamp").to_dicts()

                    def apply(m: Machine, os: dict[str, Row], events: list[Row] = events) -> None:
                        for e in events:
                            m.trigger, m.received_at = e["kind"], e["_kafka_timestamp"]
                            (m.cancel if e["kind"] == "cancel" else m.retry)(os[e["order_id"]], e["requested_at"])

                    self._python(b, known["order_id"], apply)
                    b.count("order_actions", known.height)

    def _results(self, b: _Batch, df: pl.DataFrame) -> None:
        b.count("results_in", df.height)
        current = ["order_id", "state", "phase", "waiting", "command_id", "attempt", "cancel_requested_at", "jeopardy_id", "jeopardy_at", "deadline_at"]
        for ev in self._rounds(df):
            j = ev.join(self.orders.select(current).rename({c: f"o_{c}" for c in current if c != "order_id"}), on="order_id", how="left")
            verdict = (
                pl.when(pl.col("o_state").is_null()).then(pl.lit("unknown_command"))
                .when(pl.col("o_state").is_in(list(TERMINAL))).then(pl.lit("after_end"))
                .when((pl.col("o_waiting") != "result") | (pl.col("o_command_id") != pl.col("command_id"))).then(pl.lit("not_awaited"))
                .when(pl.col("o_attempt") != pl.col("attempt")).then(pl.lit("stale_attempt"))
                .otherwise(pl.lit(None, pl.String))
            )
            j = j.with_columns(verdict.alias("verdict"))
            simple = (
                pl.col("verdict").is_null() & (pl.col("status") == "done") & (pl.col("o_phase") == "apply")
                & pl.col("o_cancel_requested_at").is_null() & pl.col("o_jeopardy_id").is_null()
                & (pl.col("completed_at") <= pl.col("o_jeopardy_at")) & (pl.col("completed_at") <= pl.col("o_deadline_at"))
            )
            j = j.with_columns((simple & pl.lit(self.fast)).alias("_fast"))
            ignored = j.filter(pl.col("verdict").is_not_null())
            self._log(b, ignored)
            fast = j.filter(pl.col("_fast"))
            if fast.height:
                self._log(b, fast.with_columns(pl.lit("applied").alias("verdict")))
                m = self.orders.join(fast.select("order_id", pl.col("completed_at").alias("_at"), pl.col("_kafka_timestamp").alias("_recv")), on="order_id")
                self._fast_done(b, m)
            slow = j.filter(pl.col("verdict").is_null() & ~pl.col("_fast"))
            if slow.height:
                results = slow.select("order_id", "status", "error_code", "completed_at", "_kafka_timestamp", "_kafka_partition", "_kafka_offset").to_dicts()
                verdicts: list[str] = []

                def apply(m: Machine, os: dict[str, Row], results: list[Row] = results, verdicts: list[str] = verdicts) -> None:
                    m.trigger = "result"
                    for r in results:
                        m.received_at = r["_kafka_timestamp"]
                        verdicts.append(m.result(os[r["order_id"]], r))

                self._python(b, slow["order_id"], apply)
                self._log(b, slow.with_columns(pl.Series("verdict", verdicts, pl.String)))

    def _log(self, b: _Batch, rows: pl.DataFrame) -> None:
        if rows.height:
            b.count("results_not_applied", rows.filter(pl.col("verdict") != "applied").height)
            b.add("results", rows.with_columns(pl.col("_kafka_timestamp").alias("received_at")).select(list(RESULT_PL)).cast(RESULT_PL))

    def _ticks(self, b: _Batch, df: pl.DataFrame) -> None:
        b.count("ticks_in", df.height)
        grace = timedelta(seconds=self.cfg.grace_s)
        for tick_at, received in df.select("tick_at", "_kafka_timestamp").iter_rows():
            if self.clock is not None and tick_at <= self.clock:
                continue
            self.clock = tick_at
            floor = tick_at - grace
            first = self.orders.get_column("next_timer_at").min()
            if first is None or first > floor:
                continue
            due = self.orders.filter(pl.col("next_timer_at") <= floor)
            b.count("timers_fired", due.height)

            def fire(m: Machine, os: dict[str, Row], received: datetime | None = received, floor: datetime = floor) -> None:
                m.trigger, m.received_at = "clock", received
                for o in sorted(os.values(), key=lambda o: (o["next_timer_at"], o["order_id"])):
                    while m.timers(o, floor):
                        pass

            self._python(b, due["order_id"], fire)
        if self.clock is not None:
            keep = self.clock - timedelta(seconds=self.cfg.keep_terminal_s)
            oldest = self.orders.get_column("completed_at").min()
            old = pl.col("state").is_in(list(TERMINAL)) & (pl.col("completed_at") < keep)
            gone = self.orders.filter(old).height if oldest is not None and oldest < keep else 0
            if gone:
                self.orders = self.orders.filter(~old)
                b.count("evicted", gone)

    # --- the Logic protocol -------------------------------------------------------------------

    def process(self, source: str, df: pl.DataFrame) -> SagaOutput:
        """Apply one batch of ``source`` (``orders``, ``results`` or ``clock``) rows in Kafka order."""
        b = _Batch()
        if df.height and source != "clock" and self.hold and self.clock is None:
            before = self.pending.get(source)
            self.pending[source] = df if before is None else pl.concat([before, df], how="vertical_relaxed")
            b.count(f"held_{source}", df.height)
            self._snapshot = None
        elif df.height:
            {"orders": self._orders, "results": self._results, "clock": self._ticks}[source](b, df)
            if source == "clock" and self.pending and self.clock is not None:
                for name in ("orders", "results"):  # the backlog read before the first tick, in its order
                    waiting = self.pending.pop(name, None)
                    if waiting is not None:
                        (self._orders if name == "orders" else self._results)(b, waiting)
        return self._finish(b)

    def _finish(self, b: _Batch) -> SagaOutput:
        out = SagaOutput(counts=dict(b.counts))
        o = b.out
        frames = {
            "transitions": (TRANSITION_PL, o.transitions), "commands": (COMMAND_PL, o.commands),
            "quarantine": (QUARANTINE_PL, o.quarantine),
        }
        tables: dict[str, pl.DataFrame] = {}
        for name, (schema, rows) in frames.items():
            parts = [f.select(list(schema)).cast(schema) for f in b.frames.get(name, [])]
            if rows:
                parts.append(_frame(rows, schema))
            if parts:
                tables[name] = pl.concat(parts)
        bss_parts = [f.select(list(BSS_PL)).cast(BSS_PL) for f in b.frames.get("bss", [])] + ([_frame(o.bss, BSS_PL)] if o.bss else [])
        bss = pl.concat(bss_parts) if bss_parts else None
        results = pl.concat(b.frames["results"]) if "results" in b.frames else None
        alerts = _frame([row for _, row in o.alerts], JEOPARDY_PL) if o.alerts else None
        if b.changed:
            ids = pl.concat(b.changed).unique().implode()
            tables["orders"] = self.orders.filter(pl.col("order_id").is_in(ids)).sort("order_id")
        for name, frame in tables.items():
            out.rows[name] = frame.to_arrow()
        if results is not None:
            out.rows["results"] = results.to_arrow()
        if alerts is not None:
            out.rows["jeopardy"] = alerts.to_arrow()
            events = alerts.with_columns(
                pl.Series("event", [e for e, _ in o.alerts], pl.String),
            ).with_columns(pl.concat_str([pl.col("alert_id"), pl.col("event"), pl.coalesce("cleared_at", "raised_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")], separator=":").alias("event_id"))
            out.messages["orders.jeopardy"] = keyed(events, "order_id")
            out.counts["jeopardy_raised"] = sum(e == "raised" for e, _ in o.alerts)
            out.counts["jeopardy_cleared"] = sum(e == "cleared" for e, _ in o.alerts)
        if "commands" in tables:
            out.messages["provisioning.commands"] = keyed(tables["commands"], "order_id", raw=("payload",))
            out.counts["commands_out"] = tables["commands"].height
        if bss is not None and bss.height:
            out.messages["bss.events"] = keyed(bss, "subscriber_id", raw=("attributes",))
            out.counts["bss_events"] = bss.height
        if "orders" in tables:
            out.messages["orders.state"] = keyed(tables["orders"], "order_id")
            ended = tables["orders"].filter(pl.col("state").is_in(list(TERMINAL)) | (pl.col("state") == "held"))
            for state, n in ended.group_by("state").len().iter_rows():
                out.counts[f"orders_{state}"] = n
        self._snapshot = self._gauges = None
        return out

    # --- gauges, checkpoint -------------------------------------------------------------------

    def gauges(self) -> dict[str, int]:
        """In-flight orders (neither finished nor held) and the earliest live timer (µs since epoch, 0: none)."""
        if self._gauges is None:
            state = self.orders.get_column("state")
            held = int((state == "held").sum())
            done = int(state.is_in(list(TERMINAL)).sum())
            nxt = self.orders.get_column("next_timer_at").min()
            self._gauges = {"in_flight": self.orders.height - held - done, "held": held,
                            "next_timer_us": 0 if nxt is None else int(nxt.timestamp() * 1_000_000)}
        return self._gauges

    def snapshot(self) -> dict[str, pl.DataFrame]:
        """The state as frames: Polars frames are never changed in place, so holding them is a
        consistent snapshot at no cost; :func:`as_tables` turns one into Arrow for a checkpoint."""
        if self._snapshot is None:
            self._snapshot = {"orders": self.orders, "steps": self.steps, "completions": self.completions,
                              "clock": pl.DataFrame({"clock": [self.clock]}, schema={"clock": UTC_US}),
                              **{f"pending_{k}": v for k, v in self.pending.items()}}
        return self._snapshot

    def restore(self, parts: dict[str, pa.Table]) -> None:
        """Take the state back from a checkpoint's tables."""
        self.orders = pl.from_arrow(parts["orders"]).cast(ORDER_PL)
        self.steps = pl.from_arrow(parts["steps"]).cast(STEP_PL)
        self.completions = pl.from_arrow(parts["completions"]).cast(COMPLETION_PL)
        self.clock = parts["clock"]["clock"][0].as_py()
        self.pending = {k.removeprefix("pending_"): pl.from_arrow(v) for k, v in parts.items() if k.startswith("pending_")}
        self._snapshot = self._gauges = None


def as_tables(state: dict[str, pl.DataFrame | pa.Table]) -> dict[str, pa.Table]:
    """A snapshot as Arrow tables (what the checkpoint stores)."""
    return {k: v.to_arrow() if isinstance(v, pl.DataFrame) else v for k, v in state.items()}

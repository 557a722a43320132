"""Fraud alerts from ``usage.events``: SIM-box behaviour and international call velocity.

Per subscriber, over a sliding hour (hopping by ``[fraud] hop_minutes``) on event time:

- ``sim_box``: many outgoing national voice calls (a SIM box re-originates international
  traffic as local calls) to many distinct numbers, almost no incoming calls, SMS or data,
  from few cells;
- ``intl_velocity``: many outgoing calls to numbers outside the home country code.

An alert is raised once per episode (consecutive hop windows that match), kept updated and
cleared after ``[fraud] clear_after_windows`` hop windows in a row that no longer match (or an
idle gap): a fraudster's hourly volume dips now and then, and one alert per dip is noise. MERGE into ``gold/fraud/alerts`` (key ``alert_id``);
lifecycle events to ``fraud.alerts``. Producers key ``usage.events`` by ``subscriber_id``.
Mediation duplicates (same ``record_id``) are counted once while their windows are open.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.contracts import USAGE
from pipelines.streams.alerts import ALERT_KEYS, ALERT_SCHEMA, Episodes, alert_message, alert_table
from pipelines.streams.config import FraudRules, stream_config
from pipelines.streams.state import FlowSpec, Output, Result, too_late_rows
from pipelines.streams.windows import KeyedWindows, WindowSpec

FRAUD_TABLE = "gold/fraud/alerts"
USAGE_COLUMNS = ["record_id", "subscriber_id", "started_at", "event_type", "direction", "called_number", "cell_id", "is_dropped", "_kafka_partition", "_kafka_offset"]


def dedupe(df: pl.DataFrame, windows: KeyedWindows) -> tuple[pl.DataFrame, int]:
    """Drop records whose ``record_id`` is already in an open window or earlier in the batch."""
    before = df.height
    df = df.unique(subset=["record_id"], keep="first", maintain_order=True)
    if windows.events is not None and windows.events.height:
        df = df.join(windows.events.select("record_id"), on="record_id", how="anti", maintain_order="left")
    return df, before - df.height


def hour_stats(members: pl.DataFrame, home: str) -> pl.DataFrame:
    """Per (subscriber, window end): the counters the fraud rules look at."""
    voice = pl.col("event_type") == "voice"
    mt = pl.col("direction") == "mt"
    out_call = voice & ~mt.fill_null(False)
    intl = out_call & pl.col("called_number").is_not_null() & ~pl.col("called_number").str.starts_with(home)
    national = out_call & ~intl
    return members.group_by("subscriber_id", "_end").agg(
        national.sum().alias("out_calls"),
        pl.col("called_number").filter(national).n_unique().alias("distinct_numbers"),
        ((voice & mt.fill_null(False)) | ((pl.col("event_type") == "sms") & mt.fill_null(False)) | (pl.col("event_type") == "data")).sum().alias("incoming"),
        pl.col("cell_id").drop_nulls().n_unique().alias("cells"),
        intl.sum().alias("intl_calls"),
    )


class FraudLogic:
    """One shard's subscribers: the open hour windows and the two rules' episodes."""

    def __init__(self, rules: FraudRules, topic: str) -> None:
        self.rules, self.topic = rules, topic
        hop = timedelta(minutes=rules.hop_minutes)
        spec = WindowSpec(timedelta(minutes=rules.window_minutes), hop, timedelta(seconds=rules.allowed_lateness_s))
        self.windows = KeyedWindows(spec, key="subscriber_id", time="started_at")
        self.hop = hop
        quiet = rules.clear_after_windows
        self.simbox = Episodes("sim_box", severity="critical", need=1, update_every=6, max_gap=timedelta(0), clear_after=quiet)
        self.intl = Episodes("intl_velocity", severity="major", need=1, update_every=6, max_gap=timedelta(0), clear_after=quiet)
        self.spec: FlowSpec | None = None

    def process(self, df: pl.DataFrame) -> Result:
        events_in = df.height
        df, dupes = dedupe(df.select(USAGE_COLUMNS), self.windows)
        added = self.windows.add(df)
        result = Result(counts={"events": events_in, "duplicates": dupes, "too_late": added.late.height})
        if added.late.height:
            result.rows["quarantine"] = too_late_rows(self.spec, self.topic, added.late, event_id="record_id", time="started_at", entity="subscriber_id")
        if not added.members.height:
            return result
        r = self.rules
        stats = hour_stats(added.members, r.home_country_code).with_columns(
            pl.col("subscriber_id").alias("entity_id"), pl.lit(None, pl.String).alias("site_id"),
            (pl.col("_end") - self.hop).alias("start"), pl.col("_end").alias("end"),
        )
        simbox = (
            (pl.col("out_calls") >= r.simbox_min_out_calls)
            & (pl.col("distinct_numbers") >= r.simbox_min_distinct_numbers)
            & (pl.col("incoming") <= r.simbox_max_incoming)
            & (pl.col("cells") <= r.simbox_max_cells)
        )
        base = ["entity_id", "site_id", "start", "end"]
        events = self.simbox.step(stats.select(*base, simbox.alias("flag"), pl.col("distinct_numbers").cast(pl.Float64).alias("value")))
        events += self.intl.step(stats.select(*base, (pl.col("intl_calls") >= r.intl_calls_per_hour).alias("flag"),
                                              pl.col("intl_calls").cast(pl.Float64).alias("value")))
        if events:
            result.rows["alerts"] = alert_table([row for _, row in events])
            result.messages = [alert_message(ev, row) for ev, row in events if ev != "state"]
            result.counts["alerts_raised"] = sum(ev == "raised" for ev, _ in events)
            result.counts["alerts_cleared"] = sum(ev == "cleared" for ev, _ in events)
        return result

    def snapshot(self) -> dict[str, pa.Table]:
        out = {f"w_{k}": v for k, v in self.windows.snapshot().items()}
        out.update(simbox=self.simbox.snapshot(), intl=self.intl.snapshot())
        return out

    def restore(self, parts: dict[str, pa.Table]) -> None:
        self.windows.restore({k[2:]: v for k, v in parts.items() if k.startswith("w_")})
        self.simbox.restore(parts["simbox"])
        self.intl.restore(parts["intl"])


def spec(settings: Settings) -> FlowSpec:
    """The fraud flow's spec for ``settings``."""
    cfg = stream_config(settings)
    topic = settings.topic(USAGE.topic)

    def make() -> FraudLogic:
        logic = FraudLogic(cfg.fraud, topic)
        logic.spec = flow_spec
        return logic

    flow_spec = FlowSpec(
        name="fraud",
        contract=USAGE,
        key="subscriber_id",
        shards=cfg.streams.shards,
        outputs={"alerts": Output(FRAUD_TABLE, ALERT_SCHEMA, ALERT_KEYS)},
        make_logic=make,
        alerts_topic="fraud.alerts",
    )
    return flow_spec


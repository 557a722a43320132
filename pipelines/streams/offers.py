"""Offer triggers from ``usage.events``: a subscriber who suffers repeated dropped calls.

When a sliding hour (hopping by ``[offers] hop_minutes``) holds at least ``[offers]
dropped_calls`` voice calls with ``is_dropped``, emit one trigger (subscriber, reason,
evidence: the dropped calls' record ids) to ``offers.triggers`` and MERGE it into
``gold/offers/triggers`` (key ``subscriber_id, reason, trigger_date``): at most one per
subscriber per UTC day, for the churn-prevention team.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
import polars as pl
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.contracts import USAGE
from pipelines.streams.config import OfferRules, stream_config
from pipelines.streams.fraud import USAGE_COLUMNS, dedupe
from pipelines.streams.state import FlowSpec, Output, Result, too_late_rows
from pipelines.streams.windows import KeyedWindows, WindowSpec

TS = pa.timestamp("us", tz="UTC")
TRIGGERS_TABLE = "gold/offers/triggers"
REASON = "dropped_calls"
TRIGGER_SCHEMA = pa.schema(
    [
        ("trigger_id", pa.string()),
        ("subscriber_id", pa.string()),
        ("reason", pa.string()),
        ("trigger_date", pa.date32()),
        ("triggered_at", TS),
        ("window_end", TS),
        ("dropped_calls", pa.int64()),
        ("evidence_record_ids", pa.list_(pa.string())),
    ]
)
TRIGGER_KEYS = ("subscriber_id", "reason", "trigger_date")
_ENC = msgspec.json.Encoder()


class OfferLogic:
    """One shard's subscribers: their dropped calls of the open hours and the day they last fired."""

    def __init__(self, rules: OfferRules, topic: str) -> None:
        self.rules, self.topic = rules, topic
        spec = WindowSpec(timedelta(minutes=rules.window_minutes), timedelta(minutes=rules.hop_minutes), timedelta(seconds=rules.allowed_lateness_s))
        self.windows = KeyedWindows(spec, key="subscriber_id", time="started_at")
        self.fired = pl.DataFrame(schema={"subscriber_id": pl.String, "fired_date": pl.Date})
        self.spec: FlowSpec | None = None

    def process(self, df: pl.DataFrame) -> Result:
        events_in = df.height
        df, dupes = dedupe(df.select(USAGE_COLUMNS), self.windows)
        dropped = (pl.col("event_type") == "voice") & pl.col("is_dropped").fill_null(False)
        added = self.windows.add(df, store=dropped)
        result = Result(counts={"events": events_in, "duplicates": dupes, "too_late": added.late.height})
        if added.late.height:
            result.rows["quarantine"] = too_late_rows(self.spec, self.topic, added.late, event_id="record_id", time="started_at", entity="subscriber_id")
        m = added.members
        if not m.height:
            return result
        hits = (
            m.group_by("subscriber_id", "_end")
            .agg(pl.len().alias("dropped_calls"), pl.col("started_at").max().alias("triggered_at"),
                 pl.col("record_id").sort_by("started_at", "record_id").alias("evidence_record_ids"))
            .filter(pl.col("dropped_calls") >= self.rules.dropped_calls)
            .with_columns(pl.col("triggered_at").dt.date().alias("trigger_date"))
            .sort("subscriber_id", "_end")
            .unique(subset=["subscriber_id", "trigger_date"], keep="first", maintain_order=True)
            .join(self.fired, on="subscriber_id", how="left")
            .filter(pl.col("fired_date").is_null() | (pl.col("trigger_date") > pl.col("fired_date")))
        )
        if not hits.height:
            return result
        hits = hits.with_columns(
            pl.lit(REASON).alias("reason"), pl.col("_end").alias("window_end"),
            pl.format("{}:{}:{}", pl.lit(REASON), "subscriber_id", pl.col("trigger_date").cast(pl.String)).alias("trigger_id"),
        )
        latest = hits.group_by("subscriber_id").agg(pl.col("trigger_date").max().alias("fired_date"))
        self.fired = pl.concat([self.fired.join(latest, on="subscriber_id", how="anti"), latest])
        rows = hits.select(TRIGGER_SCHEMA.names).to_arrow().cast(TRIGGER_SCHEMA)
        result.rows["triggers"] = rows
        result.messages = [
            (r["subscriber_id"].encode(), _ENC.encode({**r, "event_id": r["trigger_id"], "trigger_date": r["trigger_date"].isoformat(),
                                                       "triggered_at": r["triggered_at"].isoformat(), "window_end": r["window_end"].isoformat()}))
            for r in rows.to_pylist()
        ]
        result.counts["triggers"] = rows.num_rows
        return result

    def snapshot(self) -> dict[str, pa.Table]:
        out = {f"w_{k}": v for k, v in self.windows.snapshot().items()}
        out["fired"] = self.fired.to_arrow()
        return out

    def restore(self, parts: dict[str, pa.Table]) -> None:
        self.windows.restore({k[2:]: v for k, v in parts.items() if k.startswith("w_")})
        self.fired = pl.from_arrow(parts["fired"])


def spec(settings: Settings) -> FlowSpec:
    """The offers flow's spec for ``settings``."""
    cfg = stream_config(settings)
    topic = settings.topic(USAGE.topic)

    def make() -> OfferLogic:
        logic = OfferLogic(cfg.offers, topic)
        logic.spec = flow_spec
        return logic

    flow_spec = FlowSpec(
        name="offers",
        contract=USAGE,
        key="subscriber_id",
        shards=cfg.streams.shards,
        outputs={"triggers": Output(TRIGGERS_TABLE, TRIGGER_SCHEMA, TRIGGER_KEYS)},
        make_logic=make,
        alerts_topic="offers.triggers",
    )
    return flow_spec


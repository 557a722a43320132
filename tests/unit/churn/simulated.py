"""Land simulator output into bronze and silver without Kafka, through the real landing code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import RawBatch
from pipelines.ingest.landing import BronzeWriter
from pipelines.ingest.silver import refresh
from pipelines.simulate import SimConfig, SimResult, simulate

CHUNK = 250_000


def land(settings: Settings, cfg: SimConfig) -> SimResult:
    """Simulate ``cfg`` and land every topic as the ingest dataflow would (Kafka timestamps = arrival)."""
    result = simulate(cfg)
    writer = BronzeWriter(Lake.from_settings(settings))
    ingested = datetime.combine(cfg.start, datetime.min.time(), tzinfo=UTC) + timedelta(days=cfg.days + 1)
    for topic, values in result.values.items():
        stamps = np.asarray(result.timestamps[topic], dtype=np.int64)
        for lo in range(0, len(values), CHUNK):
            hi = min(lo + CHUNK, len(values))
            batch = RawBatch(
                topic=topic, source="kafka", values=values[lo:hi], keys=result.keys[topic][lo:hi],
                segments=[f"{topic}-0"], seg=np.zeros(hi - lo, np.int32), pos=np.arange(lo, hi, dtype=np.int64),
                partition=np.zeros(hi - lo, np.int32), timestamp_ms=stamps[lo:hi],
            )
            writer.land(batch, now=ingested)
    refresh(settings)
    return result

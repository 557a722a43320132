"""Backfill: legacy dumps (CSV, Parquet, JSON lines) -> the same decoder, bronze and quarantine;
the Bytewax dataflow over :mod:`pipelines.ingest.dumps` and :mod:`pipelines.ingest.sink`.

Each file lands exactly once however often it is backfilled (its content hash is its segment
id in the Delta log). Run it with ``telcolake backfill``.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.ingest.dumps import FORMATS, LegacyFile, LegacyFileSource, describe, read_values
from pipelines.ingest.sink import BronzeSink, limits_of

__all__ = ["FORMATS", "LegacyFile", "build_flow", "describe", "read_values"]


def build_flow(settings: Settings, files: list[LegacyFile], *, on_landed=None) -> Dataflow:
    """The backfill dataflow: same sink (decoder, quarantine, bronze) as the Kafka ingest."""
    lake = Lake.from_settings(settings)
    flow = Dataflow("backfill")
    raw = op.input("files_in", flow, LegacyFileSource(files, lake, settings.ingest.flush_rows))  # RawBatch per chunk
    op.output("land", raw, BronzeSink(lake, limits_of(settings), None, settings.kafka_client, on_landed))
    return flow

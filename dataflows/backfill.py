"""Backfill: legacy dumps (CSV, Parquet, JSON lines) -> the same decoder, bronze and quarantine;
the Bytewax dataflow over :mod:`pipelines.ingest.dumps` and :mod:`pipelines.ingest.sink`.

Each file lands exactly once however often it is backfilled (its content hash is its segment
id in the Delta log); a file that cannot be read as its format is handed to ``on_refused``
and the others go on. Run it with ``telcolake backfill`` (:mod:`pipelines.ingest.backfill`).
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.ingest.dumps import FORMATS, LegacyFile, LegacyFileSource, describe, read_values
from pipelines.ingest.sink import BronzeSink, limits_of

__all__ = ["FORMATS", "LegacyFile", "build_flow", "describe", "read_values"]


def build_flow(settings: Settings, files: list[LegacyFile], *, on_landed=None, on_refused=None) -> Dataflow:
    """The backfill dataflow: same sink (decoder, quarantine, bronze) as the Kafka ingest."""
    lake = Lake.from_settings(settings)
    flow = Dataflow("backfill")
    source = LegacyFileSource(files, lake, settings.ingest.flush_rows, on_refused=on_refused)
    raw = op.input("files_in", flow, source)  # RawBatch per chunk of a good file
    op.output("land", raw, BronzeSink(lake, limits_of(settings), None, settings.kafka_client, on_landed))
    return flow

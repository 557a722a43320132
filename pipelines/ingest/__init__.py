"""Ingest: Kafka topics and legacy dumps into bronze (+ quarantine) exactly once, then silver."""

from pipelines.ingest.kafka_source import KafkaBatchSource, OffsetsAhead, RawBatch, StopFlag
from pipelines.ingest.landing import BronzeWriter, Landed, bronze_table, quarantine_table
from pipelines.ingest.maintain import maintain_all
from pipelines.ingest.run import IngestStats, run_cluster, run_ingest
from pipelines.ingest.silver import SilverResult, refresh

__all__ = [
    "BronzeWriter",
    "IngestStats",
    "KafkaBatchSource",
    "Landed",
    "OffsetsAhead",
    "RawBatch",
    "SilverResult",
    "StopFlag",
    "bronze_table",
    "maintain_all",
    "quarantine_table",
    "refresh",
    "run_cluster",
    "run_ingest",
]

"""Stream analytics: cell KPIs and network alerts, fraud alerts, offer triggers (Bytewax, exactly once)."""

from pipelines.streams.run import FLOWS, StreamStats, parse_only, run_streams

__all__ = ["FLOWS", "StreamStats", "parse_only", "run_streams"]

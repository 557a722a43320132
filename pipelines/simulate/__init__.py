"""Simulator: a telco's usage, network and BSS events with planted behaviours and defects."""

from pipelines.simulate.days import SimDays, simulate_days
from pipelines.simulate.generate import (
    LATE_AFTER_S,
    Planted,
    SimConfig,
    SimResult,
    parse_date,
    planted_summary,
    simulate,
)
from pipelines.simulate.output import DumpFiles, produce, write_dir

__all__ = [
    "LATE_AFTER_S",
    "DumpFiles",
    "Planted",
    "SimConfig",
    "SimDays",
    "SimResult",
    "parse_date",
    "planted_summary",
    "produce",
    "simulate",
    "simulate_days",
    "write_dir",
]

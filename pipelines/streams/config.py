"""Settings of the stream flows: ``[streams]``, ``[alerts]``, ``[fraud]`` and ``[offers]`` in telcolake.toml."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pipelines.core.config import Settings

# The network tables the KPI flow writes (named here so the prediction step can read them without importing the flow).
KPI_TABLE = "gold/network/cell_kpi_1m"
ALERTS_TABLE = "gold/network/alerts"


@dataclass(frozen=True)
class StreamSettings:
    """``[streams]``: shards, batching and workers shared by every flow."""

    shards: int = 8
    flush_rows: int = 50_000
    flush_seconds: float = 1.0
    workers: int = 1
    kpi_allowed_lateness_s: float = 120.0
    consumer_group_prefix: str = "telcolake-"  # each flow's offsets go to group <prefix><flow> (empty: none)


@dataclass(frozen=True)
class AlertRules:
    """``[alerts]``: network alert rules over closed 1-minute cell windows."""

    drop_rate_above: float = 0.05
    min_attempts: int = 20
    consecutive_windows: int = 3
    critical_alarm_minutes: float = 15.0
    site_degraded_fraction: float = 0.6
    site_min_cells: int = 2
    site_consecutive_windows: int = 2
    site_cell_timeout_minutes: float = 30.0
    window_gap_minutes: float = 10.0
    update_every_windows: int = 5


@dataclass(frozen=True)
class FraudRules:
    """``[fraud]``: SIM-box and international velocity over a sliding hour."""

    window_minutes: int = 60
    hop_minutes: int = 10
    allowed_lateness_s: float = 600.0
    simbox_min_out_calls: int = 8
    simbox_min_distinct_numbers: int = 8
    simbox_max_incoming: int = 1
    simbox_max_cells: int = 2
    intl_calls_per_hour: int = 15
    clear_after_windows: int = 12
    home_country_code: str = "49"


@dataclass(frozen=True)
class OfferRules:
    """``[offers]``: dropped-call offer trigger."""

    dropped_calls: int = 3
    window_minutes: int = 60
    hop_minutes: int = 5
    allowed_lateness_s: float = 600.0


def _load(cls: type, settings: Settings, name: str) -> Any:
    return cls(**settings.values(name))


@dataclass(frozen=True)
class StreamConfig:
    streams: StreamSettings
    alerts: AlertRules
    fraud: FraudRules
    offers: OfferRules

    @property
    def kpi_lateness(self) -> timedelta:
        return timedelta(seconds=self.streams.kpi_allowed_lateness_s)


def stream_config(settings: Settings) -> StreamConfig:
    """The four sections, checked against :mod:`pipelines.core.keys` (defaults for anything missing).

    Raises:
        ConfigError: one line naming the bad key and what is allowed.
    """
    return StreamConfig(
        streams=_load(StreamSettings, settings, "streams"),
        alerts=_load(AlertRules, settings, "alerts"),
        fraud=_load(FraudRules, settings, "fraud"),
        offers=_load(OfferRules, settings, "offers"),
    )

"""Settings of the stream flows: ``[streams]``, ``[alerts]``, ``[fraud]`` and ``[offers]`` in telcolake.toml."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError


@dataclass(frozen=True)
class StreamSettings:
    """``[streams]``: shards, batching and workers shared by every flow."""

    shards: int = 8
    flush_rows: int = 50_000
    flush_seconds: float = 1.0
    workers: int = 1
    kpi_allowed_lateness_s: float = 120.0


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


_POSITIVE = {"shards", "flush_rows", "flush_seconds", "workers", "window_minutes", "hop_minutes", "consecutive_windows",
             "site_consecutive_windows", "update_every_windows", "clear_after_windows", "dropped_calls", "drop_rate_above", "site_degraded_fraction"}


def _load(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            if isinstance(value, dict):
                continue
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(known)}")
        kind = type(known[key].default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{where}.{key} = {value!r}: expected {kind.__name__}")
        if kind in (int, float) and (value < 0 or value == 0 and key in _POSITIVE):
            raise ConfigError(f"{where}.{key} = {value!r}: must be {'greater than' if key in _POSITIVE else 'at least'} 0")
        values[key] = value
    return cls(**values)


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
    """Read and validate the four sections (defaults for anything missing).

    Raises:
        ConfigError: one line naming the bad key and what is allowed.
    """
    cfg = StreamConfig(
        streams=_load(StreamSettings, settings.section("streams"), "streams"),
        alerts=_load(AlertRules, settings.section("alerts"), "alerts"),
        fraud=_load(FraudRules, settings.section("fraud"), "fraud"),
        offers=_load(OfferRules, settings.section("offers"), "offers"),
    )
    if cfg.alerts.drop_rate_above >= 1:
        raise ConfigError(f"alerts.drop_rate_above = {cfg.alerts.drop_rate_above}: expected a fraction in (0, 1)")
    if cfg.alerts.site_degraded_fraction > 1:
        raise ConfigError(f"alerts.site_degraded_fraction = {cfg.alerts.site_degraded_fraction}: expected a fraction in (0, 1]")
    for name, rules in (("fraud", cfg.fraud), ("offers", cfg.offers)):
        if rules.window_minutes % rules.hop_minutes:
            raise ConfigError(f"{name}.window_minutes = {rules.window_minutes}: must be a multiple of hop_minutes ({rules.hop_minutes})")
    return cfg

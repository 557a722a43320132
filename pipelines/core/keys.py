"""Every key of telcolake.toml, declared once: its type, its range and its default.

``load_settings`` checks the whole file against :data:`CONFIG` at load; each domain reads its
section through ``Settings.values(name)`` (checked values, defaults filled). A new key is
declared here, documented in telcolake.toml, and read by its domain; the property test in
``tests/unit/test_config_validation.py`` feeds hostile values to every key of telcolake.toml.
"""

from __future__ import annotations

from typing import Any

from pipelines.core.errors import ConfigError
from pipelines.core.schema import (
    URL,
    Bool,
    Cron,
    Day,
    Instant,
    Int,
    Memory,
    Num,
    Options,
    Seconds,
    Strings,
    Table,
    Text,
    refuse,
)

DAY_S = 86_400
BIG = 10**9  # a count nobody configures beyond
THREADS = Int(0, 1024, default=0)
TOPIC = r"[A-Za-z0-9._-]{1,249}"
GROUP = r"[A-Za-z0-9._-]{0,200}"
TOKEN = r"(?:[A-Za-z0-9._~+/=-]{16,512})?"
NOTIFY_KINDS = ("job_failed", "quality_failed", "lag", "component_restart", "network_alert", "fraud_alert")


def _multiple_of_hop(values: dict[str, Any], where: str) -> None:
    if values["window_minutes"] % values["hop_minutes"]:
        raise ConfigError(f"{where}.window_minutes = {values['window_minutes']}: must be a multiple of hop_minutes ({values['hop_minutes']})")


def _divides_day(values: dict[str, Any], where: str) -> None:
    if DAY_S % values["kpi_interval_s"]:
        raise ConfigError(f"{where}.kpi_interval_s = {values['kpi_interval_s']!r}: expected a divisor of 86400 (60, 300, 900 ...)")


def _one_of_command_or_exec(values: dict[str, Any], where: str) -> None:
    if "cron" not in values and not values.get("on_inputs"):
        raise ConfigError(f"{where}: expected a cron expression, on_inputs = true, or both (cron such as '*/5 * * * *')")
    if ("command" in values) == ("exec" in values):
        raise ConfigError(f"{where}: expected exactly one of command (telcolake arguments) or exec (a program argv)")
    if values.get("on_inputs") and not values.get("reads"):
        raise ConfigError(f"{where}.on_inputs = true: expected the tables it reads in {where}.reads")


def _bucket_rows(values: dict[str, Any], where: str) -> None:
    if 0 < values["bucket_rows"] < 1000:
        raise ConfigError(f"{where}.bucket_rows = {values['bucket_rows']!r}: expected 0 (buckets sized by memory_limit) or an integer >= 1000")


def _stop_in_time(values: dict[str, Any], where: str) -> None:
    if values["stop_timeout_s"] > 25:
        raise ConfigError(f"{where}.stop_timeout_s = {values['stop_timeout_s']!r}: at most 25 (up exits within 30 s of SIGTERM)")


class Tables(Strings):
    """A list of table names or prefixes ending in ``*`` (``silver/usage``, ``gold/*``); may be empty."""

    allowed = "a list of table names such as 'silver/usage', or a prefix ending in * such as 'gold/*'"

    def check(self, value: Any, where: str) -> tuple[str, ...]:
        if isinstance(value, tuple):  # a declared default
            value = list(value)
        if value == []:
            return ()
        names = super().check(value, where)
        if any("*" in v[:-1] or v.startswith("/") for v in names):
            raise refuse(where, value, self.allowed)
        return names


class Names(Strings):
    """A list of job names; may be empty."""

    allowed = "a list of job names"

    def check(self, value: Any, where: str) -> tuple[str, ...]:
        return () if value in ([], ()) else super().check(value, where)


class Components(Strings):
    """Which continuous components `telcolake up` runs."""

    allowed = "a list of ingest, silver, streams, fulfilment, responders"

    def check(self, value: Any, where: str) -> tuple[str, ...]:
        if isinstance(value, tuple):  # a declared default
            value = list(value)
        if value == []:
            return ()
        names = super().check(value, where)
        if any(n not in ("ingest", "silver", "streams", "fulfilment", "responders") for n in names) or len(set(names)) != len(names):
            raise refuse(where, value, self.allowed)
        return names


def _ratio_band(values: dict[str, Any], where: str) -> None:
    if values["min_row_ratio"] > values["max_row_ratio"]:
        raise ConfigError(f"{where}.min_row_ratio/max_row_ratio: expected min_row_ratio <= 1 <= max_row_ratio")


JOB = Table(
    keys={
        "cron": Cron(),
        "command": Strings(),
        "exec": Strings(),
        "retries": Int(0, 100, default=2),
        "retry_backoff_s": Seconds(DAY_S, default=10.0, zero=True),
        "timeout_s": Num(0.001, 7 * DAY_S, default=3600.0, unit="seconds"),
        "enabled": Bool(default=True),
        "description": Text(default="", max_len=500),
        "reads": Tables(default=()),
        "writes": Tables(default=()),
        "after": Names(default=()),
        "on_inputs": Bool(default=False),
        "min_interval_s": Seconds(30 * DAY_S, default=300.0, zero=True),
        "grace_s": Seconds(366 * DAY_S, default=0.0, zero=True),
        "exclusive": Bool(default=False),
        "under_up": Bool(default=True),
    },
    checks=(_one_of_command_or_exec,),
)

CONFIG = Table(keys={
    "lake": Table(keys={
        "root": Text(default="lake", nonempty=True, what="a local path or s3://bucket/prefix"),
        "storage": Options(),
    }),
    "kafka": Table(keys={
        "bootstrap": Text(default="", pattern=r"[A-Za-z0-9.,:\-_\[\] ]*", what="host:port[,host:port...] (empty: the embedded broker)"),
        "client": Options(),
    }),
    "broker": Table(keys={
        "storage": Text(default="memory", pattern=r"memory|s3://[a-z0-9][a-z0-9.-]{1,62}/?", what="'memory' or 's3://bucket/'"),
    }),
    "topics": Table(extra=Int(1, 10_000), extra_key=TOPIC, extra_name="topic"),
    "ingest": Table(keys={
        "flush_rows": Int(1, 100_000_000, default=200_000),
        "flush_bytes": Int(1024, 16 << 30, default=64 << 20),
        "flush_seconds": Seconds(3600, default=2.0),
        "idle_flush_seconds": Seconds(3600, default=0.2),
        "max_record_bytes": Int(1, 1 << 30, default=1 << 20),
        "min_event_time": Instant(default="2000-01-01T00:00:00Z"),
        "max_future_skew_hours": Num(0, 24 * 366, default=24.0, lo_open=True, unit="hours"),
        "workers": Int(1, 1024, default=1),
        "consumer_group": Text(default="telcolake-ingest", pattern=GROUP, what="a consumer group name (letters, digits, . _ -) or empty"),
    }),
    "simulate": Table(keys={
        "subscribers": Int(8, 100_000_000, default=2000),
        "days": Int(1, 3660, default=7),
        "seed": Int(0, 2**63 - 1, default=42),
        "start": Day(default="2026-10-01"),
        "duplicate_rate": Num(0, 0.5, default=0.01),
        "late_rate": Num(0, 0.5, default=0.01),
        "malformed_rate": Num(0, 0.5, default=0.001),
        "fraudsters": Int(0, 1_000_000, default=5),
        "churn_rate": Num(0, 0.5, default=0.04),
        "kpi_interval_s": Int(1, DAY_S, default=300),
        "incidents_per_day": Num(0, 100, default=0.5),
        "precursor_share": Num(0, 1, default=0.6),
        "drifts_per_day": Num(0, 100, default=0.25),
    }, checks=(_divides_day,)),
    "billing": Table(keys={
        "memory_limit": Memory(default="2GB"),
        "threads": THREADS,
        "bucket_rows": Int(0, 10**11, default=0),
        "max_held_share": Num(0, 1, default=0.01),
    }, checks=(_bucket_rows,)),
    "streams": Table(keys={
        "shards": Int(1, 4096, default=8),
        "flush_rows": Int(1, 100_000_000, default=50_000),
        "flush_seconds": Seconds(3600, default=1.0),
        "workers": Int(1, 1024, default=1),
        "kpi_allowed_lateness_s": Seconds(7 * DAY_S, default=120.0, zero=True),
        "consumer_group_prefix": Text(default="telcolake-", pattern=GROUP, what="a consumer group prefix (letters, digits, . _ -) or empty"),
    }),
    "alerts": Table(keys={
        "drop_rate_above": Num(0, 1, default=0.05, lo_open=True, hi_open=True),
        "min_attempts": Int(0, BIG, default=20),
        "consecutive_windows": Int(1, 10_000, default=3),
        "critical_alarm_minutes": Num(0, 7 * 1440, default=15.0, unit="minutes"),
        "site_degraded_fraction": Num(0, 1, default=0.6, lo_open=True),
        "site_min_cells": Int(0, 100_000, default=2),
        "site_consecutive_windows": Int(1, 10_000, default=2),
        "site_cell_timeout_minutes": Num(0, 7 * 1440, default=30.0, unit="minutes"),
        "window_gap_minutes": Num(0, 7 * 1440, default=10.0, unit="minutes"),
        "update_every_windows": Int(1, 10_000, default=5),
    }),
    "fraud": Table(keys={
        "window_minutes": Int(1, 7 * 1440, default=60),
        "hop_minutes": Int(1, 7 * 1440, default=10),
        "allowed_lateness_s": Seconds(7 * DAY_S, default=600.0, zero=True),
        "simbox_min_out_calls": Int(0, BIG, default=8),
        "simbox_min_distinct_numbers": Int(0, BIG, default=8),
        "simbox_max_incoming": Int(0, BIG, default=1),
        "simbox_max_cells": Int(0, BIG, default=2),
        "intl_calls_per_hour": Int(0, BIG, default=15),
        "clear_after_windows": Int(1, 100_000, default=12),
        "home_country_code": Text(default="49", pattern=r"[1-9]\d{0,2}", what="a country calling code such as \"49\""),
    }, checks=(_multiple_of_hop,)),
    "offers": Table(keys={
        "dropped_calls": Int(1, BIG, default=3),
        "window_minutes": Int(1, 7 * 1440, default=60),
        "hop_minutes": Int(1, 7 * 1440, default=5),
        "allowed_lateness_s": Seconds(7 * DAY_S, default=600.0, zero=True),
    }, checks=(_multiple_of_hop,)),
    "jobs": Table(extra=JOB, extra_name="job"),
    "fulfilment": Table(keys={
        "shards": Int(1, 4096, default=1),
        "workers": Int(1, 1024, default=1),
        "flush_rows": Int(1, 100_000_000, default=20_000),
        "flush_seconds": Seconds(3600, default=0.05),
        "fetch_wait_ms": Int(0, 60_000, default=5),
        "commit_interval_s": Seconds(3600, default=1.0),
        "clock": Text(default="wall", pattern="wall|external", what="'wall' or 'external'"),
        "tick_interval_s": Seconds(3600, default=1.0),
        "grace_s": Seconds(DAY_S, default=5.0, zero=True),
        "sla_share": Num(0, 1, default=0.5, lo_open=True, hi_open=True),
        "max_attempts": Int(1, 1000, default=4),
        "backoff_s": Seconds(DAY_S, default=2.0, zero=True),
        "backoff_max_s": Seconds(30 * DAY_S, default=60.0, zero=True),
        "keep_terminal_s": Seconds(366 * DAY_S, default=7 * DAY_S),
        "timeouts": Table(keys={k: Seconds(30 * DAY_S, default=v) for k, v in (("sim", 30.0), ("hss", 60.0), ("pcrf", 30.0), ("ott", 120.0))}),
        "responders": Table(keys={
            "realtime": Bool(default=True),
            "seed": Int(0, 2**63 - 1, default=7),
            **{k: Num(0, 1, default=v) for k, v in (("permanent_rate", 0.03), ("retryable_rate", 0.08), ("exhausted_rate", 0.01),
                                                     ("slow_rate", 0.03), ("timeout_rate", 0.01), ("lost_rate", 0.01),
                                                     ("duplicate_rate", 0.02), ("stale_rate", 0.02))},
            "latency_ms": Table(keys={k: Num(0, 3_600_000, default=v, unit="milliseconds")
                                      for k, v in (("sim", 200.0), ("hss", 400.0), ("pcrf", 150.0), ("ott", 1500.0))}),
        }),
    }),
    "scheduler": Table(keys={
        "max_concurrent": Int(1, 64, default=2),
        "inputs_check_s": Seconds(DAY_S, default=10.0),
    }),
    "service": Table(keys={
        "host": Text(default="127.0.0.1", nonempty=True, pattern=r"[A-Za-z0-9.:\-\[\]]{1,253}", what="an address such as '127.0.0.1'"),
        "port": Int(1, 65535, default=8760),
        "components": Components(default=("ingest", "silver", "streams", "fulfilment")),
        "scheduler": Bool(default=True),
        "silver_interval_s": Seconds(3600, default=1.0),
        "restart_backoff_s": Seconds(3600, default=1.0),
        "restart_backoff_max_s": Seconds(DAY_S, default=30.0),
        "healthy_after_s": Seconds(DAY_S, default=60.0),
        "stop_timeout_s": Seconds(3600, default=20.0),
        "status_interval_s": Seconds(3600, default=5.0),
        "token": Text(default="", pattern=TOKEN, max_len=512, what="empty, or a bearer token of 16-512 letters, digits or . _ ~ + / = -"),
    }, checks=(_stop_in_time,)),
    "notify": Table(keys={
        "webhook_url": Text(default="", pattern=f"(?:{URL})?", max_len=2000, what="empty, or an http(s):// URL without spaces, query or fragment"),
        "routes": Table(extra=Text(pattern=f"(?:{URL})?", max_len=2000, what="an http(s):// URL, or empty to send that kind nowhere"),
                        extra_key="|".join(NOTIFY_KINDS), extra_name="notification kind (" + ", ".join(NOTIFY_KINDS) + ")"),
        "page_url": Text(default="", pattern=f"(?:{URL})?", max_len=2000, what="empty, or the http(s):// URL people open the page at"),
        "lag_seconds_above": Seconds(30 * DAY_S, default=300.0),
        "lag_for_minutes": Num(0, 7 * 1440, default=5.0, unit="minutes"),
        "retries": Int(0, 20, default=4),
        "backoff_s": Seconds(3600, default=1.0),
        "timeout_s": Seconds(300, default=5.0),
        "queue": Int(1, 100_000, default=1000),
    }),
    "sharing": Table(keys={
        "registry": Text(default="partners.toml", nonempty=True, what="a file path"),
        "secrets_file": Text(default="secrets.toml", nonempty=True, what="a file path"),
        "k_anonymity": Int(2, 1_000_000, default=10),
        "min_row_ratio": Num(0, 1, default=0.5, lo_open=True),
        "max_row_ratio": Num(1, 1_000_000, default=10.0),
        "file_url_ttl_s": Int(1, 7 * DAY_S, default=900),
        "token_days": Int(1, 3650, default=90),
        "endpoint": Text(default="http://127.0.0.1:8765/delta-sharing", pattern=URL + r"(?<=/delta-sharing)/?", max_len=2000,
                         what="an http(s):// URL ending in /delta-sharing, without spaces, query or fragment"),
        "max_body_bytes": Int(256, 16 << 20, default=64 << 10),
        "api_docs": Bool(default=False),
    }, checks=(_ratio_band,)),
    "quality": Table(keys={
        "max_future_skew_hours": Num(0, 24 * 366, default=24.0, lo_open=True, unit="hours"),
        "max_event_age_days": Num(0, 36_600, default=3650.0, lo_open=True, unit="days"),
        "batch_rows": Int(1, 100_000_000, default=1_000_000),
        "duckdb_memory_limit": Memory(default="1GB"),
        "examples": Int(1, 10_000, default=20),
        "docs_keep_runs": Int(1, 100_000, default=20),
    }),
    "predict": Table(keys={
        "enabled": Bool(default=True),
        "horizon_hours": Num(0, 48, default=2.0, lo_open=True, unit="hours"),
        "threshold": Num(0, 1, default=0.0, hi_open=True),
        "validation_days": Int(1, 3650, default=7),
        "raise_after_windows": Int(1, 1000, default=2),
        "clear_after_windows": Int(1, 1000, default=3),
        "update_every_windows": Int(1, 10_000, default=6),
        "cooldown_minutes": Num(0, 7 * 24 * 60, default=180.0, unit="minutes"),
        "min_history_minutes": Num(0, 7 * 24 * 60, default=120.0, unit="minutes"),
        "max_gap_minutes": Num(1, 24 * 60, default=30.0, unit="minutes"),
        "site_wait_minutes": Num(0, 7 * 24 * 60, default=360.0, unit="minutes"),
        "test_days": Int(1, 3650, default=7),
        "negative_share": Num(0, 1, default=0.3, lo_open=True),
        "max_iter": Int(1, 10_000, default=60),
        "top_features": Int(1, 20, default=3),
    }),
    "churn": Table(keys={
        "activity_ttl_days": Int(35, 366, default=90),
        "memory_limit": Memory(default="2GB"),
        "threads": THREADS,
        "test_days": Int(1, 3650, default=7),
        "gap_days": Int(0, 3650, default=30),
        "offer_top_pct": Num(0, 100, default=5.0, lo_open=True, unit="percent"),
    }),
}, defaults=False)

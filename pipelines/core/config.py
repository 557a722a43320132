"""Configuration: `telcolake.toml` defaults, overridden by TELCOLAKE_* environment variables."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "telcolake.toml"


@dataclass(frozen=True)
class IngestSettings:
    """How the ingest dataflow batches and validates.

    Attributes:
        flush_rows: commit a batch once it holds this many records.
        flush_bytes: ... or this many bytes of raw values.
        flush_seconds: ... or once its oldest record has waited this long.
        idle_flush_seconds: ... or, once the consumer has caught up with its partitions,
            once its oldest record has waited this long (low latency for a steady stream).
        max_record_bytes: larger values are quarantined as ``too_large``.
        min_event_time: event times before this are ``out_of_range``.
        max_future_skew_hours: event times later than now plus this are ``out_of_range``.
        workers: Bytewax workers per process.
    """

    flush_rows: int = 200_000
    flush_bytes: int = 64 * 1024 * 1024
    flush_seconds: float = 2.0
    idle_flush_seconds: float = 0.2
    max_record_bytes: int = 1024 * 1024
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_skew_hours: float = 24.0
    workers: int = 1


@dataclass(frozen=True)
class Settings:
    """Everything a telcolake command needs to know about where things are.

    Attributes:
        lake_root: lake root, a local path or ``s3://bucket/prefix`` (env ``TELCOLAKE_LAKE``).
        kafka_bootstrap: bootstrap servers, empty for the embedded broker
            (env ``TELCOLAKE_KAFKA_BOOTSTRAP``).
        kafka_client: extra librdkafka settings for every client (SASL/SSL ...).
        state_dir: runtime state such as the embedded broker's pid/address file
            (env ``TELCOLAKE_STATE_DIR``, default ``.telcolake`` in the working directory).
        topics: topic name -> partition count.
        ingest: ingest batching and validation settings.
        raw: the whole parsed TOML document, for sections owned by other modules.
        source: the file the settings came from.
    """

    lake_root: str
    kafka_bootstrap: str
    state_dir: Path
    topics: dict[str, int]
    ingest: IngestSettings
    kafka_client: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def section(self, name: str) -> dict[str, Any]:
        """The raw table ``[name]`` of the config file (empty when absent)."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {type(value).__name__}")
        return value

    def topic(self, contract_topic: str) -> str:
        """The configured topic carrying ``contract_topic`` (e.g. ``usage.events``)."""
        for name in self.topics:
            if name == contract_topic or name.startswith(contract_topic + ".") or name.endswith("." + contract_topic):
                return name
        raise ConfigError(f"topics: no topic configured for {contract_topic}; add it to [topics]")

    @property
    def embedded(self) -> bool:
        """True when no bootstrap servers are configured: use the embedded broker."""
        return not self.kafka_bootstrap


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        allowed = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}.{key} = {value!r}: expected {allowed}")
    return value


def _positive(value: float, name: str) -> float:
    if value <= 0:
        raise ConfigError(f"{name} = {value!r}: must be greater than 0")
    return value


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{name} = {value!r}: expected an ISO 8601 time such as 2000-01-01T00:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ingest(table: dict[str, Any]) -> IngestSettings:
    w = "ingest"
    return IngestSettings(
        flush_rows=int(_positive(_get(table, "flush_rows", int, 200_000, w), f"{w}.flush_rows")),
        flush_bytes=int(_positive(_get(table, "flush_bytes", int, 64 << 20, w), f"{w}.flush_bytes")),
        flush_seconds=_positive(_get(table, "flush_seconds", float, 2.0, w), f"{w}.flush_seconds"),
        idle_flush_seconds=_positive(_get(table, "idle_flush_seconds", float, 0.2, w), f"{w}.idle_flush_seconds"),
        max_record_bytes=int(_positive(_get(table, "max_record_bytes", int, 1 << 20, w), f"{w}.max_record_bytes")),
        min_event_time=_parse_time(_get(table, "min_event_time", str, "2000-01-01T00:00:00Z", w), f"{w}.min_event_time"),
        max_future_skew_hours=_positive(_get(table, "max_future_skew_hours", float, 24.0, w), f"{w}.max_future_skew_hours"),
        workers=int(_positive(_get(table, "workers", int, 1, w), f"{w}.workers")),
    )


def _topics(table: dict[str, Any]) -> dict[str, int]:
    topics: dict[str, int] = {}
    for name, partitions in table.items():
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ConfigError(f"topics.{name} = {partitions!r}: expected a partition count >= 1")
        topics[name] = partitions
    return topics


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the config file and apply environment overrides.

    The file is, in order: ``path``, ``$TELCOLAKE_CONFIG``, ``./telcolake.toml``, the
    repository's ``telcolake.toml``.

    Raises:
        ConfigError: the file cannot be parsed or a value is not allowed; the message is one
            line naming the key.
    """
    candidates = [path, os.environ.get("TELCOLAKE_CONFIG"), Path.cwd() / "telcolake.toml", DEFAULT_CONFIG]
    source = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    if path is not None and (source is None or Path(path) != source):
        raise ConfigError(f"config file {path} does not exist")
    raw: dict[str, Any] = {}
    if source is not None:
        try:
            raw = tomllib.loads(source.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None

    lake = raw.get("lake", {})
    kafka = raw.get("kafka", {})
    lake_root = os.environ.get("TELCOLAKE_LAKE") or _get(lake, "root", str, "lake", "lake")
    if not lake_root:
        raise ConfigError("lake.root = '': expected a local path or s3://bucket/prefix")
    if "://" not in lake_root:
        lake_root = str(Path(lake_root).expanduser().resolve())
    bootstrap = os.environ.get("TELCOLAKE_KAFKA_BOOTSTRAP", _get(kafka, "bootstrap", str, "", "kafka"))
    client = _get(kafka, "client", dict, {}, "kafka")
    state_dir = Path(os.environ.get("TELCOLAKE_STATE_DIR") or ".telcolake").expanduser().resolve()
    return Settings(
        lake_root=lake_root.rstrip("/"),
        kafka_bootstrap=bootstrap.strip(),
        kafka_client={str(k): str(v) for k, v in client.items()},
        state_dir=state_dir,
        topics=_topics(_get(raw, "topics", dict, {}, "config")),
        ingest=_ingest(_get(raw, "ingest", dict, {}, "config")),
        raw=raw,
        source=source,
    )

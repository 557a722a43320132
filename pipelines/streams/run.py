"""Run the stream flows (cell KPIs + network alerts, fraud, offer triggers) in one Bytewax dataflow."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.core.broker import ensure_topics, resolve_bootstrap
from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError, project_error
from pipelines.ingest.kafka_source import StopFlag
from pipelines.streams.config import stream_config
from pipelines.streams.state import Emit

FLOWS = ("kpi", "fraud", "offers")
OUTPUT_TOPICS = {"kpi": "network.alerts", "fraud": "fraud.alerts", "offers": "offers.triggers"}
INPUT_TOPICS = {"kpi": "network.events", "fraud": "usage.events", "offers": "usage.events"}


@dataclass
class StreamStats:
    """Counters per flow over one run (thread-safe: workers commit concurrently)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    commits: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, flow: str, emits: list[Emit]) -> None:
        with self._lock:
            mine = self.counts.setdefault(flow, {})
            for e in emits:
                for k, v in e.result.counts.items():
                    mine[k] = mine.get(k, 0) + v
            self.commits += 1

    def as_dict(self) -> dict:
        return {"flows": {f: dict(c) for f, c in self.counts.items()}, "commits": self.commits, "seconds": round(self.seconds, 3)}


def parse_only(only: str | None) -> list[str]:
    """``kpi,fraud`` -> ``["kpi", "fraud"]``; None or empty means all flows.

    Raises:
        ConfigError: an unknown flow name.
    """
    if not only:
        return list(FLOWS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in names if n not in FLOWS]
    if bad:
        raise ConfigError(f"--only {only!r}: unknown flow {bad[0]!r}; allowed: {', '.join(FLOWS)}")
    return names


def prepare_topics(settings: Settings, flows: list[str]) -> None:
    """Make sure the input and output topics of ``flows`` exist."""
    wanted = {}
    for f in flows:
        for contract_topic in (INPUT_TOPICS[f], OUTPUT_TOPICS[f]):
            name = settings.topic(contract_topic)
            wanted[name] = settings.topics[name]
    ensure_topics(resolve_bootstrap(settings), wanted, extra=settings.kafka_client)


def build_streams(settings: Settings, flows: list[str], *, until_caught_up: bool, stop: StopFlag | None, on_commit,
                  on_offsets_failed: Callable[[str, str], None] | None = None):
    """One dataflow holding each selected flow (each with its own input, state and sink)."""
    from bytewax.dataflow import Dataflow

    from pipelines.streams import fraud, kpi, offers
    from pipelines.streams.flow import add_flow

    modules = {"kpi": kpi, "fraud": fraud, "offers": offers}
    flow = Dataflow("streams")
    for name in flows:
        add_flow(flow, modules[name].spec(settings), settings, until_caught_up=until_caught_up, stop=stop, on_commit=on_commit,
                 on_offsets_failed=on_offsets_failed)
    return flow


def run_streams(
    settings: Settings,
    *,
    only: str | None = None,
    until_caught_up: bool = False,
    workers: int | None = None,
    stop: StopFlag | None = None,
    on_commit: Callable[[str, list[Emit]], None] | None = None,
    on_offsets_failed: Callable[[str, str], None] | None = None,
) -> StreamStats:
    """Run the selected flows in this process with ``workers`` Bytewax workers.

    Without ``until_caught_up`` it runs until ``stop`` is set (Ctrl-C / SIGTERM from the CLI).
    Each flow publishes its landed offsets to consumer group ``[streams] consumer_group_prefix``
    + flow name after each checkpoint; ``on_offsets_failed`` gets (group, error line) of each failed commit.
    """
    from bytewax._bytewax import cli_main

    flows = parse_only(only)
    cfg = stream_config(settings)
    prepare_topics(settings, flows)
    stats = StreamStats()

    def committed(flow: str, emits: list[Emit]) -> None:
        stats.add(flow, emits)
        if on_commit is not None:
            on_commit(flow, emits)

    stop = stop or StopFlag()
    stop.runner_raises = True
    dataflow = build_streams(settings, flows, until_caught_up=until_caught_up, stop=stop, on_commit=committed,
                             on_offsets_failed=on_offsets_failed)
    started = time.monotonic()
    try:
        cli_main(dataflow, workers_per_process=workers or cfg.streams.workers, epoch_interval=None)
    except Exception as exc:  # a step's project error comes back wrapped in Bytewax's
        raise (project_error(exc) or exc) from None
    if stop.error is not None:
        raise stop.error
    stats.seconds = time.monotonic() - started
    return stats

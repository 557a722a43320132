"""Run the ingest dataflow: continuously, or until caught up; one process or a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.core.broker import ensure_topics, free_port, resolve_bootstrap
from pipelines.core.config import Settings
from pipelines.core.contracts import CONTRACTS
from pipelines.core.errors import TelcolakeError, project_error
from pipelines.ingest.kafka_source import StopFlag
from pipelines.ingest.landing import Landed


@dataclass
class IngestStats:
    """Totals over one ingest run (thread-safe: workers report concurrently)."""

    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    extra_fields: int = 0
    commits: int = 0
    offset_commit_failures: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, landed: Landed) -> None:
        with self._lock:
            self.rows[landed.topic] = self.rows.get(landed.topic, 0) + landed.rows
            self.quarantined[landed.topic] = self.quarantined.get(landed.topic, 0) + landed.quarantined
            for r, n in landed.reasons.items():
                self.reasons[r] = self.reasons.get(r, 0) + n
            self.refused += landed.refused
            self.extra_fields += landed.extra_fields
            self.commits += 1

    def as_dict(self) -> dict:
        return {
            "rows": dict(self.rows),
            "quarantined": dict(self.quarantined),
            "reasons": dict(self.reasons),
            "refused_replays": self.refused,
            "extra_fields_ignored": self.extra_fields,
            "commits": self.commits,
            "offset_commit_failures": self.offset_commit_failures,
            "seconds": round(self.seconds, 3),
        }


def prepare_topics(settings: Settings) -> None:
    """Make sure the source topics and their dead-letter topics exist."""
    bootstrap = resolve_bootstrap(settings)
    wanted = {settings.topic(t): n for t, n in ((t, settings.topics[settings.topic(t)]) for t in CONTRACTS)}
    wanted.update({f"{t}.dlq": 1 for t in list(wanted)})
    ensure_topics(bootstrap, wanted, extra=settings.kafka_client)


def run_ingest(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    workers: int | None = None,
    on_landed: Callable[[Landed], None] | None = None,
    stop: StopFlag | None = None,
    topics: list[str] | None = None,
    on_caught_up: Callable[[], None] | None = None,
    on_offsets_failed: Callable[[str, str], None] | None = None,
) -> IngestStats:
    """Run the ingest dataflow in this process with ``workers`` Bytewax workers.

    Without ``until_caught_up`` it runs until ``stop`` is set (Ctrl-C / SIGTERM when run from
    the CLI); the batch in flight is committed first. After each bronze commit the landed
    offsets go to consumer group ``[ingest] consumer_group`` (monitoring only); a failed
    commit there is counted (``offset_commit_failures``) and given to ``on_offsets_failed``.
    """
    from bytewax._bytewax import cli_main

    from dataflows.ingest import build_flow

    prepare_topics(settings)
    stats = IngestStats()

    def landed(x: Landed) -> None:
        stats.add(x)
        if on_landed is not None:
            on_landed(x)

    def offsets_failed(group: str, line: str) -> None:
        with stats._lock:
            stats.offset_commit_failures += 1
        if on_offsets_failed is not None:
            on_offsets_failed(group, line)

    flow = build_flow(settings, until_caught_up=until_caught_up, stop=stop, on_landed=landed, topics=topics,
                      on_caught_up=on_caught_up, on_offsets_failed=offsets_failed)
    started = time.monotonic()
    try:
        cli_main(flow, workers_per_process=workers or settings.ingest.workers, epoch_interval=None)
    except Exception as exc:  # a step's project error comes back wrapped in Bytewax's
        raise (project_error(exc) or exc) from None
    stats.seconds = time.monotonic() - started
    return stats


def run_cluster(settings: Settings, *, processes: int, workers: int, until_caught_up: bool) -> float:
    """Run the ingest as a Bytewax cluster of ``processes`` local processes (127.0.0.1 ports).

    Each process runs ``python -m bytewax.run dataflows.ingest:flow -i N -a ADDRS -w W``; the
    same command with real host addresses spans machines (docs/scale-out.md).
    """
    prepare_topics(settings)
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    env = dict(os.environ, TELCOLAKE_UNTIL_CAUGHT_UP="1" if until_caught_up else "0")
    env["TELCOLAKE_KAFKA_BOOTSTRAP"] = resolve_bootstrap(settings)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.ingest:flow", "-i", str(i), "-a", addresses, "-w", str(workers)],
            env=env,
        )
        for i in range(processes)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise TelcolakeError(f"ingest cluster process exit codes {codes}")
    return time.monotonic() - started

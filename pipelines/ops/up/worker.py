"""One component of `telcolake up` in its own process: ``python -m pipelines.ops.up.worker NAME``.

Components: ``ingest`` (Kafka -> bronze, continuously), ``silver`` (silver refreshed from bronze
within ``[service] silver_interval_s`` of each landed batch), ``streams`` (the stream flows),
``fulfilment`` (the order orchestrator on the wall clock), ``responders`` (the simulated network
functions and partners answering its commands: for demos and tests, not a real network).
SIGTERM/SIGINT finish the batch in flight and exit 0. Progress goes to stdout as JSON lines
(``{"event": "landed", ...}``, ``{"event": "caught_up"}``, ...), read by the supervisor;
errors go to stderr.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime

from pipelines.core.config import Settings, load_settings
from pipelines.ingest.kafka_source import StopFlag

_out_lock = threading.Lock()


def emit(event: str, **fields) -> None:
    """One JSON line on stdout for the supervisor."""
    line = json.dumps({"event": event, "at": datetime.now(UTC).isoformat(), **fields}, default=str)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def offsets_failed(group: str, error: str) -> None:
    """A commit of landed offsets to a consumer group failed (monitoring only; counted by the service)."""
    emit("offsets_failed", group=group, error=error)


def run_ingest_component(settings: Settings, stop: StopFlag) -> None:
    from pipelines.ingest import run_ingest

    workers = settings.ingest.workers
    told = [0]

    def caught_up() -> None:
        told[0] += 1
        if told[0] == workers:
            emit("caught_up")

    def landed(x) -> None:
        emit("landed", topic=x.topic, rows=x.rows, quarantined=x.quarantined, version=x.bronze_version)

    run_ingest(settings, until_caught_up=False, stop=stop, on_landed=landed, on_caught_up=caught_up,
               on_offsets_failed=offsets_failed)


def run_silver_component(settings: Settings, stop: StopFlag, interval_s: float) -> None:
    """Refresh silver whenever bronze moved, checking every ``interval_s`` seconds."""
    from pipelines.core.lake import Lake
    from pipelines.ingest.landing import bronze_table
    from pipelines.ingest.silver import refresh

    lake = Lake.from_settings(settings)
    tables = [bronze_table("usage.events"), bronze_table("bss.events")]
    handles: dict = {}

    def version(table: str) -> int | None:
        """The table's version, reading only new commits of an open handle (cheap every second)."""
        dt = handles.get(table)
        if dt is None:
            dt = handles[table] = lake.maybe_table(table)
        else:
            dt.update_incremental()
        if dt is None:
            handles.pop(table, None)
            return None
        return dt.version()

    seen: dict[str, int | None] = {}
    last_told = 0.0
    while not stop.is_set():
        started = time.monotonic()
        current = {t: version(t) for t in tables}
        if current != seen and any(v is not None for v in current.values()):
            results = refresh(settings)
            seen = current
            emit("silver", results=[{"table": r.table, "to_version": r.to_version, "new_rows": r.new_rows,
                                     "duplicates": r.duplicates} for r in results],
                 seconds=round(time.monotonic() - started, 3))
            last_told = time.monotonic()
        elif time.monotonic() - last_told >= 10:
            emit("idle", bronze_versions=current)  # a heartbeat: silver is up to date with bronze
            last_told = time.monotonic()
        wait = max(0.0, interval_s - (time.monotonic() - started))
        deadline = time.monotonic() + wait
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.05, wait))


def run_streams_component(settings: Settings, stop: StopFlag) -> None:
    from pipelines.streams import run_streams

    def committed(flow: str, emits: list) -> None:
        emit("committed", flow=flow, events=sum(e.result.counts.get("events", 0) for e in emits))

    run_streams(settings, until_caught_up=False, stop=stop, on_commit=committed, on_offsets_failed=offsets_failed)


def run_fulfilment_component(settings: Settings, stop: StopFlag) -> None:
    from pipelines.oss import run_fulfilment

    def committed(emits: list) -> None:
        emit("committed", flow="fulfilment", events=sum(sum(v for k, v in e.result.counts.items() if k.startswith("in_")) for e in emits))

    run_fulfilment(settings, stop=stop, clock="wall", on_commit=committed)


def run_responders_component(settings: Settings, stop: StopFlag) -> None:
    from pipelines.oss import run_responders

    run_responders(settings, stop=stop)


def main(argv: list[str]) -> int:
    from pipelines.core.errors import TelcolakeError
    from pipelines.ops.up.settings import ServiceSettings

    name = argv[0] if argv else ""
    settings = load_settings()
    service = ServiceSettings.from_settings(settings)
    stop = StopFlag()
    stop.install()
    emit("started", component=name)
    try:
        if name == "ingest":
            run_ingest_component(settings, stop)
        elif name == "silver":
            run_silver_component(settings, stop, service.silver_interval_s)
        elif name == "streams":
            run_streams_component(settings, stop)
        elif name == "fulfilment":
            run_fulfilment_component(settings, stop)
        elif name == "responders":
            run_responders_component(settings, stop)
        else:
            print(f"unknown component {name!r}: expected ingest, silver, streams, fulfilment or responders", file=sys.stderr)
            return 2
    except TelcolakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    emit("stopped", component=name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`telcolake up`: the whole single-node product in one supervised process until SIGTERM/SIGINT.

It starts the embedded broker when none is configured and none runs (and starts it again if
its process dies), runs the continuous components (ingest, silver, streams) as supervised
child processes, the scheduled jobs in a thread (the ``under_up`` ones: ingest and streams
are components here), and the operator endpoints on one HTTP port. SIGTERM/SIGINT: the
scheduler interrupts its running jobs, each component finishes its batch in flight, and the
process exits 0 within 30 s. Every commit carries its own offsets (Delta app transactions),
so ``kill -9`` of the service and a restart lose and duplicate nothing.
"""

from __future__ import annotations

import collections
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pipelines.core.config import Settings
from pipelines.core.errors import BrokerError, TelcolakeError
from pipelines.ops.up.metrics import Metrics
from pipelines.ops.up.notify import Notifier, NotifySettings, Watch
from pipelines.ops.up.settings import ServiceSettings
from pipelines.ops.up.supervisor import Component, worker_argv

log = logging.getLogger("telcolake.up")

HISTORY = 120  # status refreshes kept for the page's sparklines
ALERTS_KEPT = 200  # open alerts in the snapshot (the page shows 50; each new one is notified)


class Service:
    """The running service: its broker, components, scheduler, status snapshot and HTTP server."""

    def __init__(self, settings: Settings, *, port: int | None = None) -> None:
        self.settings = settings
        self.config = ServiceSettings.from_settings(settings)
        self.port = port or self.config.port
        self.stop_event = threading.Event()
        self.components: dict[str, Component] = {}
        self.scheduler = None
        self.started = time.monotonic()
        self.broker: dict = {"kind": "embedded" if settings.embedded else "external", "address": None,
                             "reachable": False, "restarts": 0, "started_here": False, "last_error": None}
        self._snapshot: dict = {}
        self._snapshot_lock = threading.Lock()
        self._status_ready = threading.Event()
        self.run_dir = settings.state_dir / "up"
        self._caught_up_at: float | None = None
        self._silver_after_catch_up = threading.Event()
        self.notify = NotifySettings.from_settings(settings)
        self.notifier: Notifier | None = None
        self.watch: Watch | None = None
        self.metrics = Metrics(self.status, self._metric_counts)
        self._record_times = None
        self._history: collections.deque[dict] = collections.deque(maxlen=HISTORY)

    # -- what the endpoints read ------------------------------------------------------------

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def readiness(self) -> tuple[bool, list[str]]:
        reasons = []
        if not self.broker["reachable"]:
            reasons.append(f"broker {self.broker['address'] or '-'} not reachable")
        for name, c in self.components.items():
            if c.status.state != "running":
                reasons.append(f"component {name} is {c.status.state}")
        ingest = self.components.get("ingest")
        if ingest is not None and not self._caught_up_once:
            reasons.append("ingest has not caught up with the topics yet")
        if not self._status_ready.is_set():
            reasons.append("status not computed yet")
        return not reasons, reasons

    @property
    def _caught_up_once(self) -> bool:
        ingest = self.components.get("ingest")
        return ingest is not None and ingest.status.counters.get("caught_up", 0) > 0

    def status(self) -> dict:
        with self._snapshot_lock:
            snapshot = dict(self._snapshot)
        ok, reasons = self.readiness()
        return {
            "service": {"uptime_s": round(self.uptime_s(), 1), "ready": ok, "not_ready": reasons, "pid": _pid(),
                        "port": self.port, "lake": self.settings.lake_root},
            "broker": dict(self.broker),
            "components": {n: c.status.as_dict() for n, c in self.components.items()},
            "scheduler": self.scheduler.state() if self.scheduler is not None else None,
            **snapshot,
        }

    def metrics_text(self) -> bytes:
        return self.metrics.text()

    def _metric_counts(self) -> dict:
        return {"notify": self.notifier.snapshot() if self.notifier is not None else {}}

    def page_url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "[::]") else "127.0.0.1"
        return self.notify.page_url or f"http://{host}:{self.port}/"

    # -- the parts --------------------------------------------------------------------------

    def _ensure_broker(self) -> str:
        from pipelines.core import broker

        if not self.settings.embedded:
            self.broker["address"] = self.settings.kafka_bootstrap
            broker.wait_ready(self.settings.kafka_bootstrap, timeout=10)
            return self.settings.kafka_bootstrap
        was = broker.read_state(self.settings.state_dir)
        state = broker.start_embedded(self.settings.state_dir, storage=broker.storage_of(self.settings))
        self.broker.update(address=state.address, pid=state.pid, started_here=was is None, storage=broker.storage_of(self.settings).url)
        if was is None:
            log.info("started the embedded broker at %s (pid %d, storage %s)", state.address, state.pid, self.broker["storage"])
        else:
            log.info("using the running embedded broker at %s (pid %d)", state.address, state.pid)
        return state.address

    def _watch_broker(self) -> None:
        """Start the embedded broker again (same port) when its process died."""
        from pipelines.core import broker

        if not self.settings.embedded or broker.read_state(self.settings.state_dir) is not None:
            return
        port = int(self.broker["address"].rsplit(":", 1)[1]) if self.broker.get("address") else None
        log.error("the embedded broker process is gone; starting it again on port %s", port)
        try:
            state = broker.start_embedded(self.settings.state_dir, port=port, storage=broker.storage_of(self.settings))
            self.broker.update(address=state.address, pid=state.pid, restarts=self.broker["restarts"] + 1, last_error=None)
            if self.watch is not None:
                self.watch.component_restart("embedded broker", None, "its process was gone")
        except TelcolakeError as exc:
            self.broker["last_error"] = str(exc)
            log.error("could not restart the embedded broker: %s", exc)

    def _prepare_topics(self) -> None:
        from pipelines.ingest.run import prepare_topics
        from pipelines.streams.run import FLOWS
        from pipelines.streams.run import prepare_topics as prepare_stream_topics

        prepare_topics(self.settings)
        if "streams" in self.config.components:
            prepare_stream_topics(self.settings, list(FLOWS))

    def _start_components(self) -> None:
        from pipelines.ops.jobs import child_env

        env = child_env(self.settings)
        for name in self.config.components:
            c = Component(name, worker_argv(name), env, log_dir=self.run_dir, backoff_s=self.config.restart_backoff_s,
                          backoff_max_s=self.config.restart_backoff_max_s, healthy_after_s=self.config.healthy_after_s,
                          on_event=self._on_event)
            self.components[name] = c
            c.start()

    def _on_event(self, component: str, event: dict) -> None:
        kind = event.get("event")
        if kind == "crashed" and self.watch is not None:
            self.watch.component_restart(component, event.get("exit_code"), event.get("error") or "")
        if kind == "caught_up":
            log.info("%s caught up with the topics", component)
            self._caught_up_at = time.monotonic()
        elif kind in ("silver", "idle") and component == "silver" and self._caught_up_at is not None:
            self._silver_after_catch_up.set()

    def _lake_settled(self, timeout: float = 300.0) -> None:
        """Wait until ingest caught up once and silver was refreshed after that (jobs then see a whole
        lake, not a half-landed one), at most ``timeout`` seconds."""
        if "ingest" not in self.components:
            return
        deadline = time.monotonic() + timeout
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            if self._caught_up_at is not None and ("silver" not in self.components or self._silver_after_catch_up.is_set()):
                return
            self.stop_event.wait(0.2)
            if self._caught_up_at is not None and self._silver_after_catch_up.wait(0):
                return

    def _start_scheduler(self) -> None:
        from pipelines.ops.scheduler import Scheduler

        def note(record: dict) -> None:
            line = f"job {record['job']} {record['status']} (attempt {record['attempt']}/{record['max_attempts']}, {record.get('duration_s') or 0:.1f}s)"
            if record.get("error"):
                log.warning("%s: %s", line, record["error"].strip().splitlines()[-1][:200])
            else:
                log.info("%s", line)
            if self.watch is not None:
                self.watch.job_record(record)

        self.scheduler = Scheduler(self.settings, on_record=note, under_up=True, cancel_on_stop=True)
        threading.Thread(target=self._run_scheduler, name="up-scheduler", daemon=True).start()

    def _run_scheduler(self) -> None:
        self._lake_settled()
        if not self.stop_event.is_set():
            log.info("scheduler: %d jobs (%s)", len(self.scheduler.jobs), ", ".join(self.scheduler.order))
        while not self.stop_event.is_set():
            try:
                self.scheduler.run()
                return
            except Exception as exc:  # the service keeps running; the scheduler starts again
                log.exception("the scheduler failed: %s; starting it again in 5 s", exc)
                if self.stop_event.wait(5):
                    return
                self.scheduler.stop.clear()

    def _lag(self, topics: list[dict]) -> list[dict]:
        from pipelines.core.broker import client_config
        from pipelines.ops.up.lag import RecordTimes, group_lags
        from pipelines.streams.run import FLOWS

        conf = None
        if self.broker["reachable"]:
            conf = client_config(self.settings, bootstrap=self.broker["address"])
            if self._record_times is None or self._record_times.conf != conf:
                self._record_times = RecordTimes(conf)
        prefix = self.settings.values("streams")["consumer_group_prefix"]
        flows = [prefix + f for f in FLOWS] if prefix and "streams" in self.config.components else []
        return group_lags(topics, ingest_group=self.settings.ingest.consumer_group or "telcolake-ingest",
                          flow_groups=flows, conf=conf, times=self._record_times)

    def _history_point(self, out: dict) -> dict:
        lag: dict[str, int] = {}
        seconds: dict[str, float] = {}
        for r in out.get("lag") or []:
            if r["lag"] is not None:
                lag[r["group"]] = lag.get(r["group"], 0) + r["lag"]
            if r["lag_seconds"] is not None:
                seconds[r["group"]] = max(seconds.get(r["group"], 0.0), r["lag_seconds"])
        return {"at": out["computed_at"], "lag": lag, "lag_seconds": seconds,
                "landed": {t["topic"]: t["rows"] for t in out.get("topics") or []}}

    def _refresh_status(self) -> None:
        """Recompute the snapshot: broker reachability, per-partition lag, tables, jobs, quality, alerts, bills."""
        from pipelines.core.broker import wait_ready
        from pipelines.core.contracts import CONTRACTS
        from pipelines.core.lake import Lake
        from pipelines.ops.jobs import last_runs
        from pipelines.ops.lake_info import lake_tables
        from pipelines.ops.status import as_json, last_gate, topic_status
        from pipelines.ops.up import facts

        out: dict = {"computed_at": datetime.now(UTC).isoformat(), "errors": {}}
        try:
            wait_ready(self.broker["address"], timeout=2)
            self.broker["reachable"] = True
        except (BrokerError, TypeError, AttributeError) as exc:
            self.broker["reachable"] = False
            out["errors"]["broker"] = str(exc)
        lake = Lake.from_settings(self.settings)
        parts = (
            ("topics", lambda: as_json(topic_status(self.settings, with_broker=self.broker["reachable"]))),
            ("tables", lambda: [t.as_dict() for t in lake_tables(lake)]),
            ("jobs", lambda: last_runs(self.settings)),
            ("quality", lambda: last_gate(lake)),
            ("lag", lambda: self._lag(out.get("topics") or [])),
            ("quarantine", lambda: facts.quarantine_by_reason(lake, {c: self.settings.topic(c) for c in CONTRACTS})),
            ("job_stats", lambda: facts.job_stats(lake)),
            ("quality_suites", lambda: facts.quality_by_suite(lake)),
            ("alerts", lambda: facts.open_alerts(lake, limit=ALERTS_KEPT)),
            ("at_risk", lambda: facts.cells_at_risk(lake, limit=ALERTS_KEPT)),
            ("bill_cycles", lambda: facts.bill_cycles(lake)),
        )
        for key, fn in parts:
            try:
                out[key] = fn()
            except Exception as exc:  # one failing part must not hide the others
                out["errors"][key] = f"{type(exc).__name__}: {exc}"
        self._history.append(self._history_point(out))
        out["history"] = list(self._history)
        with self._snapshot_lock:
            self._snapshot = {**self._snapshot, **out}
        self._status_ready.set()
        if self.watch is not None:
            try:
                self.watch.snapshot(out)
            except Exception:  # notifications must never stop the status loop
                log.exception("notifications: could not evaluate the snapshot")

    def _status_loop(self) -> None:
        while not self.stop_event.is_set():
            self._refresh_status()
            self.stop_event.wait(self.config.status_interval_s)

    # -- run --------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; 0 after a clean stop.

        Raises:
            TelcolakeError: the broker could not be started or reached, or the port is taken.
            OSError: the HTTP port cannot be bound.
        """
        from pipelines.ops.up.server import HttpServer, create_app
        from quality.docs import docs_dir

        self.config.check_exposure()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        if self.notify.enabled:
            self.notifier = Notifier(self.notify, self.page_url())
            self.watch = Watch(self.notifier, self.notify, self.run_dir / "notified.json")
        server = HttpServer(create_app(self, token=self.config.token or None, docs_dir=docs_dir(self.settings)),
                            self.config.host, self.port)
        server.start()
        log.info("telcolake up: http://%s:%d (/ /health /ready /api/status /metrics)%s; lake %s", self.config.host, self.port,
                 " with a token" if self.config.token else "", self.settings.lake_root)
        self._ensure_broker()
        self._prepare_topics()
        self._start_components()
        if self.config.scheduler:
            self._start_scheduler()
        self._status_thread = threading.Thread(target=self._status_loop, name="up-status", daemon=True)
        self._status_thread.start()
        while not self.stop_event.wait(1.0):
            self._watch_broker()
        return self.shutdown(server)

    def shutdown(self, server) -> int:
        started = time.monotonic()
        log.info("stopping: jobs are interrupted, components finish their batch in flight")
        if self.scheduler is not None:
            self.scheduler.stop.set()
        stoppers = [threading.Thread(target=c.stop, args=(self.config.stop_timeout_s,)) for c in self.components.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        if self.scheduler is not None:
            self.scheduler.wait()
        server.stop()
        status = getattr(self, "_status_thread", None)
        if status is not None:  # a refresh in flight is inside the lake's native code: let it finish
            status.join(timeout=10)
            if status.is_alive():
                log.warning("the status refresh did not finish within 10 s of the stop")
        if self.notifier is not None:
            self.notifier.drain(2.0)
            self.notifier.close()
        codes = {n: c.status.last_exit_code for n, c in self.components.items()}
        log.info("stopped in %.1fs (component exit codes %s)", time.monotonic() - started, codes)
        return 0


def _pid() -> int:
    import os

    return os.getpid()


def configure_logging(state_dir: Path) -> None:
    """Log lines to stderr and to ``<state dir>/up/up.log``."""
    (state_dir / "up").mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    logger = logging.getLogger("telcolake.up")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(state_dir / "up" / "up.log")):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False


def run_up(settings: Settings, *, port: int | None = None) -> int:
    """`telcolake up`: run the service until SIGTERM/SIGINT; returns the exit code."""
    service = Service(settings, port=port)
    service.config.check_exposure()  # before anything is started or written
    configure_logging(settings.state_dir)
    return service.run()

"""`telcolake scheduler` (and the scheduler inside `telcolake up`): run the ``[jobs]`` of telcolake.toml.

A job becomes *due* on its cron (after its grace), when its inputs moved (``on_inputs``), or at
start for its latest missed cron time (one catch-up run per job, however many were missed).
Due runs wait in a queue and start in dependency order (:mod:`pipelines.ops.jobgraph`) when
nothing they depend on is queued or running, no running job conflicts with them (writes what
they read, or reads what they write), and fewer than ``[scheduler] max_concurrent`` jobs run.
A run that comes due while the same job runs is recorded as ``skipped``; a failed run is
retried with backoff; every attempt is recorded in ``ops/job_runs``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError
from pipelines.core.lake import Lake
from pipelines.ops.jobgraph import conflict, dependencies, matches, order
from pipelines.ops.jobs import (
    Job,
    JobLock,
    Recorder,
    last_ok_inputs,
    last_scheduled,
    load_jobs,
    run_job,
    table_versions,
)

MAX_SLEEP_S = 1.0


@dataclass(frozen=True)
class SchedulerSettings:
    """The ``[scheduler]`` section.

    Attributes:
        max_concurrent: at most this many jobs run at once.
        inputs_check_s: how often the versions of ``on_inputs`` jobs' inputs are read.
    """

    max_concurrent: int = 2
    inputs_check_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerSettings:
        section, default = settings.section("scheduler"), cls()
        limit = section.get("max_concurrent", default.max_concurrent)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"scheduler.max_concurrent = {limit!r}: expected a whole number >= 1")
        check = section.get("inputs_check_s", default.inputs_check_s)
        if isinstance(check, bool) or not isinstance(check, int | float) or check <= 0:
            raise ConfigError(f"scheduler.inputs_check_s = {check!r}: expected a number of seconds > 0")
        return cls(max_concurrent=limit, inputs_check_s=float(check))


@dataclass
class _Due:
    job: str
    scheduled_for: datetime
    trigger: str


@dataclass
class Scheduler:
    """The scheduling loop over ``jobs`` (default: the enabled jobs of the config).

    With ``under_up`` the jobs marked ``under_up = false`` (what ``telcolake up`` runs
    continuously: ingest, streams) are left out. With ``cancel_on_stop`` setting ``stop`` also
    interrupts running attempts (``up`` exits within seconds); otherwise they finish.
    """

    settings: Settings
    jobs: Mapping[str, Job] | None = None
    on_record: Callable[[dict], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    under_up: bool = False
    max_concurrent: int | None = None
    inputs_check_s: float | None = None
    cancel_on_stop: bool = False

    def __post_init__(self) -> None:
        all_jobs = self.jobs if self.jobs is not None else load_jobs(self.settings)
        self.jobs = {n: j for n, j in all_jobs.items() if j.enabled and (j.under_up or not self.under_up)}
        config = SchedulerSettings.from_settings(self.settings)
        self.limit = self.max_concurrent or config.max_concurrent
        self.inputs_check_s = self.inputs_check_s or config.inputs_check_s
        self.lake = Lake.from_settings(self.settings)
        self.recorder = Recorder(self.lake)
        self.order = order(self.jobs)
        self.deps = dependencies(self.jobs)
        self.threads: dict[str, threading.Thread] = {}
        self.executing: set[str] = set()  # jobs with an attempt running (not waiting for a retry)
        self._slots = threading.Condition()
        self.queue: dict[str, _Due] = {}
        self.records: list[dict] = []
        self._records_lock = threading.Lock()
        self._last_ok: dict[str, tuple[datetime, dict[str, int]]] = {}
        self._next_inputs_check = 0.0

    # -- records ---------------------------------------------------------------------------

    def _note(self, record: dict) -> None:
        with self._records_lock:
            self.records.append(record)
        if record.get("status") == "ok":
            self._last_ok[record["job"]] = (record["started_at"], _versions(record))
        if self.on_record:
            self.on_record(record)

    def _skip(self, name: str, scheduled_for: datetime, trigger: str, reason: str) -> None:
        self._note(self.recorder.skipped(self.jobs[name], trigger=trigger, scheduled_for=scheduled_for, reason=reason))

    # -- what is due -------------------------------------------------------------------------

    def missed(self, now: datetime) -> dict[str, datetime]:
        """Per cron job, its latest scheduled time (grace passed) at or before ``now`` that no run covered yet."""
        last = last_scheduled(self.lake)
        due = {}
        for name in self.order:
            fire = self.jobs[name].latest_ripe(now)
            if fire is not None and (name not in last or last[name] < fire):
                due[name] = fire
        return due

    def inputs_moved(self, now: datetime) -> list[str]:
        """``on_inputs`` jobs whose inputs changed since their last successful run (and whose interval passed)."""
        wanted = [n for n in self.order if self.jobs[n].on_inputs and not self._busy(n)]
        if not wanted:
            return []
        current = table_versions(self.lake)
        moved = []
        for name in wanted:
            job = self.jobs[name]
            started, seen = self._last_ok.get(name, (None, {}))
            if started is not None and (now - started).total_seconds() < job.min_interval_s:
                continue
            mine = {t: v for t, v in current.items() if matches(t, job.reads) and not matches(t, job.writes)}
            if mine and (started is None or any(seen.get(t) != v for t, v in mine.items())):
                moved.append(name)
        return moved

    def _busy(self, name: str) -> bool:
        thread = self.threads.get(name)
        return name in self.queue or (thread is not None and thread.is_alive())

    def enqueue(self, name: str, scheduled_for: datetime, trigger: str) -> None:
        """Queue a run; a run due while the job runs is skipped, one due while it waits replaces it."""
        thread = self.threads.get(name)
        if thread is not None and thread.is_alive():
            self._skip(name, scheduled_for, trigger, "previous run still running")
            return
        waiting = self.queue.get(name)
        if waiting is not None:
            if waiting.trigger in ("schedule", "catch_up") and trigger in ("schedule", "catch_up"):
                self._skip(name, waiting.scheduled_for, waiting.trigger, "superseded by a later run while it waited")
            else:
                return  # an inputs run is covered by the queued one
        self.queue[name] = _Due(name, scheduled_for, trigger)

    # -- starting runs ----------------------------------------------------------------------

    def running(self) -> list[str]:
        """Jobs with a run in progress (an attempt running, or waiting for its retry)."""
        return [n for n, t in self.threads.items() if t.is_alive()]

    def _slot_blocked(self, name: str) -> str | None:
        executing = [n for n in self.executing if n != name]
        if len(executing) >= self.limit:
            return f"{len(executing)} jobs running (max_concurrent = {self.limit})"
        for other in executing:
            if conflict(self.jobs[name], self.jobs[other]):
                return f"conflicts with running {other}"
        return None

    def blocked_by(self, name: str) -> str | None:
        """Why a queued run cannot start now (None: it can)."""
        running = self.running()
        for dep in self.deps[name]:
            if dep in self.queue or dep in running:
                return f"waits for {dep}"
        with self._slots:
            return self._slot_blocked(name)

    def _retry_slot(self, name: str) -> bool:
        """Block until a retry of ``name`` may run (a slot, nothing conflicting running); False once stopped."""
        with self._slots:
            while self._slot_blocked(name) is not None:
                if self.stop.is_set():
                    return False
                self._slots.wait(0.2)
            if self.stop.is_set():
                return False
            self.executing.add(name)
            return True

    def _free_slot(self, name: str) -> None:
        with self._slots:
            self.executing.discard(name)
            self._slots.notify_all()

    def dispatch(self) -> list[str]:
        """Start every queued run that may start now, in dependency order; returns their names."""
        started = []
        for name in self.order:
            due = self.queue.get(name)
            if due is None or name in self.running():
                continue
            with self._slots:
                if self.blocked_by(name) is not None:
                    continue
                self.executing.add(name)
            del self.queue[name]
            if self.fire(self.jobs[name], due.scheduled_for, due.trigger):
                started.append(name)
            else:
                self._free_slot(name)
        return started

    def fire(self, job: Job, scheduled_for: datetime, trigger: str) -> bool:
        """Start a run of ``job`` in a thread, or record it as skipped when another process runs it."""
        lock = JobLock(self.settings.state_dir, job.name)
        if not lock.acquire():
            self._skip(job.name, scheduled_for, trigger, "another process is running this job (lock held)")
            return False

        def work() -> None:
            try:
                run_job(self.settings, job, scheduled_for=scheduled_for, trigger=trigger, recorder=self.recorder,
                        stop=self.stop, on_attempt=self._note, cancel=self.stop if self.cancel_on_stop else None,
                        before_retry=lambda: self._retry_slot(job.name), after_attempt=lambda: self._free_slot(job.name))
            except Exception as exc:  # the scheduler itself must keep going; the run is recorded as failed
                now = datetime.now(UTC)
                self._note(self.recorder.record(
                    job=job.name, run_id=uuid.uuid4().hex[:12], trigger=trigger, scheduled_for=scheduled_for, started_at=now,
                    ended_at=now, duration_s=0.0, status="failed", attempt=1, max_attempts=job.retries + 1,
                    is_final=True, command=job.recorded_command(scheduled_for), error=f"scheduler error: {exc!r}"))
            finally:
                self._free_slot(job.name)
                lock.release()

        thread = threading.Thread(target=work, name=f"job-{job.name}", daemon=True)
        self.threads[job.name] = thread
        thread.start()
        return True

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, for_seconds: float | None = None, once: bool = False) -> list[dict]:
        """Run until ``stop`` is set (or ``for_seconds`` pass); with ``once``, only what is due now.

        Returns every record written, in order.
        """
        started = time.monotonic()
        now = datetime.now(UTC)
        self._last_ok = last_ok_inputs(self.lake)
        for name, fire in self.missed(now).items():
            self.enqueue(name, fire, "catch_up")
        for name in self.inputs_moved(now):
            self.enqueue(name, now, "inputs")
        self._next_inputs_check = time.monotonic() + self.inputs_check_s
        # The first cron time after the latest one a start may catch up (a time still in its grace comes next).
        upcoming = {name: job.next_after(job.latest_ripe(now) or now) for name, job in self.jobs.items() if job.cron}
        while not self.stop.is_set():
            self.dispatch()
            if once and not self.queue:
                break
            if for_seconds is not None and time.monotonic() - started >= for_seconds:
                break
            now = datetime.now(UTC)
            if not once:
                for name, due in upcoming.items():
                    if due.timestamp() + self.jobs[name].grace_s <= now.timestamp():
                        self.enqueue(name, due, "schedule")
                        upcoming[name] = self.jobs[name].next_after(due)
                if time.monotonic() >= self._next_inputs_check:
                    for name in self.inputs_moved(now):
                        self.enqueue(name, now, "inputs")
                    self._next_inputs_check = time.monotonic() + self.inputs_check_s
                self.dispatch()
            wakes = [d.timestamp() + self.jobs[n].grace_s for n, d in upcoming.items()]
            sleep = MAX_SLEEP_S if not wakes else max(0.0, min(MAX_SLEEP_S, min(wakes) - time.time()))
            if self.queue:
                sleep = min(sleep, 0.2)
            if for_seconds is not None:
                sleep = min(sleep, max(0.0, for_seconds - (time.monotonic() - started)))
            self.stop.wait(sleep)
        if not once:
            self.stop.set()
        self.wait()
        return self.records

    def wait(self) -> None:
        """Wait for the running jobs' current attempts (no retries start once ``stop`` is set)."""
        for thread in list(self.threads.values()):
            thread.join()

    def state(self) -> dict:
        """What runs and what waits (and why): for ``/api/status``."""
        return {
            "running": sorted(self.executing),
            "waiting_for_retry": sorted(set(self.running()) - self.executing),
            "queued": [{"job": d.job, "scheduled_for": d.scheduled_for.isoformat(), "trigger": d.trigger,
                        "blocked_by": self.blocked_by(d.job)} for d in self.queue.values()],
            "max_concurrent": self.limit,
        }


def _versions(record: dict) -> dict[str, int]:
    import json

    return json.loads(record.get("input_versions") or "{}")


def run_now(settings: Settings, name: str, *, on_attempt: Callable[[dict], None] | None = None) -> dict:
    """Run job ``name`` once now (``telcolake jobs run``): retried as configured; skipped when running.

    Raises:
        ConfigError: there is no job ``name``.
    """
    jobs = load_jobs(settings)
    if name not in jobs:
        raise ConfigError(f"jobs run {name!r}: no such job; configured: {', '.join(sorted(jobs)) or 'none'}")
    job, recorder = jobs[name], Recorder(Lake.from_settings(settings))
    now = datetime.now(UTC)
    lock = JobLock(settings.state_dir, name)
    if not lock.acquire():
        return recorder.skipped(job, trigger="manual", scheduled_for=now, reason="another process is running this job (lock held)")
    try:
        return run_job(settings, job, scheduled_for=now, trigger="manual", recorder=recorder, on_attempt=on_attempt)
    finally:
        lock.release()

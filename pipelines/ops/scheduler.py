"""`telcolake scheduler`: run the ``[jobs]`` of telcolake.toml on their cron schedules.

One run of a job at a time (a due run while the previous one still runs is recorded as
``skipped``); a run missed while the scheduler was down runs once at start; a failed run is
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
from pipelines.core.lake import Lake
from pipelines.ops.jobs import Job, JobLock, Recorder, last_scheduled, load_jobs, run_job

MAX_SLEEP_S = 1.0


@dataclass
class Scheduler:
    """The scheduling loop over ``jobs`` (default: the enabled jobs of the config)."""

    settings: Settings
    jobs: Mapping[str, Job] | None = None
    on_record: Callable[[dict], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        all_jobs = self.jobs if self.jobs is not None else load_jobs(self.settings)
        self.jobs = {n: j for n, j in all_jobs.items() if j.enabled}
        self.lake = Lake.from_settings(self.settings)
        self.recorder = Recorder(self.lake)
        self.threads: dict[str, threading.Thread] = {}
        self.records: list[dict] = []
        self._records_lock = threading.Lock()

    def _note(self, record: dict) -> None:
        with self._records_lock:
            self.records.append(record)
        if self.on_record:
            self.on_record(record)

    def missed(self, now: datetime) -> dict[str, datetime]:
        """Per job, the latest fire time at or before ``now`` that no scheduled run has covered yet."""
        last = last_scheduled(self.lake)
        due = {}
        for name, job in self.jobs.items():
            fire = job.latest_at_or_before(now)
            if name not in last or last[name] < fire:
                due[name] = fire
        return due

    def fire(self, job: Job, scheduled_for: datetime, trigger: str) -> bool:
        """Start a run of ``job`` in a thread, or record it as skipped when one is still running."""
        lock = JobLock(self.settings.state_dir, job.name)
        running = self.threads.get(job.name)
        if (running is not None and running.is_alive()) or not lock.acquire():
            reason = "previous run still running" if running is not None and running.is_alive() else \
                "another process is running this job (lock held)"
            self._note(self.recorder.skipped(job, trigger=trigger, scheduled_for=scheduled_for, reason=reason))
            return False

        def work() -> None:
            try:
                run_job(self.settings, job, scheduled_for=scheduled_for, trigger=trigger, recorder=self.recorder,
                        stop=self.stop, on_attempt=self._note)
            except Exception as exc:  # the scheduler itself must keep going; the run is recorded as failed
                now = datetime.now(UTC)
                self._note(self.recorder.record(
                    job=job.name, run_id=uuid.uuid4().hex[:12], trigger=trigger, scheduled_for=scheduled_for, started_at=now,
                    ended_at=now, duration_s=0.0, status="failed", attempt=1, max_attempts=job.retries + 1,
                    is_final=True, command=job.recorded_command(scheduled_for), error=f"scheduler error: {exc!r}"))
            finally:
                lock.release()

        thread = threading.Thread(target=work, name=f"job-{job.name}", daemon=True)
        self.threads[job.name] = thread
        thread.start()
        return True

    def run(self, *, for_seconds: float | None = None, once: bool = False) -> list[dict]:
        """Run until ``stop`` is set (or ``for_seconds`` pass); with ``once``, only the due/missed runs.

        Returns every record written, in order.
        """
        started = time.monotonic()
        now = datetime.now(UTC)
        for name, fire in self.missed(now).items():
            self.fire(self.jobs[name], fire, "catch_up")
        if once:
            self.wait()
            return self.records
        upcoming = {name: job.next_after(now) for name, job in self.jobs.items()}
        while not self.stop.is_set():
            if for_seconds is not None and time.monotonic() - started >= for_seconds:
                break
            now = datetime.now(UTC)
            for name, due in upcoming.items():
                if due <= now:
                    self.fire(self.jobs[name], due, "schedule")
                    upcoming[name] = self.jobs[name].next_after(now)
            wake = min(upcoming.values(), default=None)
            sleep = MAX_SLEEP_S if wake is None else max(0.0, min(MAX_SLEEP_S, (wake - datetime.now(UTC)).total_seconds()))
            if for_seconds is not None:
                sleep = min(sleep, max(0.0, for_seconds - (time.monotonic() - started)))
            self.stop.wait(sleep)
        self.stop.set()
        self.wait()
        return self.records

    def wait(self) -> None:
        """Wait for the running jobs' current attempts (no retries start once ``stop`` is set)."""
        for thread in list(self.threads.values()):
            thread.join()


def run_now(settings: Settings, name: str, *, on_attempt: Callable[[dict], None] | None = None) -> dict:
    """Run job ``name`` once now (``telcolake jobs run``): retried as configured; skipped when running.

    Raises:
        ConfigError: there is no job ``name``.
    """
    from pipelines.core.errors import ConfigError

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

"""Scheduled jobs: their config (``[jobs.<name>]``), one run with retries, and ``ops/job_runs``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from croniter import croniter

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError
from pipelines.core.keys import JOB
from pipelines.core.lake import Lake
from pipelines.core.schema import check_table, key_path

JOB_RUNS = "ops/job_runs"
ERROR_TAIL_CHARS = 2000
KNOWN_KEYS = set(JOB.keys)

JOB_RUNS_SCHEMA = pa.schema([
    ("job", pa.string()),
    ("run_id", pa.string()),
    ("trigger", pa.string()),  # schedule | catch_up | inputs | manual
    ("scheduled_for", pa.timestamp("us", tz="UTC")),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("ended_at", pa.timestamp("us", tz="UTC")),
    ("duration_s", pa.float64()),
    ("status", pa.string()),  # ok | failed | skipped
    ("attempt", pa.int32()),
    ("max_attempts", pa.int32()),
    ("is_final", pa.bool_()),
    ("exit_code", pa.int32()),
    ("rows", pa.int64()),
    ("command", pa.string()),  # JSON list
    ("input_versions", pa.string()),  # JSON {table: version} before the attempt
    ("output_versions", pa.string()),  # JSON {table: version} of tables the attempt changed
    ("error", pa.string()),
])


@dataclass(frozen=True)
class Job:
    """One ``[jobs.<name>]`` table.

    Attributes:
        name: the job name.
        cron: a cron expression (5 fields; a 6th field is seconds, e.g. ``* * * * * */10``);
            empty for a job that runs only when its inputs moved.
        command: telcolake CLI arguments (``["ingest", "--until-caught-up", "--json"]``);
            placeholders ``{date}``, ``{prev_date}``, ``{month}``, ``{prev_month}`` and
            ``{scheduled_for}`` are filled from the run's scheduled time (UTC).
        exec: instead of ``command``, a whole program argv (for work outside telcolake).
        retries: extra attempts after a failed one.
        retry_backoff_s: wait before retry k is ``retry_backoff_s * 2**(k-1)``.
        timeout_s: an attempt running longer is killed and fails.
        enabled: disabled jobs are listed but never scheduled.
        reads: lake tables the job reads (``silver/usage``, or a prefix ending in ``*`` such as
            ``gold/*``); it never runs beside a job that writes one of them.
        writes: lake tables the job writes, in the same form; a job reading them runs after it.
        after: jobs that run before this one when both are due (on top of reads/writes).
        on_inputs: also run when a table in ``reads`` moved since the last successful run.
        min_interval_s: an ``on_inputs`` run starts at most this often.
        grace_s: a run due at T starts at T + grace_s (its placeholders still use T): closing
            a billing cycle only after late usage had time to land.
        exclusive: runs alone (no other job beside it), e.g. compaction of every table.
        under_up: false for work that ``telcolake up`` does continuously (ingest, streams):
            the scheduler inside ``up`` leaves such a job out.
    """

    name: str
    cron: str = ""
    command: tuple[str, ...] = ()
    exec: tuple[str, ...] = ()
    retries: int = 2
    retry_backoff_s: float = 10.0
    timeout_s: float = 3600.0
    enabled: bool = True
    description: str = ""
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    on_inputs: bool = False
    min_interval_s: float = 300.0
    grace_s: float = 0.0
    exclusive: bool = False
    under_up: bool = True

    def argv(self, scheduled_for: datetime) -> list[str]:
        values = placeholders(scheduled_for)

        def fill(arg: str) -> str:
            for key, value in values.items():
                arg = arg.replace("{" + key + "}", value)
            return arg

        if self.exec:
            return [fill(a) for a in self.exec]
        return [sys.executable, "-m", "pipelines.cli", *(fill(a) for a in self.command)]

    def shown(self) -> str:
        return " ".join(self.exec) if self.exec else "telcolake " + " ".join(self.command)

    def recorded_command(self, scheduled_for: datetime) -> str:
        """The command as recorded in ``ops/job_runs``: telcolake arguments, or the exec argv (JSON)."""
        argv = self.argv(scheduled_for)
        return json.dumps(argv if self.exec else argv[3:])

    def next_after(self, when: datetime) -> datetime | None:
        """The first scheduled time after ``when`` (None for a job without a cron)."""
        return croniter(self.cron, when).get_next(datetime) if self.cron else None

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        """The latest scheduled time at or before ``when`` (None for a job without a cron)."""
        if not self.cron:
            return None
        probe = when + timedelta(microseconds=1)
        return croniter(self.cron, probe).get_prev(datetime)

    def latest_ripe(self, now: datetime) -> datetime | None:
        """The latest scheduled time whose grace has passed by ``now``: what a start catches up."""
        return self.latest_at_or_before(now - timedelta(seconds=self.grace_s))

    def shown_schedule(self) -> str:
        parts = [self.cron] if self.cron else []
        if self.grace_s:
            parts.append(f"+{self.grace_s:g}s grace")
        if self.on_inputs:
            parts.append(f"on inputs (>= {self.min_interval_s:g}s apart)")
        return ", ".join(parts) or "-"


def placeholders(when: datetime) -> dict[str, str]:
    first = when.replace(day=1)
    prev_month = first - timedelta(days=1)
    return {
        "scheduled_for": when.isoformat(),
        "date": when.date().isoformat(),
        "prev_date": (when - timedelta(days=1)).date().isoformat(),
        "month": f"{when:%Y-%m}",
        "prev_month": f"{prev_month:%Y-%m}",
    }


def parse_job(name: str, table: Mapping[str, Any]) -> Job:
    """Check one ``[jobs.<name>]`` table against its declaration in :mod:`pipelines.core.keys`.

    Raises:
        ConfigError: one line naming the key and what is allowed.
    """
    v = check_table(JOB, dict(table) if isinstance(table, Mapping) else table, f"jobs.{key_path(name)}")
    return Job(name=name, cron=v.get("cron", ""), command=v.get("command", ()), exec=v.get("exec", ()), retries=v["retries"],
               retry_backoff_s=v["retry_backoff_s"], timeout_s=v["timeout_s"], enabled=v["enabled"], description=v["description"],
               reads=v["reads"], writes=v["writes"], after=v["after"], on_inputs=v["on_inputs"], min_interval_s=v["min_interval_s"],
               grace_s=v["grace_s"], exclusive=v["exclusive"], under_up=v["under_up"])


def load_jobs(settings: Settings) -> dict[str, Job]:
    """Every job of ``[jobs]`` in the config, by name.

    Raises:
        ConfigError: a bad job table, an ``after`` naming no job, or a cycle of ``after``.
    """
    jobs = {name: parse_job(name, table) for name, table in settings.section("jobs").items()}
    for job in jobs.values():
        for other in job.after:
            if other not in jobs:
                raise ConfigError(f"jobs.{job.name}.after: no job {other!r}; configured: {', '.join(sorted(jobs))}")
    from pipelines.ops.jobgraph import after_cycle

    cycle = after_cycle(jobs)
    if cycle:
        raise ConfigError(f"jobs: the after lists form a cycle: {' -> '.join(cycle)}")
    return jobs


def table_versions(lake: Lake) -> dict[str, int]:
    """Current version of every lake table except ``ops/job_runs`` itself."""
    out = {}
    for name in lake.list_tables():
        if name != JOB_RUNS:
            version = lake.version(name)
            if version is not None:
                out[name] = version
    return out


def rows_from_output(stdout: str) -> int | None:
    """The ``rows`` count of a command's JSON output (an int, or a mapping of ints summed)."""
    text = stdout.strip()
    if not text:
        return None
    for candidate in (text, text.splitlines()[-1]):
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        docs = doc if isinstance(doc, list) else [doc]
        total, found = 0, False
        for d in docs:
            value = d.get("rows") if isinstance(d, dict) else None
            if isinstance(value, dict):
                value = sum(v for v in value.values() if isinstance(v, int) and not isinstance(v, bool))
            if isinstance(value, int) and not isinstance(value, bool):
                total, found = total + value, True
        return total if found else None
    return None


class JobLock:
    """An exclusive per-job lock file under the state dir: one run of a job at a time, across processes."""

    def __init__(self, state_dir: Path, job: str):
        self.path = state_dir / "jobs" / f"{job}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class Recorder:
    """Appends run records to ``ops/job_runs`` (serialised within the process)."""

    lake: Lake
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, **row: Any) -> dict:
        full = {f.name: row.get(f.name) for f in JOB_RUNS_SCHEMA}
        with self.lock:
            self.lake.write(JOB_RUNS, pa.Table.from_pylist([full], schema=JOB_RUNS_SCHEMA))
        return full

    def skipped(self, job: Job, *, trigger: str, scheduled_for: datetime, reason: str) -> dict:
        now = datetime.now(UTC)
        return self.record(job=job.name, run_id=uuid.uuid4().hex[:12], trigger=trigger, scheduled_for=scheduled_for,
                           started_at=now, ended_at=now, duration_s=0.0, status="skipped", attempt=0,
                           max_attempts=job.retries + 1, is_final=True, command=job.recorded_command(scheduled_for),
                           error=reason)


def error_tail(text: str) -> str:
    """The last ``ERROR_TAIL_CHARS`` of a command's output, without rich's box drawing."""
    lines = (line.strip().strip("│╭╮╰╯─ ").strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)[-ERROR_TAIL_CHARS:]


def die_with_parent() -> None:
    """In a child before exec: get SIGKILL when the process that started it dies (Linux), and
    its own process group (a timeout or shutdown kills the whole job; Ctrl-C reaches only us)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


INTERRUPTED = "interrupted: the scheduler stopped"


def _attempt(job: Job, argv: list[str], env: Mapping[str, str], cancel: threading.Event | None = None) -> tuple[int | None, str, str]:
    """Run one attempt; (exit code or None on timeout/cancel, stdout, stderr).

    With ``cancel`` set while it runs, the job's process group gets SIGTERM, then SIGKILL
    after 10 s, and the error says it was interrupted.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env),
                            preexec_fn=die_with_parent)
    deadline = time.monotonic() + job.timeout_s
    while True:
        try:
            out, err = proc.communicate(timeout=0.5 if cancel is not None else max(0.001, deadline - time.monotonic()))
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            return None, out, (err or "") + f"\n{INTERRUPTED}"
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return None, out, err + f"\ntimed out after {job.timeout_s:g}s; killed"


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a job: this process's, with the same lake, state dir and config."""
    env = dict(os.environ)
    env["TELCOLAKE_LAKE"] = settings.lake_root
    env["TELCOLAKE_STATE_DIR"] = str(settings.state_dir)
    if settings.source is not None:
        env["TELCOLAKE_CONFIG"] = str(settings.source)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_job(
    settings: Settings,
    job: Job,
    *,
    scheduled_for: datetime,
    trigger: str,
    recorder: Recorder,
    stop: threading.Event | None = None,
    on_attempt: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
    before_retry: Callable[[], bool] | None = None,
    after_attempt: Callable[[], None] | None = None,
) -> dict:
    """Run ``job`` (the caller holds its lock) with retries; record every attempt; return the last record.

    ``stop`` starts no further retry; ``cancel`` also interrupts the running attempt (its
    record is failed and not final, so the next start catches the run up). The scheduler's
    ``before_retry`` blocks until a retry may start (False: give up) and ``after_attempt``
    frees the job's slot, so a job waiting for its retry holds no slot.
    """
    lake, env = recorder.lake, child_env(settings)
    run_id = uuid.uuid4().hex[:12]
    argv = job.argv(scheduled_for)
    attempts = job.retries + 1
    record: dict = {}
    for attempt in range(1, attempts + 1):
        if attempt > 1 and before_retry is not None and not before_retry():
            break
        before = table_versions(lake)
        started = datetime.now(UTC)
        t0 = time.monotonic()
        try:
            code, out, err = _attempt(job, argv, env, cancel)
        except OSError as exc:
            code, out, err = 127, "", f"cannot start {argv[0]}: {exc}"
        duration = time.monotonic() - t0
        if after_attempt is not None:
            after_attempt()
        after = table_versions(lake)
        ok = code == 0
        interrupted = code is None and err.endswith(INTERRUPTED)
        last = (attempt == attempts or ok or (stop is not None and stop.is_set())) and not interrupted
        error = None
        if not ok:
            reason = "" if interrupted else "timed out: " if code is None else f"exit code {code}: "
            error = reason + error_tail(err.strip() or out.strip())
        record = recorder.record(
            job=job.name, run_id=run_id, trigger=trigger, scheduled_for=scheduled_for, started_at=started,
            ended_at=datetime.now(UTC), duration_s=round(duration, 3), status="ok" if ok else "failed",
            attempt=attempt, max_attempts=attempts, is_final=last, exit_code=code, rows=rows_from_output(out) if ok else None,
            command=job.recorded_command(scheduled_for), input_versions=json.dumps(before, sort_keys=True),
            output_versions=json.dumps({t: v for t, v in after.items() if before.get(t) != v}, sort_keys=True), error=error,
        )
        if on_attempt:
            on_attempt(record)
        if last or interrupted:
            break
        wait = job.retry_backoff_s * 2 ** (attempt - 1)
        if stop is not None:
            if stop.wait(wait):
                break
        else:
            time.sleep(wait)
    return record


def history(lake: Lake, job: str | None = None, *, limit: int = 20) -> list[dict]:
    """The latest ``limit`` records of ``ops/job_runs`` (of one job when given), newest first."""
    if not lake.exists(JOB_RUNS):
        return []
    import duckdb

    con = duckdb.connect()
    con.register("job_runs", lake.dataset(JOB_RUNS))
    where = "where job = $job" if job else ""
    rel = con.sql(f"select * from job_runs {where} order by started_at desc, attempt desc limit {int(limit)}",
                  params={"job": job} if job else None)
    return rel.to_arrow_table().to_pylist()


def last_runs(settings: Settings) -> list[dict]:
    """Per job, its latest attempt (a skipped one only when it never ran): for ``jobs list`` and ``status``.

    The latest attempt, not only a final one: a failed attempt whose retry never came (the
    scheduler stopped during the backoff) is still the job's last word. Each dict has job,
    status (ok | failed | skipped), trigger, scheduled_for, started_at, ended_at, duration_s,
    attempt, max_attempts, is_final, rows and error.
    """
    lake = Lake.from_settings(settings)
    if not lake.exists(JOB_RUNS):
        return []
    import duckdb

    con = duckdb.connect()
    con.register("job_runs", lake.dataset(JOB_RUNS))
    sql = """select job, status, trigger, scheduled_for, started_at, ended_at, duration_s, attempt, max_attempts, is_final, rows, error
             from job_runs
             qualify row_number() over (partition by job order by status <> 'skipped' desc, started_at desc, attempt desc) = 1
             order by job"""
    return con.sql(sql).to_arrow_table().to_pylist()


def last_scheduled(lake: Lake) -> dict[str, datetime]:
    """Per job, the latest ``scheduled_for`` a cron run (schedule or catch-up) covered, from ``ops/job_runs``.

    A run counts once it succeeded, exhausted its retries or was skipped; one interrupted by a
    shutdown, or whose retry never came, does not: the next start runs it again.
    """
    if not lake.exists(JOB_RUNS):
        return {}
    import duckdb

    con = duckdb.connect()
    con.register("job_runs", lake.dataset(JOB_RUNS))
    rows = con.sql("""select job, max(scheduled_for) from job_runs
                      where trigger in ('schedule', 'catch_up') and (is_final or status = 'ok') group by job""").fetchall()
    return {job: ts.astimezone(UTC) for job, ts in rows if ts is not None}


def last_ok_inputs(lake: Lake) -> dict[str, tuple[datetime, dict[str, int]]]:
    """Per job, when its latest successful attempt started and the table versions it saw then."""
    if not lake.exists(JOB_RUNS):
        return {}
    import duckdb

    con = duckdb.connect()
    con.register("job_runs", lake.dataset(JOB_RUNS))
    rows = con.sql("""select job, started_at, input_versions from job_runs where status = 'ok'
                      qualify row_number() over (partition by job order by started_at desc) = 1""").fetchall()
    return {job: (ts.astimezone(UTC), json.loads(v or "{}")) for job, ts, v in rows}

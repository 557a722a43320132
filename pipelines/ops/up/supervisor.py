"""Supervise `telcolake up`'s components: one child process each, restarted with backoff when it dies.

Each component runs ``python -m pipelines.ops.up.worker NAME`` in its own process (a crash, a
leak or a stuck Bytewax worker stays there), dies with the service (``PR_SET_PDEATHSIG``: a
``kill -9`` of the service leaves no orphan writing on), and reports progress as JSON lines.
A component that exits while the service runs is restarted after ``restart_backoff_s``,
doubling per crash in a row; every restart and its error (the tail of stderr) are kept for
``/api/status`` and written to the log.
"""

from __future__ import annotations

import collections
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipelines.ops.jobs import die_with_parent

log = logging.getLogger("telcolake.up")

ERROR_LINES = 30


@dataclass
class ComponentState:
    """What ``/api/status`` shows of one component."""

    name: str
    state: str = "starting"  # starting | running | backoff | stopping | stopped
    pid: int | None = None
    restarts: int = 0
    started_at: str | None = None
    last_exit_code: int | None = None
    last_exit_at: str | None = None
    last_error: str | None = None
    caught_up: bool = False
    last_event: dict | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Component:
    """One supervised child process: started, watched, restarted until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        log_dir,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        healthy_after_s: float = 60.0,
        on_event: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.name, self.argv, self.env = name, argv, dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.backoff_s, self.backoff_max_s, self.healthy_after_s = backoff_s, backoff_max_s, healthy_after_s
        self.on_event = on_event
        self.status = ComponentState(name)
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name=f"up-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, bufsize=1, preexec_fn=die_with_parent)

    def _supervise(self) -> None:
        crashes_in_a_row = 0
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    break
                self._proc = proc = self._spawn()
            started = time.monotonic()
            self.status.pid, self.status.started_at, self.status.state = proc.pid, _now(), "running"
            log.info("component %s started (pid %d)", self.name, proc.pid)
            errors: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
            err_thread = threading.Thread(target=self._read_stderr, args=(proc, errors), daemon=True)
            err_thread.start()
            self._read_stdout(proc)
            code = proc.wait()
            err_thread.join(timeout=5)
            self.status.pid, self.status.last_exit_code, self.status.last_exit_at = None, code, _now()
            if self._stopping.is_set():
                break
            ran = time.monotonic() - started
            crashes_in_a_row = 1 if ran >= self.healthy_after_s else crashes_in_a_row + 1
            tail = "\n".join(errors).strip()
            self.status.last_error = f"exit code {code}: {tail[-2000:]}" if tail else f"exit code {code}"
            self.status.restarts += 1
            self.status.caught_up = False
            wait = min(self.backoff_max_s, self.backoff_s * 2 ** (crashes_in_a_row - 1))
            self.status.state = "backoff"
            last_line = tail.splitlines()[-1] if tail else ""
            log.error("component %s exited with code %s after %.1fs; restart %d in %.1fs: %s",
                      self.name, code, ran, self.status.restarts, wait, last_line)
            if self.on_event:
                self.on_event(self.name, {"event": "crashed", "exit_code": code, "error": last_line})
            self._stopping.wait(wait)
        self.status.state = "stopped"

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            self.status.last_event = event
            self.status.counters[kind] = self.status.counters.get(kind, 0) + 1
            if kind == "caught_up":
                self.status.caught_up = True
            if self.on_event:
                self.on_event(self.name, event)

    def _read_stderr(self, proc: subprocess.Popen, errors: collections.deque) -> None:
        assert proc.stderr is not None
        with open(self.log_path, "a") as out:
            for line in proc.stderr:
                out.write(line)
                out.flush()
                if line.strip():
                    errors.append(line.rstrip())

    def stop(self, timeout: float) -> None:
        """SIGTERM the child (it finishes its batch), SIGKILL it after ``timeout``; no restart."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        self.status.state = "stopping"
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("component %s did not stop within %.0fs; killed", self.name, timeout)
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)
        self.status.state = "stopped"


def worker_argv(name: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.ops.up.worker", name]


def _now() -> str:
    return datetime.now(UTC).isoformat()

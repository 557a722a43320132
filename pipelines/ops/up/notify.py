"""Alerts out of `telcolake up`: JSON POSTed to a webhook, on a background thread, never blocking.

What is sent (``kind``): ``job_failed`` (a job's final attempt failed), ``quality_failed`` (a
gate run with failed expectations), ``lag`` (a partition's lag in seconds stayed above
``[notify] lag_seconds_above`` for ``lag_for_minutes``), ``component_restart`` (a component or
the embedded broker died and was started again), ``network_alert`` / ``fraud_alert`` (each
alert opened in ``gold/network/alerts`` / ``gold/fraud/alerts``, sent once: the ids sent are
kept in ``<state dir>/up/notified.json``). Each POST body is
``{"kind", "severity", "summary", "link", "at", "details"}``; ``[notify.routes]`` sends a kind
to its own URL. A delivery is tried ``retries`` more times with a doubling backoff; what
could not be delivered (or queued) is counted and logged, and the pipeline never waits on it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.core.config import Settings

log = logging.getLogger("telcolake.up")

KEEP_ALERT_IDS = 20_000


@dataclass(frozen=True)
class NotifySettings:
    """The ``[notify]`` section (see telcolake.toml)."""

    webhook_url: str = ""
    routes: dict[str, str] = field(default_factory=dict)
    page_url: str = ""
    lag_seconds_above: float = 300.0
    lag_for_minutes: float = 5.0
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 5.0
    queue: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifySettings:
        v = settings.values("notify")
        return cls(routes=dict(v.pop("routes", {}) or {}), **v)

    def url_for(self, kind: str) -> str | None:
        """Where ``kind`` goes: its route, else the webhook; None: nowhere."""
        return (self.routes[kind] if kind in self.routes else self.webhook_url) or None

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or any(self.routes.values()))


class Notifier:
    """Queues notifications and POSTs them from one thread, with retries and backoff."""

    def __init__(self, settings: NotifySettings, link: str) -> None:
        self.settings, self.link = settings, link.rstrip("/") + "/"
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=settings.queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="up-notify", daemon=True)
        self._thread.start()

    def send(self, kind: str, severity: str, summary: str, *, anchor: str = "", **details) -> bool:
        """Queue one notification (never blocks); False when it goes nowhere or the queue is full (counted)."""
        url = self.settings.url_for(kind)
        if url is None:
            return False
        body = {"kind": kind, "severity": severity, "summary": summary, "link": self.link + (f"#{anchor}" if anchor else ""),
                "at": datetime.now(UTC).isoformat(), "details": details}
        try:
            self._queue.put_nowait((url, body))
        except queue.Full:
            self._count(kind, "dropped")
            log.error("notification dropped, the queue is full (%d): %s", self.settings.queue, summary)
            return False
        return True

    def _count(self, kind: str, result: str) -> None:
        with self._lock:
            self.counts[(kind, result)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.counts)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            url, body = item
            self._deliver(url, body)
            self._queue.task_done()

    def _deliver(self, url: str, body: dict) -> None:
        data = json.dumps(body, default=str).encode()
        last = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                if self._stop.wait(self.settings.backoff_s * 2 ** (attempt - 1)):
                    break
            try:
                req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json",
                                                                                      "User-Agent": "telcolake-up"})
                with urllib.request.urlopen(req, timeout=self.settings.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        self._count(body["kind"], "delivered")
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(getattr(exc, "reason", exc))
        self._count(body["kind"], "failed")
        log.error("could not deliver the %s notification to the webhook after %d attempt(s) (%s): %s",
                  body["kind"], self.settings.retries + 1, last, body["summary"])

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and the last delivery finished; True when it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 2.0) -> None:
        """Stop after what is being delivered now (pending retries are given up, the rest is dropped)."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)


class Watch:
    """Turns what the service sees into notifications: job records, component events, snapshots.

    Args:
        notifier: where notifications go.
        settings: thresholds (lag).
        state_file: where the ids of alerts already sent are kept (a restart does not send them again).
        started_at: gate runs validated before this are not sent (they happened before the service).
    """

    def __init__(self, notifier: Notifier, settings: NotifySettings, state_file: Path, *, started_at: datetime | None = None) -> None:
        self.notifier, self.settings, self.state_file = notifier, settings, state_file
        self.started_at = started_at or datetime.now(UTC)
        self._gate_seen: str | None = None
        self._lag_since: dict[tuple[str, str, int], float] = {}
        self._lag_told: set[tuple[str, str, int]] = set()
        self._alerts_sent: dict[str, None] = dict.fromkeys(self._load())

    def _load(self) -> list[str]:
        try:
            return list(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return []

    def _save(self) -> None:
        ids = list(self._alerts_sent)[-KEEP_ALERT_IDS:]
        self._alerts_sent = dict.fromkeys(ids)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(ids))
        tmp.replace(self.state_file)

    def job_record(self, record: dict) -> None:
        """A job attempt was recorded: its final failed attempt is sent."""
        if record.get("status") != "failed" or not record.get("is_final"):
            return
        error = (record.get("error") or "").strip().splitlines()
        line = error[-1][:300] if error else f"exit code {record.get('exit_code')}"
        self.notifier.send("job_failed", "error", f"job {record['job']} failed (attempt {record.get('attempt')}/"
                           f"{record.get('max_attempts')}): {line}", anchor="jobs", job=record["job"], run_id=record.get("run_id"),
                           error=line)

    def component_restart(self, component: str, exit_code, error: str) -> None:
        self.notifier.send("component_restart", "warning", f"{component} exited with code {exit_code} and is restarted"
                           + (f": {error[:300]}" if error else ""), anchor="components", component=component, exit_code=exit_code)

    def snapshot(self, st: dict, *, now: float | None = None) -> None:
        """A new status snapshot: a new failed gate, lasting lag, newly opened alerts."""
        now = time.monotonic() if now is None else now
        self._gate(st.get("quality"))
        self._lag(st.get("lag") or [], now)
        self._alerts((st.get("alerts") or {}).get("items") or [])

    def _gate(self, gate: dict | None) -> None:
        at = (gate or {}).get("validated_at")
        if not at or at == self._gate_seen:
            return
        self._gate_seen = at
        if gate["failed"] and datetime.fromisoformat(at) >= self.started_at:
            names = ", ".join(f"{f['suite']}:{f['expectation']}" for f in gate["failures"][:5])
            self.notifier.send("quality_failed", "error", f"quality gate failed: {gate['failed']} expectation(s) ({names})",
                               anchor="quality", failed=gate["failed"], passed=gate["passed"], failures=gate["failures"][:20])

    def _lag(self, lags: list[dict], now: float) -> None:
        limit, hold = self.settings.lag_seconds_above, self.settings.lag_for_minutes * 60
        seen = set()
        for row in lags:
            key = (row["group"], row["topic"], row["partition"])
            seen.add(key)
            seconds = row.get("lag_seconds")
            if seconds is None or seconds <= limit:
                self._lag_since.pop(key, None)
                self._lag_told.discard(key)
                continue
            since = self._lag_since.setdefault(key, now)
            if now - since >= hold and key not in self._lag_told:
                self._lag_told.add(key)
                self.notifier.send("lag", "warning", f"consumer group {key[0]} is {seconds:.0f}s ({row['lag']} records) behind on "
                                   f"{key[1]}[{key[2]}] for {(now - since) / 60:.1f} min", anchor="lag", group=key[0], topic=key[1],
                                   partition=key[2], lag=row["lag"], lag_seconds=seconds)
        for key in set(self._lag_since) - seen:
            self._lag_since.pop(key, None)
            self._lag_told.discard(key)

    def _alerts(self, items: list[dict]) -> None:
        new = [a for a in items if f"{a['kind']}:{a['alert_id']}" not in self._alerts_sent]
        for a in reversed(new):  # oldest first
            self.notifier.send(f"{a['kind']}_alert", a.get("severity") or "warning",
                               f"{a['kind']} alert {a['rule']} on {a['entity_id']} (raised {a['raised_at']})", anchor="alerts",
                               **{k: a.get(k) for k in ("alert_id", "rule", "entity_id", "raised_at", "last_value")})
            self._alerts_sent[f"{a['kind']}:{a['alert_id']}"] = None
        if new:
            self._save()

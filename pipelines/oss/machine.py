"""The saga of one order as a state machine: every transition, in plain Python on one order at a time.

This is the reference for every case: results of each status in each phase, timeouts,
retries with backoff, holds, compensation in reverse order, cancellations and operator
retries, jeopardy. :mod:`pipelines.oss.saga` sends only the rare events here (fallout,
timers, cancellations); the common ones (a new order, a ``done`` result of an apply step
that nothing else touches) take a vectorised path that must agree with this one
(``tests/unit/oss/test_saga.py`` runs the same inputs through both).

Times: every decision is stamped with the event time of what caused it (an order's
``requested_at``, a result's ``completed_at``, a timer's due time), never with the time the
orchestrator happened to read it, so a replay writes the same rows. A command is issued at
``max(cause time, clock - grace)``: a timer that fires late does not issue a command that is
already past its own deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipelines.oss.config import FulfilmentConfig
from pipelines.oss.tables import TERMINAL

Row = dict[str, Any]
CURRENT: Row = {}  # a transition about the order's current step (the default)


def command_id(order_id: str, seq: int, step: str, action: str) -> str:
    """The idempotency key of a step's command: the same for every attempt (a target applies it once)."""
    return f"{order_id}:{seq}:{step}:{action}"


def jeopardy_id(order_id: str, phase: str, seq: int) -> str:
    return f"jeopardy:{order_id}:{phase}:{seq}"


def backoff(cfg: FulfilmentConfig, attempt: int) -> timedelta:
    """Wait before attempt ``attempt + 1``: backoff_s * 2^(attempt-1), at most backoff_max_s."""
    return timedelta(seconds=min(cfg.backoff_s * 2 ** (attempt - 1), cfg.backoff_max_s))


def next_timer(o: Row) -> datetime | None:
    """The earliest live timer of an order (None when it waits for nothing timed)."""
    if o["waiting"] == "result":
        due = [o["deadline_at"]]
        if o["jeopardy_id"] is None and o["jeopardy_at"] is not None:
            due.append(o["jeopardy_at"])
        return min(d for d in due if d is not None)
    if o["waiting"] == "retry":
        return o["retry_at"]
    return None


@dataclass
class Out:
    """What the transitions of one batch produced."""

    transitions: list[Row] = field(default_factory=list)
    commands: list[Row] = field(default_factory=list)
    alerts: list[tuple[str, Row]] = field(default_factory=list)  # (raised | cleared, alert row)
    bss: list[Row] = field(default_factory=list)
    quarantine: list[Row] = field(default_factory=list)


class Machine:
    """Applies events to order rows (dicts with the ``gold/oss/orders`` columns).

    Args:
        cfg: the fulfilment settings.
        steps: order_id -> its steps in order (``seq, step, target, operation, undo, payload``).
        completions: order_id -> its lifecycle events for the BSS (``item_id, kind, plan_id, attributes``).
        out: where transitions, commands, alerts and BSS events go.
    """

    def __init__(self, cfg: FulfilmentConfig, steps: dict[str, list[Row]], completions: dict[str, list[Row]], out: Out) -> None:
        self.cfg, self.steps, self.completions, self.out = cfg, steps, completions, out
        self.floor: datetime | None = None  # clock - grace
        self.trigger = "order"
        self.received_at: datetime | None = None

    # --- helpers ---------------------------------------------------------------------------

    def _tr(self, o: Row, kind: str, at: datetime, from_state: str, *, reason: str | None = None, step: Row | None = CURRENT) -> None:
        """Record a transition; ``step`` is the step it is about (None: the order as a whole)."""
        o["transitions"] += 1
        seq = o["step_seq"]
        s = self._step(o) if step is CURRENT else step
        self.out.transitions.append({
            "transition_id": f"{o['order_id']}:{o['transitions']}", "order_id": o["order_id"], "seq": o["transitions"],
            "kind": kind, "from_state": from_state, "state": o["state"], "step_seq": seq if s is not None else None,
            "step": s["step"] if s is not None else None, "target": s["target"] if s is not None else None,
            "attempt": o["attempt"] if s is not None else None, "command_id": o["command_id"] if kind.endswith("_sent") else None,
            "reason": reason, "trigger": self.trigger, "event_at": at, "received_at": self.received_at,
        })
        o["updated_at"] = at

    def _step(self, o: Row) -> Row | None:
        steps = self.steps.get(o["order_id"], [])
        seq = o["step_seq"]
        return steps[seq] if 0 <= seq < len(steps) else None

    def _issue_time(self, at: datetime) -> datetime:
        return at if self.floor is None or at >= self.floor else self.floor

    def _timers(self, o: Row) -> None:
        o["next_timer_at"] = next_timer(o)

    def send(self, o: Row, at: datetime) -> None:
        """Send the current step's command (apply or compensate) with the current attempt."""
        s = self._step(o)
        at = self._issue_time(at)
        action = "apply" if o["phase"] == "apply" else "compensate"
        timeout = timedelta(seconds=self.cfg.timeout_of(s["target"]))
        o.update(waiting="result", command_id=command_id(o["order_id"], s["seq"], s["step"], action), issued_at=at,
                 deadline_at=at + timeout, retry_at=None, current_step=s["step"], current_target=s["target"],
                 jeopardy_at=None if o["jeopardy_id"] is not None else at + timeout * self.cfg.sla_share)
        o["attempts_total"] += 1
        self._timers(o)
        payload = s["payload"] if action == "apply" else (
            '{"compensates":"' + command_id(o["order_id"], s["seq"], s["step"], "apply") + '"}')
        self.out.commands.append({
            "command_id": o["command_id"], "attempt": o["attempt"], "order_id": o["order_id"], "subscriber_id": o["subscriber_id"],
            "step_seq": s["seq"], "step_count": o["step_count"], "step": s["step"], "target": s["target"], "action": action,
            "operation": s["operation"] if action == "apply" else s["undo"], "issued_at": at, "payload": payload,
        })
        self._tr(o, "step_sent" if action == "apply" else "compensation_sent", at, o["state"], step=s)

    def raise_jeopardy(self, o: Row, at: datetime) -> None:
        s = self._step(o)
        o["jeopardy_id"] = jeopardy_id(o["order_id"], o["phase"], o["step_seq"])
        o["jeopardy_since"] = at
        o["jeopardies"] += 1
        o["jeopardy_at"] = None
        self.out.alerts.append(("raised", {
            "alert_id": o["jeopardy_id"], "rule": "step_sla", "severity": "major", "order_id": o["order_id"], "phase": o["phase"],
            "step_seq": o["step_seq"], "step": s["step"], "target": s["target"], "status": "open", "raised_at": at,
            "last_seen_at": at, "cleared_at": None, "cleared_by": None,
        }))
        self._timers(o)

    def clear_jeopardy(self, o: Row, at: datetime, by: str) -> None:
        if o["jeopardy_id"] is None:
            return
        _, _, phase, seq = o["jeopardy_id"].rsplit(":", 3)
        s = self.steps.get(o["order_id"], [])[int(seq)]
        self.out.alerts.append(("cleared", {
            "alert_id": o["jeopardy_id"], "rule": "step_sla", "severity": "major", "order_id": o["order_id"], "phase": phase,
            "step_seq": int(seq), "step": s["step"], "target": s["target"], "status": "cleared", "raised_at": o["jeopardy_since"],
            "last_seen_at": at, "cleared_at": at, "cleared_by": by,
        }))
        o["jeopardy_id"] = o["jeopardy_since"] = None

    # --- endings -----------------------------------------------------------------------------

    def _end(self, o: Row, state: str, at: datetime) -> None:
        before = o["state"]
        self.clear_jeopardy(o, at, state)
        o.update(state=state, waiting="none", deadline_at=None, jeopardy_at=None, retry_at=None, next_timer_at=None, completed_at=at)
        if state == "completed":
            o["lead_time_s"] = round((at - o["requested_at"]) / timedelta(microseconds=1) / 1e6, 6)
            o["current_step"] = o["current_target"] = None
            for c in self.completions.get(o["order_id"], []):
                self.out.bss.append({"event_id": f"oss:{o['order_id']}:{c['item_id']}:{c['kind']}", "subscriber_id": o["subscriber_id"],
                                     "account_id": o["account_id"], "occurred_at": at, "kind": c["kind"], "plan_id": c["plan_id"],
                                     "attributes": c["attributes"]})
        self._tr(o, state, at, before, reason=o["failure_reason"] if state != "completed" else None, step=None)

    def hold(self, o: Row, at: datetime, reason: str) -> None:
        before = o["state"]
        s = self._step(o)
        o.update(state="held", waiting="none", deadline_at=None, jeopardy_at=None, retry_at=None, next_timer_at=None,
                 failure_reason=reason, failed_step=s["step"])
        self._tr(o, "held", at, before, reason=reason)

    def compensate_from(self, o: Row, at: datetime, seq: int, cause: str) -> None:
        """Undo steps ``seq`` .. 0 in reverse order, then end failed (or cancelled)."""
        before = o["state"]
        self.clear_jeopardy(o, at, "compensation_started")
        o.update(phase="compensate", state="compensating", attempt=1, attempt_base=0, maybe_applied=False,
                 waiting="none", deadline_at=None, jeopardy_at=None, retry_at=None, next_timer_at=None)
        o["step_seq"] = seq
        self._tr(o, "compensation_started", at, before, reason=cause, step=None)
        if seq < 0:
            self._end(o, "cancelled" if o["cancel_requested_at"] is not None else "failed", at)
        else:
            self.send(o, at)

    # --- events ------------------------------------------------------------------------------

    def done(self, o: Row, at: datetime) -> None:
        """The current command succeeded."""
        self.clear_jeopardy(o, at, "step_done" if o["phase"] == "apply" else "compensated")
        o["waiting"] = "none"
        if o["phase"] == "apply":
            self._tr(o, "step_done", at, o["state"])
            o["maybe_applied"] = False
            if o["cancel_requested_at"] is not None:
                self.compensate_from(o, at, o["step_seq"], "cancel")
                return
            if o["step_seq"] + 1 == o["step_count"]:
                self._end(o, "completed", at)
            else:
                o.update(step_seq=o["step_seq"] + 1, attempt=1, attempt_base=0)
                self.send(o, at)
        else:
            self._tr(o, "compensated", at, o["state"])
            if o["step_seq"] == 0:
                self._end(o, "cancelled" if o["cancel_requested_at"] is not None else "failed", at)
            else:
                o.update(step_seq=o["step_seq"] - 1, attempt=1, attempt_base=0)
                self.send(o, at)

    def failed(self, o: Row, at: datetime, code: str) -> None:
        """The current command failed permanently: compensate (apply) or hold (compensate)."""
        s = self._step(o)
        o["waiting"] = "none"
        self._tr(o, "step_failed", at, o["state"], reason=code)
        if o["phase"] == "apply":
            o["failure_reason"], o["failed_step"] = f"{s['step']}:{code}", s["step"]
            self.compensate_from(o, at, o["step_seq"] - 1, "failure")
        else:
            self.hold(o, at, f"compensation_failed:{s['step']}:{code}")

    def attempt_failed(self, o: Row, at: datetime, code: str, *, timed_out: bool, maybe_applied: bool = False) -> None:
        """A retryable failure or a timeout: retry after a backoff, hold when attempts run out."""
        s = self._step(o)
        o["waiting"] = "none"
        if o["phase"] == "apply":
            o["maybe_applied"] = maybe_applied if timed_out else False
        self._tr(o, "step_timed_out" if timed_out else "step_retryable", at, o["state"], reason=code)
        if o["phase"] == "apply" and o["cancel_requested_at"] is not None:
            self.compensate_from(o, at, o["step_seq"] if o["maybe_applied"] else o["step_seq"] - 1, "cancel")
        elif o["attempt"] - o["attempt_base"] >= self.cfg.max_attempts:
            self.hold(o, at, f"retries_exhausted:{s['step']}:{code}")
        else:
            o.update(waiting="retry", retry_at=at + backoff(self.cfg, o["attempt"] - o["attempt_base"]), deadline_at=None, jeopardy_at=None)
            self._timers(o)

    def result(self, o: Row, r: Row) -> str:
        """Apply a result that matches the current command and attempt; returns its verdict."""
        completed = r["completed_at"]
        if o["jeopardy_id"] is None and o["jeopardy_at"] is not None and completed > o["jeopardy_at"]:
            self.raise_jeopardy(o, o["jeopardy_at"])
        if completed > o["deadline_at"]:
            self.attempt_failed(o, o["deadline_at"], "timeout", timed_out=True, maybe_applied=r["status"] == "done")
            return "late"
        if r["status"] == "done":
            self.done(o, completed)
        elif r["status"] == "failed":
            self.failed(o, completed, r["error_code"] or "failed")
        else:
            self.attempt_failed(o, completed, r["error_code"] or "retryable", timed_out=False)
        return "applied"

    def timers(self, o: Row, clock_floor: datetime) -> bool:
        """Fire the order's earliest timer due at or before ``clock_floor``; False when none is due."""
        due = o["next_timer_at"]
        if due is None or due > clock_floor:
            return False
        if o["waiting"] == "result":
            if o["jeopardy_id"] is None and o["jeopardy_at"] is not None and o["jeopardy_at"] <= o["deadline_at"] and o["jeopardy_at"] == due:
                self.raise_jeopardy(o, due)
            else:
                self.attempt_failed(o, o["deadline_at"], "timeout", timed_out=True, maybe_applied=True)
        elif o["waiting"] == "retry":
            o["attempt"] += 1
            o["retries"] += 1
            self.send(o, due)
        return True

    def cancel(self, o: Row, at: datetime) -> None:
        """A cancellation: at the next step boundary the applied steps are compensated."""
        if o["state"] in TERMINAL or o["cancel_requested_at"] is not None or o["phase"] == "compensate":
            why = f"already {o['state']}" if o["state"] in TERMINAL or o["phase"] == "compensate" else "already cancelling"
            self._tr(o, "cancel_rejected", at, o["state"], reason=why, step=None)
            return
        o["cancel_requested_at"] = at
        self._tr(o, "cancel_requested", at, o["state"], step=None)
        if o["waiting"] == "retry" or o["state"] == "held":
            self.compensate_from(o, at, o["step_seq"] if o["maybe_applied"] else o["step_seq"] - 1, "cancel")

    def retry(self, o: Row, at: datetime) -> None:
        """An operator's retry of a held order: resume at the step it is held at."""
        if o["state"] != "held":
            self._tr(o, "retry_rejected", at, o["state"], reason=f"not held: {o['state']}", step=None)
            return
        before = o["state"]
        o.update(state="in_progress" if o["phase"] == "apply" else "compensating", attempt_base=o["attempt"],
                 attempt=o["attempt"] + 1, failure_reason=None, failed_step=None)
        o["retries"] += 1
        self._tr(o, "retry_requested", at, before)
        self.send(o, at)

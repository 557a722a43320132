"""Alerts out of `telcolake up`, POSTed to a real local HTTP receiver (http.server in a thread)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.core import broker
from pipelines.ops.up.notify import Notifier, NotifySettings, Watch
from tests.helpers import WebhookReceiver as Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _notifier(url: str, **kw) -> Notifier:
    return Notifier(NotifySettings(webhook_url=url, backoff_s=0.01, timeout_s=2, **kw), "http://127.0.0.1:8760/")


def test_a_delivery_is_retried_with_backoff_until_the_receiver_takes_it():
    r = Receiver([500, 503])
    n = _notifier(r.url, retries=3)
    try:
        assert n.send("job_failed", "error", "job x failed", anchor="jobs", job="x")
        body = r.wait_for(1)[0]
        assert n.drain()
        assert r.attempts == 3
        assert {k: body[k] for k in ("kind", "severity", "summary", "link")} == {
            "kind": "job_failed", "severity": "error", "summary": "job x failed", "link": "http://127.0.0.1:8760/#jobs"}
        assert body["details"] == {"job": "x"} and datetime.fromisoformat(body["at"]).tzinfo is not None
        assert n.snapshot() == {("job_failed", "delivered"): 1}
    finally:
        n.close()
        r.close()


def test_undeliverable_notifications_are_counted_and_never_block_the_sender():
    hold = threading.Event()
    r = Receiver([500] * 10, hold=hold)  # every attempt waits on hold, then fails
    n = _notifier(r.url, retries=1)
    try:
        # the receiver holds the first POST: send() still returns at once, for every call
        assert all(n.send("lag", "warning", f"lag {i}") for i in range(3))
        assert r.attempts == 0
        hold.set()
        assert n.drain()
        assert n.snapshot() == {("lag", "failed"): 3} and r.attempts == 6 and not r.bodies
    finally:
        n.close()
        r.close()
    dead = _notifier(f"http://127.0.0.1:{broker.free_port()}/hook", retries=1)  # nothing listens there
    try:
        assert dead.send("component_restart", "warning", "ingest restarted")
        assert dead.drain()
        assert dead.snapshot() == {("component_restart", "failed"): 1}
    finally:
        dead.close()


def test_a_full_queue_drops_and_counts(receiver):
    hold = threading.Event()
    receiver.hold = hold
    n = _notifier(receiver.url, retries=0, queue=1)
    try:
        results = [n.send("lag", "warning", f"lag {i}") for i in range(5)]
        assert results[0] and not all(results)  # one in delivery, one queued, the rest dropped
        dropped = results.count(False)
        hold.set()
        assert n.drain()
        assert n.snapshot() == {("lag", "dropped"): dropped, ("lag", "delivered"): 5 - dropped}
    finally:
        n.close()


def test_routes_send_a_kind_elsewhere_or_nowhere(receiver):
    other = Receiver()
    n = Notifier(NotifySettings(webhook_url=receiver.url, routes={"fraud_alert": other.url, "lag": ""}, backoff_s=0.01),
                 "http://ops.example:8760")
    try:
        assert n.send("fraud_alert", "major", "fraud")
        assert not n.send("lag", "warning", "lag")  # routed nowhere
        assert n.send("job_failed", "error", "job")
        assert [b["kind"] for b in other.wait_for(1)] == ["fraud_alert"]
        assert [b["kind"] for b in receiver.wait_for(1)] == ["job_failed"]
        assert receiver.bodies[0]["link"] == "http://ops.example:8760/"
    finally:
        n.close()
        other.close()


def _lag(seconds: float, lag: int = 50) -> list[dict]:
    return [{"group": "telcolake-ingest", "topic": "usage.events", "partition": 2, "committed": 10, "end_offset": 10 + lag,
             "lag": lag, "lag_seconds": seconds}]


def test_the_watch_sends_failures_lasting_lag_new_alerts_and_gate_failures(receiver, tmp_path):
    settings = NotifySettings(webhook_url=receiver.url, lag_seconds_above=60, lag_for_minutes=2, backoff_s=0.01)
    n = Notifier(settings, "http://127.0.0.1:8760/")
    started = datetime.now(UTC)
    w = Watch(n, settings, tmp_path / "notified.json", started_at=started)
    alert = {"kind": "network", "alert_id": "A1", "rule": "cell_drop_rate", "severity": "major", "entity_id": "C0001",
             "raised_at": "2026-10-01T10:00:00+00:00", "last_value": 0.12}
    fraud = {**alert, "kind": "fraud", "alert_id": "F1", "rule": "simbox", "entity_id": "SUB1"}
    try:
        w.job_record({"job": "bill", "status": "failed", "is_final": False, "attempt": 1, "max_attempts": 2, "error": "x"})
        w.job_record({"job": "bill", "status": "failed", "is_final": True, "attempt": 2, "max_attempts": 2,
                      "error": "Traceback ...\nBillingError: no VAT rate for DE", "run_id": "r1"})
        w.job_record({"job": "bill", "status": "ok", "is_final": True, "attempt": 1, "max_attempts": 2})
        w.component_restart("ingest", 1, "KafkaException: broker down")
        # lag above the threshold: told once it lasted lag_for_minutes, not again while it lasts
        w.snapshot({"lag": _lag(120)}, now=1000.0)
        w.snapshot({"lag": _lag(130)}, now=1000.0 + 119)
        w.snapshot({"lag": _lag(150)}, now=1000.0 + 121)
        w.snapshot({"lag": _lag(170)}, now=1000.0 + 300)
        w.snapshot({"lag": _lag(0, lag=0)}, now=1000.0 + 301)  # caught up: a new episode may be told again
        w.snapshot({"alerts": {"items": [alert]}})
        w.snapshot({"alerts": {"items": [fraud, alert]}})  # only the new one
        old_gate = {"validated_at": (started - timedelta(hours=1)).isoformat(), "passed": 3, "failed": 1,
                    "failures": [{"suite": "bronze", "expectation": "expect_column_values_to_not_be_null"}]}
        w.snapshot({"quality": old_gate})  # ran before the service started: not sent
        gate = {**old_gate, "validated_at": datetime.now(UTC).isoformat()}
        w.snapshot({"quality": gate})
        w.snapshot({"quality": gate})  # the same run again: not sent twice
        bodies = receiver.wait_for(6)
        assert n.drain()
    finally:
        n.close()
    kinds = [b["kind"] for b in bodies]
    assert kinds == ["job_failed", "component_restart", "lag", "network_alert", "fraud_alert", "quality_failed"]
    job, restart, lag, net, fr, q = bodies
    assert job["summary"] == "job bill failed (attempt 2/2): BillingError: no VAT rate for DE" and job["link"].endswith("#jobs")
    assert restart["details"] == {"component": "ingest", "exit_code": 1}
    assert lag["details"]["lag_seconds"] == 150 and lag["details"]["partition"] == 2 and lag["severity"] == "warning"
    assert net["details"]["alert_id"] == "A1" and net["severity"] == "major" and fr["details"]["alert_id"] == "F1"
    assert q["details"]["failed"] == 1 and "bronze:expect_column_values_to_not_be_null" in q["summary"]
    # a restarted service does not send the same alerts again
    again = Receiver()
    n2 = Notifier(NotifySettings(webhook_url=again.url), "http://127.0.0.1:8760/")
    try:
        w2 = Watch(n2, settings, tmp_path / "notified.json")
        w2.snapshot({"alerts": {"items": [fraud, alert, {**alert, "alert_id": "A2"}]}})
        assert [b["details"]["alert_id"] for b in again.wait_for(1)] == ["A2"]
        assert n2.drain() and len(again.bodies) == 1
    finally:
        n2.close()
        again.close()

"""Cell KPI windows and network alerts against hand-computed scenarios, on the real broker."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow.compute as pc
import pytest
from confluent_kafka import Consumer, TopicPartition

from pipelines.core.lake import Lake
from pipelines.streams import run_streams
from tests.integration.streams.conftest import configure
from tests.integration.streams.scenarios import T0, alarm, kpi, produce_keyed


def _rows(lake: Lake, table: str, sort: list[str]) -> list[dict]:
    return lake.read(table).sort_by([(c, "ascending") for c in sort]).to_pylist()


def read_topic(bootstrap: str, topic: str) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.partition.eof": True, "log_level": 2})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    while True:
        msgs = consumer.consume(1000, timeout=2)
        if not msgs:
            break
        out += [json.loads(m.value()) for m in msgs if m.error() is None]
        if any(m.error() is not None for m in msgs):
            break
    consumer.close()
    return out


def test_windows_match_a_hand_computed_scenario_with_out_of_order_and_late_events(senv, kafka):
    settings = configure(streams={"kpi_allowed_lateness_s": 60})
    m = lambda minutes, seconds=0: T0 + timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    events = [
        kpi(1, "C0001", "S001", m(0, 10), 10, 1, latency=20, prb=50),
        kpi(2, "C0001", "S001", m(0, 40), 20, 3, latency=40, prb=70),
        kpi(3, "C0002", "S001", m(0, 30), 5, 0, latency=10, prb=30),
        kpi(4, "C0001", "S001", m(1, 20), 8, 0, latency=30, prb=60),
        kpi(5, "C0002", "S001", m(0, 50), 5, 1, latency=30, prb=50),  # out of order, within lateness
        kpi(6, "C0001", "S001", m(3, 10), 4, 2, latency=50, prb=10),  # C0001 watermark 10:03:10 closes 10:00 and 10:01
        kpi(7, "C0002", "S001", m(3, 5), 6, 0, latency=25, prb=20),  # C0002 watermark 10:03:05 closes 10:00
        kpi(8, "C0002", "S001", m(0, 55), 99, 99),  # too late: 10:01 + 60 s <= 10:03:05
        kpi(9, "C0001", "S001", m(1, 30), 99, 99),  # too late: 10:02 + 60 s <= 10:03:10
        alarm(10, "C0002", "S001", m(2, 5), code="X1"),  # late-ish but its window is still open
        kpi(11, "C0001", "S001", m(5, 0), 1, 0),  # closes 10:03 of C0001; 10:05 stays open
        kpi(12, "C0002", "S001", m(5, 0), 1, 0),  # closes 10:02 (the alarm) and 10:03 of C0002
        kpi(13, "C0009", "S002", m(0, 0), 1, 0),  # another cell: its own watermark, nothing closes
    ]
    produce_keyed(kafka, settings.topic("network.events"), events, "site_id", partitions=2)
    stats = run_streams(settings, only="kpi", until_caught_up=True)
    lake = Lake.from_settings(settings)
    got = _rows(lake, "gold/network/cell_kpi_1m", ["window_start", "cell_id"])
    expected = [
        ("C0001", m(0), 30, 4, 4 / 30, 30.0, 60.0, 2, 0, 0),
        ("C0002", m(0), 10, 1, 0.1, 20.0, 40.0, 2, 0, 0),
        ("C0001", m(1), 8, 0, 0.0, 30.0, 60.0, 1, 0, 0),
        ("C0002", m(2), 0, 0, None, None, None, 0, 1, 1),
        ("C0001", m(3), 4, 2, 0.5, 50.0, 10.0, 1, 0, 0),
        ("C0002", m(3), 6, 0, 0.0, 25.0, 20.0, 1, 0, 1),
    ]
    keys = ["cell_id", "window_start", "call_attempts", "dropped_calls", "drop_rate", "latency_ms_mean", "prb_utilization_mean",
            "kpi_samples", "alarm_events", "active_alarms"]
    rounded = [tuple(round(r[k], 9) if isinstance(r[k], float) else r[k] for k in keys) for r in got]
    assert rounded == [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in expected]
    assert all(r["window_end"] - r["window_start"] == timedelta(minutes=1) for r in got)
    q = _rows(lake, "quarantine/streams", ["event_id"])
    assert [(r["event_id"], r["entity_id"], r["reason"], r["watermark_at"]) for r in q] == [
        ("N00000008", "C0002", "too_late", m(3, 5)),
        ("N00000009", "C0001", "too_late", m(3, 10)),
    ]
    assert stats.counts["kpi"]["too_late"] == 2
    assert stats.counts["kpi"]["events"] == 13
    # a second run over the same topic adds nothing; the open windows stay open in the checkpoint
    run_streams(settings, only="kpi", until_caught_up=True)
    assert _rows(lake, "gold/network/cell_kpi_1m", ["window_start", "cell_id"]) == got
    assert lake.read("quarantine/streams").num_rows == 2


def test_alert_lifecycle_raise_once_update_and_clear_once_across_runs(senv, kafka):
    settings = senv
    topic = settings.topic("network.events")
    i = 0

    def minute(mm: int, bad: set[str]) -> list[dict]:
        nonlocal i
        out = []
        for cell in ("C0001", "C0002", "C0003"):
            i += 1
            out.append(kpi(i, cell, "S001", T0 + timedelta(minutes=mm, seconds=30), 50, 10 if cell in bad else 0))
        return out

    first = [r for mm in range(0, 10) for r in minute(mm, {"C0001"} if mm < 6 else set())]
    first.append(alarm(900, "C0002", "S001", T0 + timedelta(seconds=20), code="RF-1"))
    first.sort(key=lambda r: r["observed_at"])
    produce_keyed(kafka, topic, first, "site_id", partitions=2)
    run_streams(settings, only="kpi", until_caught_up=True)  # stops mid-scenario: state goes to the checkpoint
    second = [r for mm in range(10, 30) for r in minute(mm, {"C0001", "C0002"} if 20 <= mm < 24 else set())]
    second.append(alarm(901, "C0002", "S001", T0 + timedelta(minutes=18), code="RF-1", cleared=True))
    second.sort(key=lambda r: r["observed_at"])
    produce_keyed(kafka, topic, second, "site_id", partitions=2)
    run_streams(settings, only="kpi", until_caught_up=True)

    lake = Lake.from_settings(settings)
    alerts = {(r["rule"], r["entity_id"], r["raised_at"]): r for r in lake.read("gold/network/alerts").to_pylist()}
    at = lambda mm: T0 + timedelta(minutes=mm)  # noqa: E731
    assert set(alerts) == {
        ("drop_rate", "C0001", at(3)),
        ("alarm_uncleared", "C0002", at(16)),
        ("drop_rate", "C0001", at(23)),
        ("drop_rate", "C0002", at(23)),
        ("site_degraded", "S001", at(22)),
    }
    first_drop = alerts[("drop_rate", "C0001", at(3))]
    assert (first_drop["status"], first_drop["windows"], first_drop["cleared_at"], first_drop["last_seen_at"]) == ("cleared", 6, at(7), at(6))
    assert first_drop["peak_value"] == pytest.approx(0.2)
    uncleared = alerts[("alarm_uncleared", "C0002", at(16))]
    assert (uncleared["status"], uncleared["cleared_at"]) == ("cleared", at(18))
    assert alerts[("site_degraded", "S001", at(22))]["cleared_at"] == at(25)
    assert all(a["status"] == "cleared" for a in alerts.values())

    messages = read_topic(kafka, settings.topic("network.alerts"))
    per_alert: dict[str, list[str]] = {}
    for msg in messages:
        per_alert.setdefault(msg["alert_id"], []).append(msg["event"])
    assert len(per_alert) == 5
    for alert_id, lifecycle in per_alert.items():
        assert lifecycle.count("raised") == 1 and lifecycle.count("cleared") == 1, (alert_id, lifecycle)
        assert lifecycle[0] == "raised" and lifecycle[-1] == "cleared"
    assert len({m["event_id"] for m in messages}) == len(messages)
    kpi_rows = lake.read("gold/network/cell_kpi_1m")
    assert pc.max(kpi_rows["active_alarms"]).as_py() == 1

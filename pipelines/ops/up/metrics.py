"""``/metrics``: the service's status snapshot in the Prometheus text format (``prometheus_client``).

Nothing is computed per scrape beyond formatting: every value comes from the snapshot the
service refreshes every ``[service] status_interval_s`` (the same one ``/api/status`` and the
page serve), so a scrape never scans the lake nor waits on the broker. Lag names follow
kafka-lag-exporter (``kafka_consumergroup_group_lag``, ``..._lag_seconds``) so existing
dashboards and alert rules work. The counters (``*_total``) are read from the lake and the
supervisor, not kept in this process: a restart of the service does not reset them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _age(at: str | None, now: float) -> float | None:
    return None if not at else max(0.0, now - datetime.fromisoformat(at).timestamp())


class SnapshotCollector:
    """A collector over ``status()`` (the dict ``/api/status`` serves) and ``extra()`` counters."""

    def __init__(self, status: Callable[[], dict], extra: Callable[[], dict] | None = None) -> None:
        self.status, self.extra = status, extra

    def collect(self):
        st = self.status()
        now = time.time()
        lag = GaugeMetricFamily("kafka_consumergroup_group_lag", "Records not yet landed: true end offset minus the "
                                "group's landed offset, per partition.", labels=["group", "topic", "partition"])
        lag_s = GaugeMetricFamily("kafka_consumergroup_group_lag_seconds", "Age of the oldest record not yet landed "
                                  "(its Kafka timestamp), per partition; 0 when caught up.", labels=["group", "topic", "partition"])
        for row in st.get("lag") or []:
            labels = [row["group"], row["topic"], str(row["partition"])]
            if row["lag"] is not None:
                lag.add_metric(labels, row["lag"])
            if row["lag_seconds"] is not None:
                lag_s.add_metric(labels, row["lag_seconds"])
        yield lag
        yield lag_s

        landed = CounterMetricFamily("telcolake_records_landed", "Records landed in bronze, per topic (bronze row count).",
                                     labels=["topic"])
        for t in st.get("topics") or []:
            landed.add_metric([t["topic"]], t["rows"])
        yield landed
        quarantined = CounterMetricFamily("telcolake_records_quarantined", "Records ingest quarantined, per topic and reason.",
                                          labels=["topic", "reason"])
        for q in st.get("quarantine") or []:
            quarantined.add_metric([q["topic"], q["reason"]], q["total"])
        yield quarantined

        fresh = GaugeMetricFamily("telcolake_table_freshness_seconds", "Seconds since the table's last commit.", labels=["table"])
        version = GaugeMetricFamily("telcolake_table_version", "The table's current Delta version.", labels=["table"])
        for t in st.get("tables") or []:
            age = _age(t.get("last_commit_at"), now)
            if age is not None:
                fresh.add_metric([t["table"]], round(age, 3))
            version.add_metric([t["table"]], t["version"])
        yield fresh
        yield version

        stats = st.get("job_stats") or {}
        runs = CounterMetricFamily("telcolake_job_runs", "Job attempts recorded in ops/job_runs, per job and status "
                                   "(ok, failed, skipped).", labels=["job", "status"])
        for r in stats.get("runs") or []:
            runs.add_metric([r["job"], r["status"]], r["count"])
        yield runs
        durations = HistogramMetricFamily("telcolake_job_duration_seconds", "Duration of job attempts (ops/job_runs).",
                                          labels=["job"])
        for d in stats.get("durations") or []:
            buckets = [(_bound(b), c) for b, c in d["buckets"]] + [("+Inf", d["count"])]
            durations.add_metric([d["job"]], buckets, d["sum"])
        yield durations

        quality = GaugeMetricFamily("telcolake_quality_expectations", "Expectations of each suite's latest gate run, "
                                    "by result (passed, failed).", labels=["suite", "result"])
        for q in st.get("quality_suites") or []:
            quality.add_metric([q["suite"], "passed"], q["passed"])
            quality.add_metric([q["suite"], "failed"], q["failed"])
        yield quality
        alerts = GaugeMetricFamily("telcolake_alerts_open", "Open alerts, per kind (network, fraud).", labels=["kind"])
        for kind, n in ((st.get("alerts") or {}).get("open") or {}).items():
            alerts.add_metric([kind], n)
        yield alerts

        restarts = CounterMetricFamily("telcolake_component_restarts", "Restarts of each supervised component.",
                                       labels=["component"])
        failures = CounterMetricFamily("telcolake_offset_commit_failures", "Failed commits of landed offsets to a consumer "
                                       "group (monitoring only; the Delta log keeps them).", labels=["component"])
        for name, c in (st.get("components") or {}).items():
            restarts.add_metric([name], c.get("restarts", 0))
            failures.add_metric([name], (c.get("counters") or {}).get("offsets_failed", 0))
        yield restarts
        yield failures
        service = st.get("service") or {}
        yield GaugeMetricFamily("telcolake_ready", "1 when /ready answers 200.", value=1 if service.get("ready") else 0)
        computed = _age(st.get("computed_at"), now)
        if computed is not None:
            yield GaugeMetricFamily("telcolake_status_age_seconds", "Seconds since the status snapshot was computed.",
                                    value=round(computed, 3))
        extra = self.extra() if self.extra is not None else {}
        sent = CounterMetricFamily("telcolake_notify_deliveries", "Notifications POSTed to a webhook, per kind and result "
                                   "(delivered, failed: every retry failed, dropped: the queue was full).", labels=["kind", "result"])
        for (kind, result), n in sorted((extra.get("notify") or {}).items()):
            sent.add_metric([kind, result], n)
        yield sent


def _bound(b: float) -> str:
    return repr(float(b))


class Metrics:
    """The registry behind ``/metrics``."""

    def __init__(self, status: Callable[[], dict], extra: Callable[[], dict] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(status, extra))

    def text(self) -> bytes:
        return generate_latest(self.registry)

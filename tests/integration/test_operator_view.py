"""The operator view of `telcolake up` over real HTTP: /metrics against the lake and the broker, and the
page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import base64
import os
import shutil
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.assurance.scoring import PREDICTION_SCHEMA, PREDICTIONS_TABLE
from pipelines.core import broker
from pipelines.core.config import REPO_ROOT, load_settings
from pipelines.core.lake import Lake
from pipelines.ingest import run_ingest
from pipelines.ingest.offsets import GroupOffsets
from pipelines.ops.scheduler import run_now
from pipelines.ops.status import as_json, topic_status
from pipelines.ops.up.lag import RecordTimes, group_lags
from pipelines.ops.up.server import HttpServer, create_app
from pipelines.ops.up.service import Service
from pipelines.streams.alerts import ALERT_SCHEMA
from pipelines.streams.fraud import FRAUD_TABLE
from pipelines.streams.kpi import ALERTS_TABLE
from quality.docs import docs_dir
from quality.runner import run_gate
from tests.helpers import produce, usage_values

JOBS = """
[jobs.tick]
cron = "0 0 1 1 *"
exec = ["{py}", "-c", "print('rows: 12')"]
retries = 0

[jobs.broken]
cron = "0 0 1 1 *"
exec = ["{py}", "-c", "import sys; sys.exit('error: the input table gold/billing/invoices is missing')"]
retries = 0
"""
BAD = [b"not json", b'{"record_id": "R1", "event_type": "fax"}', b"\xff\xfe"]
SCREENSHOT = REPO_ROOT / "docs" / "img" / "operator-page.png"


def _add_jobs() -> None:
    path = Path(os.environ["TELCOLAKE_CONFIG"])
    path.write_text(path.read_text() + JOBS.format(py=sys.executable))


def _metrics(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value of every sample /metrics serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _named(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


class Operator:
    """A :class:`Service` of this test's settings, its snapshot refreshed on demand, served on a free port."""

    def __init__(self, kafka: str) -> None:
        self.settings = load_settings()
        self.service = Service(self.settings, port=broker.free_port())
        self.service.broker.update(address=kafka, reachable=True)
        self.server = HttpServer(create_app(self.service, docs_dir=docs_dir(self.settings)), "127.0.0.1", self.service.port)
        self.server.start()

    @property
    def port(self) -> int:
        return self.service.port

    def refresh(self) -> dict:
        self.service._refresh_status()
        st = self.service.status()
        assert not st["errors"], st["errors"]
        return st

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def operator(env, kafka):
    _add_jobs()
    op = Operator(kafka)
    yield op
    op.close()


def _plant_alerts(lake: Lake) -> None:
    """Alerts as the stream flows write them (ALERT_SCHEMA): two open network ones, one cleared, one open fraud one."""
    at = datetime(2026, 10, 3, 14, 0, tzinfo=UTC)

    def alert(alert_id, rule, severity, entity, status):
        return {"alert_id": alert_id, "rule": rule, "severity": severity, "entity_id": entity, "site_id": "S001", "status": status,
                "raised_at": at, "last_seen_at": at + timedelta(minutes=9), "cleared_at": at + timedelta(minutes=20) if status == "cleared" else None,
                "windows": 3, "peak_value": 0.14, "last_value": 0.11}

    lake.write(ALERTS_TABLE, pa.Table.from_pylist([alert("N1", "cell_drop_rate", "major", "C0007", "open"),
                                                   alert("N2", "site_degraded", "critical", "S001", "open"),
                                                   alert("N3", "cell_drop_rate", "major", "C0009", "cleared"),
                                                   alert("N4", "predicted_degradation", "warning", "C0011", "open"),
                                                   alert("N5", "predicted_degradation", "warning", "C0012", "cleared")], schema=ALERT_SCHEMA))
    # the prediction step's rows of its two alerts (a cleared one is no longer at risk)
    lake.write(PREDICTIONS_TABLE, pa.Table.from_pylist([
        {"alert_id": a, "cell_id": c, "site_id": "S001", "model_version": 3, "horizon_minutes": 120, "probability": p,
         "peak_probability": 0.91, "top_features": "lat_slope_short=4.2,prb_15m=71.5,alarms_1h=0.6", "last_seen_at": at}
        for a, c, p in (("N4", "C0011", 0.834), ("N5", "C0012", 0.2))], schema=PREDICTION_SCHEMA))
    lake.write(FRAUD_TABLE, pa.Table.from_pylist([alert("F1", "simbox", "major", "SUB0000042", "open")], schema=ALERT_SCHEMA))


def _land(kafka: str, op: Operator) -> str:
    topic = op.settings.topic("usage.events")
    produce(kafka, topic, usage_values(1500), partitions=4)
    produce(kafka, topic, BAD * 3, partitions=4)
    for n in (200, 1, 1, 7):  # small batches: the embedded broker then under-reports the high watermark
        produce(kafka, topic, usage_values(n, start=10_000 + n), partitions=4)
    return topic


def test_metrics_are_true_against_the_lake_and_the_broker(operator, kafka):
    op = operator
    topic = _land(kafka, op)
    produced = 1500 + 9 + 209
    time.sleep(1.0)  # the oldest record is then at least 1 s old
    before = _metrics_after_refresh(op)
    lag = _named(before, "kafka_consumergroup_group_lag")
    ours = {dict(k)["partition"]: v for k, v in lag.items() if dict(k)["topic"] == topic}
    assert {dict(k)["group"] for k, v in lag.items() if dict(k)["topic"] == topic} == {"telcolake-ingest"}
    assert sum(ours.values()) == produced and len(ours) == 4  # the true end offsets, nothing landed yet
    seconds = [v for k, v in _named(before, "kafka_consumergroup_group_lag_seconds").items() if dict(k)["topic"] == topic]
    assert len(seconds) == 4 and min(seconds) >= 1.0  # the age of each partition's first unlanded record

    run_ingest(op.settings, until_caught_up=True)
    after = _metrics_after_refresh(op)
    lake = Lake.from_settings(op.settings)
    bronze = lake.dataset("bronze/usage.events").count_rows()
    assert bronze == 1500 + 209
    landed = _named(after, "telcolake_records_landed_total")
    assert landed[(("topic", topic),)] == bronze
    lag = {dict(k)["partition"]: v for k, v in _named(after, "kafka_consumergroup_group_lag").items() if dict(k)["topic"] == topic}
    assert lag == {"0": 0, "1": 0, "2": 0, "3": 0}
    seconds = {v for k, v in _named(after, "kafka_consumergroup_group_lag_seconds").items() if dict(k)["topic"] == topic}
    assert seconds == {0.0}
    con = duckdb.connect()
    con.register("q", lake.dataset("quarantine/usage.events"))
    reasons = dict(con.execute("select reason, count(*) from q group by 1").fetchall())
    quarantined = {dict(k)["reason"]: v for k, v in _named(after, "telcolake_records_quarantined_total").items()
                   if dict(k)["topic"] == topic}
    assert quarantined == reasons and sum(reasons.values()) == 9
    versions = _named(after, "telcolake_table_version")
    assert versions[(("table", "bronze/usage.events"),)] == lake.version("bronze/usage.events")
    fresh = _named(after, "telcolake_table_freshness_seconds")[(("table", "bronze/usage.events"),)]
    assert 0 <= fresh < 600

    for job in ("tick", "tick", "broken"):
        run_now(op.settings, job)
    _plant_alerts(lake)
    jobs = _metrics_after_refresh(op)
    runs = _named(jobs, "telcolake_job_runs_total")
    assert runs[(("job", "tick"), ("status", "ok"))] == 2 and runs[(("job", "broken"), ("status", "failed"))] == 1
    count = _named(jobs, "telcolake_job_duration_seconds_count")
    assert count[(("job", "tick"),)] == 2
    inf = _named(jobs, "telcolake_job_duration_seconds_bucket")[(("job", "tick"), ("le", "+Inf"))]
    assert inf == 2
    assert _named(jobs, "telcolake_alerts_open") == {(("kind", "network"),): 3, (("kind", "fraud"),): 1}


def test_a_stream_flow_group_lags_by_its_committed_offsets(env, kafka):
    """A flow's lag is measured against what its consumer group holds (read back with the admin API)."""
    settings = load_settings()
    topic = settings.topic("network.events")
    produce(kafka, topic, [b'{"event_id": "E%d"}' % i for i in range(40)], partitions=2)
    produced_at = time.time()
    group = f"telcolake-kpi-{uuid.uuid4().hex[:6]}"
    offsets = GroupOffsets(kafka, group)
    offsets.landed({(topic, 0): 15, (topic, 1): 20})  # partition 0: 5 behind, partition 1: caught up
    assert offsets.flush() and offsets.failures == 0
    offsets.close()
    time.sleep(0.5)
    topics = as_json(topic_status(settings))
    conf = {"bootstrap.servers": kafka}
    times = RecordTimes(conf)
    rows = [r for r in group_lags(topics, ingest_group="telcolake-ingest", flow_groups=[group], conf=conf, times=times)
            if r["group"] == group]
    assert sorted((r["partition"], r["committed"], r["end_offset"], r["lag"]) for r in rows) == [(0, 15, 20, 5), (1, 20, 20, 0)]
    behind = next(r for r in rows if r["partition"] == 0)
    assert 0.5 <= behind["lag_seconds"] <= time.time() - produced_at + 1  # the age of offset 15, produced above
    assert next(r for r in rows if r["partition"] == 1)["lag_seconds"] == 0
    fetches = times.fetches
    group_lags(topics, ingest_group="telcolake-ingest", flow_groups=[group], conf=conf, times=times)
    assert fetches == 1 and times.fetches == 1  # both groups' offsets were read in one go, then came from the cache


def _metrics_after_refresh(op: Operator) -> dict:
    op.refresh()
    return _metrics(op.port)


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no chromium/chromedriver (Debian packages chromium, chromium-driver; .ci/run installs them): page not tested in a browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # the Debian build: Selenium Manager resolves and downloads nothing
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1700"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=DriverService(executable_path=driver))


@pytest.mark.slow
def test_the_page_in_headless_chromium_shows_lag_and_jobs(operator, kafka, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")
    from selenium.webdriver.common.by import By

    op = operator
    topic = _land(kafka, op)
    op.refresh()  # behind: the sparklines start at the lag before ingest
    run_ingest(op.settings, until_caught_up=True)
    run_now(op.settings, "tick")
    run_now(op.settings, "broken")
    # a gate that fails: the simulated events (October 2026) are older than 30 days allow
    path = Path(os.environ["TELCOLAKE_CONFIG"])
    path.write_text(path.read_text().replace("max_event_age_days = 3650", "max_event_age_days = 30"))
    gate = run_gate(load_settings(), ["bronze/usage.events"], raise_on_failure=False)
    assert not gate.ok
    _plant_alerts(Lake.from_settings(op.settings))
    for _ in range(2):
        op.refresh()
    browser = _browser()
    try:
        browser.get(f"http://127.0.0.1:{op.port}/")
        assert browser.title == "telcolake up"  # ready: broker reachable, status computed (no component runs here)
        rows = browser.find_elements(By.CSS_SELECTOR, "#lag-table tr")
        cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows[1:]]
        ours = sorted(c for c in cells if c[1] == topic)
        assert [c[2] for c in ours] == ["0", "1", "2", "3"]
        assert all(c[0] == "telcolake-ingest" and c[5] == "0" and c[6] == "0.0" and c[3] == c[4] for c in ours)
        assert sum(int(c[4]) for c in ours) == 1500 + 9 + 209
        jobs = {r.find_elements(By.TAG_NAME, "td")[0].text: [td.text for td in r.find_elements(By.TAG_NAME, "td")]
                for r in browser.find_elements(By.CSS_SELECTOR, "#jobs-table tr")[1:]}
        assert jobs["tick"][1] == "ok" and jobs["broken"][1] == "failed"
        assert jobs["broken"][5].endswith("error: the input table gold/billing/invoices is missing")
        assert browser.find_elements(By.CSS_SELECTOR, "#lag svg.spark")
        assert "2026-10" in browser.find_element(By.ID, "billing").text
        quality = browser.find_element(By.ID, "quality")
        failed = [td.text for td in quality.find_elements(By.CSS_SELECTOR, "#quality-failures td.bad")]
        assert failed and len(failed) == len(gate.failures)
        docs = quality.find_element(By.LINK_TEXT, "Data Docs").get_attribute("href")
        alerts = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in browser.find_elements(By.CSS_SELECTOR, "#alerts-table tr")[1:]]
        assert sorted((a[0], a[1], a[3]) for a in alerts) == [("fraud", "simbox", "SUB0000042"), ("network", "cell_drop_rate", "C0007"),
                                                              ("network", "predicted_degradation", "C0011"),
                                                              ("network", "site_degraded", "S001")]
        at_risk = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in browser.find_elements(By.CSS_SELECTOR, "#at-risk-table tr")[1:]]
        assert [r[:5] + r[7:] for r in at_risk] == [["C0011", "S001", "0.83", "0.91", "120 min", "v3"]]
        assert at_risk[0][5] == "lat_slope_short=4.2, prb_15m=71.5, alarms_1h=0.6"
        refresh = browser.find_element(By.CSS_SELECTOR, "meta[http-equiv=refresh]").get_attribute("content")
        assert refresh == "5"
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
        browser.get(docs)
        assert "/quality-docs/index.html" in browser.current_url and browser.find_elements(By.TAG_NAME, "a")
    finally:
        browser.quit()
    assert SCREENSHOT.stat().st_size > 10_000

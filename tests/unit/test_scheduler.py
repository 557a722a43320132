"""The scheduler with real subprocesses and a real ``ops/job_runs`` table: runs, overlap, retries, catch-up."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from pipelines.core.errors import ConfigError
from pipelines.core.lake import Lake
from pipelines.ops.jobs import (
    JOB_RUNS,
    JobLock,
    Recorder,
    history,
    last_runs,
    parse_job,
    rows_from_output,
    run_job,
)
from pipelines.ops.scheduler import Scheduler, run_now

PY = sys.executable


def job(name: str, **table):
    return parse_job(name, {"cron": "* * * * * *", "retry_backoff_s": 0.05, **table})


def runs(lake: Lake, name: str) -> list[dict]:
    return sorted(history(lake, name, limit=1000), key=lambda r: (r["started_at"], r["attempt"]))


def test_one_second_cron_runs(local_settings):
    lake = Lake.from_settings(local_settings)
    tick = job("tick", exec=[PY, "-c", "print('{\"rows\": {\"a\": 2, \"b\": 3}}')"], retries=0)
    records = Scheduler(local_settings, jobs={"tick": tick}).run(for_seconds=3.2)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) >= 2, records
    assert ok[0]["trigger"] == "catch_up" and all(r["trigger"] == "schedule" for r in ok[1:])
    stored = runs(lake, "tick")
    assert len(stored) == len(records)
    assert all(r["rows"] == 5 and r["attempt"] == 1 and r["is_final"] for r in stored if r["status"] == "ok")
    times = [r["scheduled_for"] for r in stored]
    assert len(set(times)) == len(times)
    assert all((b - a).total_seconds() >= 1 for a, b in zip(sorted(times), sorted(times)[1:], strict=False))


def test_run_records_input_and_output_table_versions(local_settings):
    lake = Lake.from_settings(local_settings)
    lake.write("silver/usage", pa.table({"x": [1]}))
    code = ("import os, pyarrow as pa; from pipelines.core.lake import Lake;"
            "Lake(os.environ['TELCOLAKE_LAKE']).write('silver/usage', pa.table({'x': [2]}))")
    writer = job("writer", exec=[PY, "-c", code], retries=0)
    record = run_job(local_settings, writer, scheduled_for=datetime.now(UTC), trigger="manual", recorder=Recorder(lake))
    assert record["status"] == "ok" and record["rows"] is None
    assert json.loads(record["input_versions"]) == {"silver/usage": 0}
    assert json.loads(record["output_versions"]) == {"silver/usage": 1}
    again = run_job(local_settings, writer, scheduled_for=datetime.now(UTC), trigger="manual", recorder=Recorder(lake))
    assert JOB_RUNS not in json.loads(again["input_versions"]) and lake.exists(JOB_RUNS)
    assert json.loads(again["output_versions"]) == {"silver/usage": 2}


def test_overlapping_run_is_skipped(local_settings):
    lake = Lake.from_settings(local_settings)
    slow = job("slow", exec=[PY, "-c", "import time; time.sleep(3.5)"], retries=0)  # outlasts the loop
    records = Scheduler(local_settings, jobs={"slow": slow}).run(for_seconds=2.9)
    statuses = [r["status"] for r in records]
    assert statuses.count("ok") == 1 and statuses.count("skipped") >= 1, statuses
    skipped = [r for r in runs(lake, "slow") if r["status"] == "skipped"]
    assert skipped and all("still running" in r["error"] and r["attempt"] == 0 for r in skipped)


def test_run_now_is_skipped_while_another_process_holds_the_job(local_settings):
    lock = JobLock(local_settings.state_dir, "maintenance")
    assert lock.acquire()
    try:
        record = run_now(local_settings, "maintenance")
    finally:
        lock.release()
    assert record["status"] == "skipped" and "lock held" in record["error"]
    with pytest.raises(ConfigError, match="no such job"):
        run_now(local_settings, "nope")


def test_failing_job_is_retried_with_backoff_and_recorded_failed(local_settings):
    lake = Lake.from_settings(local_settings)
    flaky = job("flaky", exec=[PY, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], retries=2)
    started = datetime.now(UTC)
    last = run_job(local_settings, flaky, scheduled_for=started, trigger="manual", recorder=Recorder(lake))
    stored = runs(lake, "flaky")
    assert [(r["attempt"], r["status"], r["is_final"]) for r in stored] == [(1, "failed", False), (2, "failed", False), (3, "failed", True)]
    assert len({r["run_id"] for r in stored}) == 1
    assert all(r["exit_code"] == 3 and r["error"] == "exit code 3: boom" for r in stored)
    gaps = [(b["started_at"] - a["ended_at"]).total_seconds() for a, b in zip(stored, stored[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # 0.05 then 0.1: exponential backoff
    assert last["status"] == "failed" and last_runs(local_settings)[0]["status"] == "failed"


def test_missing_cli_command_and_timeout_fail_with_a_clear_error(local_settings):
    lake = Lake.from_settings(local_settings)
    missing = job("missing", command=["no-such-command", "--json"], retries=0)
    record = run_job(local_settings, missing, scheduled_for=datetime.now(UTC), trigger="manual", recorder=Recorder(lake))
    assert record["status"] == "failed" and "No such command 'no-such-command'" in record["error"]
    hung = job("hung", exec=[PY, "-c", "import time; time.sleep(30)"], retries=0, timeout_s=0.5)
    record = run_job(local_settings, hung, scheduled_for=datetime.now(UTC), trigger="manual", recorder=Recorder(lake))
    assert record["status"] == "failed" and "timed out after 0.5s" in record["error"] and record["duration_s"] < 5


def test_telcolake_command_job_reads_rows_from_json(local_settings):
    lake = Lake.from_settings(local_settings)
    sql = job("sql", command=["sql", "-c", "select 7 as rows", "--format", "json"], retries=0)
    record = run_job(local_settings, sql, scheduled_for=datetime.now(UTC), trigger="manual", recorder=Recorder(lake))
    assert record["status"] == "ok" and record["rows"] == 7
    assert json.loads(record["command"]) == ["sql", "-c", "select 7 as rows", "--format", "json"]


def test_missed_run_at_start_runs_once(local_settings):
    lake = Lake.from_settings(local_settings)
    minutely = parse_job("minutely", {"cron": "* * * * *", "exec": [PY, "-c", "print('{\"rows\": 1}')"]})
    now = datetime.now(UTC)
    latest = minutely.latest_at_or_before(now)
    Recorder(lake).record(job="minutely", run_id="old", trigger="schedule", scheduled_for=latest - timedelta(minutes=5),
                          started_at=latest - timedelta(minutes=5), status="ok", attempt=1, is_final=True)
    first = Scheduler(local_settings, jobs={"minutely": minutely}).run(once=True)
    assert [(r["trigger"], r["status"], r["scheduled_for"]) for r in first] == [("catch_up", "ok", latest)]
    second = Scheduler(local_settings, jobs={"minutely": minutely}).run(once=True)
    if minutely.latest_at_or_before(datetime.now(UTC)) == latest:  # not across a minute boundary
        assert second == []
    assert len([r for r in runs(lake, "minutely") if r["trigger"] == "catch_up"]) == 1 + len(second)


def test_job_config_is_validated():
    with pytest.raises(ConfigError, match=r"jobs.x.cron = 'every minute'"):
        parse_job("x", {"cron": "every minute", "command": ["ingest"]})
    with pytest.raises(ConfigError, match="exactly one of command"):
        parse_job("x", {"cron": "* * * * *"})
    with pytest.raises(ConfigError, match=r"jobs.x.retries"):
        parse_job("x", {"cron": "* * * * *", "command": ["ingest"], "retries": -1})
    with pytest.raises(ConfigError, match=r"jobs.x.colour: unknown key"):
        parse_job("x", {"cron": "* * * * *", "command": ["ingest"], "colour": "red"})
    bill = parse_job("bill", {"cron": "0 2 1 * *", "command": ["bill-run", "--cycle", "{prev_month}"]})
    assert bill.argv(datetime(2026, 1, 1, 2, tzinfo=UTC))[-3:] == ["bill-run", "--cycle", "2025-12"]


def test_default_jobs_in_the_config_parse(local_settings):
    from pipelines.ops.jobs import load_jobs

    jobs = load_jobs(local_settings)
    assert {"ingest", "streams", "bill_run", "churn_features", "quality", "partner_publish", "maintenance"} <= set(jobs)
    assert jobs["ingest"].cron == "* * * * *" and jobs["bill_run"].cron == "0 0 1 * *" and jobs["bill_run"].grace_s == 86400
    assert jobs["churn_features"].argv(datetime(2026, 10, 4, 3, tzinfo=UTC))[-3:] == ["--as-of", "2026-10-04", "--json"]
    assert not jobs["ingest"].under_up and not jobs["streams"].under_up and jobs["quality"].on_inputs


def test_rows_from_output():
    assert rows_from_output('{"rows": 4}') == 4
    assert rows_from_output('progress\n{"rows": {"a": 1, "b": 2}}') == 3
    assert rows_from_output('[{"rows": 1}, {"rows": 2}]') == 3
    assert rows_from_output('{"invoices": 3}') is None and rows_from_output("") is None

"""The scheduler's dependency graph with real job subprocesses: order, no overlap with writers of
inputs, the concurrency limit, latest-missed-only catch-up, grace, inputs-moved runs, failures shown."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from pipelines.core.errors import ConfigError
from pipelines.core.lake import Lake
from pipelines.ops.jobgraph import conflict, dependencies, order, overlap
from pipelines.ops.jobs import Recorder, last_runs, load_jobs, parse_job
from pipelines.ops.scheduler import Scheduler

PY = sys.executable


def sleeper(name: str, seconds: float, **table):
    code = f"import time; time.sleep({seconds})"
    return parse_job(name, {"cron": "* * * * *", "exec": [PY, "-c", code], "retries": 0, **table})


def intervals(records: list[dict], job: str) -> list[tuple[datetime, datetime]]:
    return [(r["started_at"], r["ended_at"]) for r in records if r["job"] == job and r["status"] != "skipped"]


def overlapping(a: list[tuple[datetime, datetime]], b: list[tuple[datetime, datetime]]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def test_patterns_conflicts_and_order():
    assert overlap("gold/*", "gold/billing/invoices") and overlap("gold/billing/*", "gold/*")
    assert not overlap("gold/billing/*", "gold/churn/*") and not overlap("silver/usage", "silver/subscribers")
    a = parse_job("a", {"cron": "* * * * *", "exec": ["true"], "writes": ["silver/usage"]})
    b = parse_job("b", {"cron": "* * * * *", "exec": ["true"], "reads": ["silver/*"], "writes": ["gold/billing/*"]})
    c = parse_job("c", {"cron": "* * * * *", "exec": ["true"], "reads": ["gold/*"]})
    d = parse_job("d", {"cron": "* * * * *", "exec": ["true"], "after": ["c"]})
    m = parse_job("m", {"cron": "* * * * *", "exec": ["true"], "exclusive": True})
    jobs = {j.name: j for j in (d, c, b, a, m)}
    assert order(jobs) == ["a", "b", "c", "d", "m"]
    assert dependencies(jobs)["b"] == {"a"} and dependencies(jobs)["c"] == {"b"} and dependencies(jobs)["d"] == {"c"}
    assert conflict(a, b) and conflict(b, c) and not conflict(a, c) and conflict(m, d)


def test_after_cycle_and_unknown_names_are_refused(local_settings):
    def settings_with(jobs):
        return dataclasses.replace(local_settings, raw={**local_settings.raw, "jobs": jobs})

    x = {"cron": "* * * * *", "exec": ["true"]}
    with pytest.raises(ConfigError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        load_jobs(settings_with({"a": {**x, "after": ["b"]}, "b": {**x, "after": ["a"]}}))
    with pytest.raises(ConfigError, match="jobs.a.after: no job 'nope'"):
        load_jobs(settings_with({"a": {**x, "after": ["nope"]}}))
    with pytest.raises(ConfigError, match="prefix ending in"):
        parse_job("a", {**x, "reads": ["gold/*/invoices"]})
    with pytest.raises(ConfigError, match="expected a cron expression, on_inputs"):
        parse_job("a", {"exec": ["true"]})


def test_catch_up_runs_each_job_once_in_dependency_order(local_settings):
    # configured consumer-first: the graph, not the config order, decides
    c = sleeper("c", 0.3, reads=["gold/b"])
    b = sleeper("b", 0.3, reads=["silver/a"], writes=["gold/b"])
    a = sleeper("a", 0.3, writes=["silver/a"])
    lake = Lake.from_settings(local_settings)
    now = datetime.now(UTC)
    latest = a.latest_at_or_before(now)
    # `a` last ran 10 missed minutes ago: it catches up once, for the latest time only
    Recorder(lake).record(job="a", run_id="old", trigger="schedule", scheduled_for=latest - timedelta(minutes=10),
                          started_at=latest - timedelta(minutes=10), status="ok", attempt=1, is_final=True)
    records = Scheduler(local_settings, jobs={"c": c, "b": b, "a": a}, max_concurrent=3).run(once=True)
    assert sorted((r["job"], r["trigger"], r["status"]) for r in records) == [
        ("a", "catch_up", "ok"), ("b", "catch_up", "ok"), ("c", "catch_up", "ok")]
    assert all(r["scheduled_for"] == latest for r in records) or a.latest_at_or_before(datetime.now(UTC)) != latest
    (a0, a1), (b0, b1), (c0, c1) = (intervals(records, n)[0] for n in "abc")
    assert a1 <= b0 and b1 <= c0, "a consumer started before the job writing its input ended"


def test_a_reader_never_runs_beside_the_writer_of_its_inputs(local_settings):
    # the bill run / quality race: both due every second, the writer takes longer than a second
    writer = parse_job("bill", {"cron": "* * * * * *", "exec": [PY, "-c", "import time; time.sleep(1.2)"], "retries": 0,
                                "writes": ["gold/billing/*"]})
    reader = parse_job("quality", {"cron": "* * * * * *", "exec": [PY, "-c", "import time; time.sleep(0.2)"], "retries": 0,
                                   "reads": ["gold/*"], "writes": ["ops/quality_results"]})
    records = Scheduler(local_settings, jobs={"bill": writer, "quality": reader}, max_concurrent=4).run(for_seconds=5)
    w, r = intervals(records, "bill"), intervals(records, "quality")
    assert len(w) >= 2 and len(r) >= 2, records
    assert not overlapping(w, r), "quality ran while the bill run was writing"


def test_global_concurrency_limit(local_settings):
    jobs = {n: sleeper(n, 0.6) for n in ("x", "y", "z")}
    records = Scheduler(local_settings, jobs=jobs, max_concurrent=1).run(once=True)
    spans = sorted(s for n in jobs for s in intervals(records, n))
    assert len(spans) == 3
    assert all(e0 <= s1 for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False)), spans


def test_grace_delays_a_run_and_catch_up_skips_times_still_in_grace(local_settings):
    hourly = parse_job("close", {"cron": "0 * * * *", "grace_s": 7200, "exec": ["true"]})
    now = datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    assert hourly.latest_ripe(now) == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    tick = parse_job("tick", {"cron": "* * * * * *", "grace_s": 1.5, "exec": ["true"], "retries": 0})
    records = Scheduler(local_settings, jobs={"tick": tick}).run(for_seconds=4)
    ran = [r for r in records if r["status"] == "ok"]
    assert ran, records
    assert all((r["started_at"] - r["scheduled_for"]).total_seconds() >= 1.5 for r in ran), \
        [(r["scheduled_for"], r["started_at"]) for r in ran]


def test_on_inputs_runs_when_an_input_moved(local_settings):
    lake = Lake.from_settings(local_settings)
    lake.write("silver/usage", pa.table({"x": [1]}))
    job = parse_job("gate", {"on_inputs": True, "min_interval_s": 0, "exec": ["true"], "retries": 0,
                             "reads": ["silver/*"], "writes": ["ops/quality_results"]})

    def once():
        return Scheduler(local_settings, jobs={"gate": job}).run(once=True)

    first = once()
    assert [(r["trigger"], r["status"]) for r in first] == [("inputs", "ok")]
    assert once() == []  # nothing moved
    lake.write("silver/usage", pa.table({"x": [2]}))
    assert [(r["trigger"], r["status"]) for r in once()] == [("inputs", "ok")]
    lake.write("gold/other", pa.table({"x": [2]}))  # not an input
    assert once() == []
    # while running, a loop notices moves every inputs_check_s
    loop = Scheduler(local_settings, jobs={"gate": job}, inputs_check_s=0.2)
    import threading

    t = threading.Thread(target=loop.run, kwargs={"for_seconds": 3})
    t.start()
    import time

    time.sleep(1.0)
    lake.write("silver/usage", pa.table({"x": [3]}))
    t.join()
    assert [(r["trigger"], r["status"]) for r in loop.records] == [("inputs", "ok")]


def test_under_up_leaves_out_what_up_runs_continuously(local_settings):
    names = set(Scheduler(local_settings, under_up=True).jobs)
    assert "ingest" not in names and "streams" not in names and {"bill_run", "quality", "maintenance"} <= names
    assert {"ingest", "streams"} <= set(Scheduler(local_settings).jobs)


def test_a_failure_shows_in_jobs_list_history_and_status_even_when_its_retry_never_came(local_settings, tmp_path):
    failing = parse_job("features", {"cron": "* * * * *", "command": ["features", "--json"], "retries": 2, "retry_backoff_s": 60})
    records = Scheduler(local_settings, jobs={"features": failing}).run(for_seconds=6)
    ran = [r for r in records if r["status"] != "skipped"]
    assert [r["status"] for r in ran] == ["failed"] and not ran[0]["is_final"]  # stopped during the backoff
    # a minute that turns in those seconds (under load) skips its run: the first still waits for its retry
    assert all(r["error"] == "previous run still running" for r in records if r["status"] == "skipped")
    last = {r["job"]: r for r in last_runs(local_settings)}
    assert last["features"]["status"] == "failed" and "--as-of" in last["features"]["error"]
    env = dict(os.environ, TELCOLAKE_LAKE=local_settings.lake_root, TELCOLAKE_STATE_DIR=str(local_settings.state_dir))
    env.pop("TELCOLAKE_CONFIG", None)
    cli = [PY, "-m", "pipelines.cli"]
    config = tmp_path / "telcolake.toml"
    config.write_text(open(local_settings.source).read().replace("[jobs.churn_features]", "[jobs.features]\ncron = \"0 3 * * *\"\ncommand = [\"features\"]\n\n[jobs.churn_features]"))
    env["TELCOLAKE_CONFIG"] = str(config)
    listed = {j["job"]: j for j in json.loads(subprocess.run([*cli, "jobs", "list", "--json"], env=env, capture_output=True, text=True, check=True).stdout)}
    assert listed["features"]["last_status"] == "failed" and "--as-of" in listed["features"]["last_error"]
    hist = json.loads(subprocess.run([*cli, "jobs", "history", "features", "--json"], env=env, capture_output=True, text=True, check=True).stdout)
    assert [h["status"] for h in hist if h["status"] != "skipped"] == ["failed"]
    status = json.loads(subprocess.run([*cli, "status", "--json"], env=env, capture_output=True, text=True, check=True).stdout)
    assert {j["job"]: j["status"] for j in status["jobs"]}["features"] == "failed"


def test_stopping_with_cancel_interrupts_the_running_job_and_the_next_start_runs_it_again(local_settings):
    long = parse_job("long", {"cron": "* * * * *", "exec": [PY, "-c", "import time; time.sleep(60)"], "retries": 2})
    sched = Scheduler(local_settings, jobs={"long": long}, cancel_on_stop=True)
    import threading
    import time

    t = threading.Thread(target=sched.run)
    t.start()
    deadline = time.monotonic() + 20
    while "long" not in sched.executing and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    started = time.monotonic()
    sched.stop.set()
    t.join(30)
    assert not t.is_alive() and time.monotonic() - started < 15
    # under load the minute can turn while it waits: the interrupted attempt is the one that matters
    [record] = [r for r in sched.records if (r.get("error") or "").startswith("interrupted")]
    assert record["status"] == "failed" and not record["is_final"]
    # not covered: the next start catches the same scheduled time up again
    assert Scheduler(local_settings, jobs={"long": long}).missed(datetime.now(UTC)) == {"long": record["scheduled_for"]} \
        or long.latest_at_or_before(datetime.now(UTC)) != record["scheduled_for"]

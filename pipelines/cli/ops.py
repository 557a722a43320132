"""`telcolake demo|status|sql|tables|scheduler|jobs`: running and inspecting the whole product."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError


def status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The whole system: broker, topics and lag, tables and freshness, last job runs, last quality gate."""
    import json

    from pipelines.ops.lake_info import human_age, human_bytes
    from pipelines.ops.status import system_status

    s = settings()
    st = system_status(s)
    if as_json:
        print(json.dumps(st, default=str))
        return
    b = st["broker"]
    down = f" ({b['error']})" if b.get("error") else " (not running: `telcolake broker start`)"
    console.print(f"broker: {b['kind']} at {b['address'] or '-'}" + ("" if b["running"] else down), soft_wrap=True)
    show = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
    table = Table("topic", "part", "end", "landed", "lag", "state", "rows", "quarantined", title="ingest")
    for t in st["topics"]:
        for p in t["partitions"]:
            state = p["state"] + (f" by {p['ahead']:,}" if p["ahead"] else "")
            table.add_row(t["topic"], str(p["partition"]), show(p["end_offset"]), show(p["landed_offset"]), show(p["lag"]), state,
                          show(p["rows"]), show(p["quarantined"]))
    console.print(table)
    if any(p["state"] == "lake ahead of topic" for t in st["topics"] for p in t["partitions"]):
        console.print("[yellow]lake ahead of topic[/yellow]: the lake has read past the topic's end, so the topic was recreated "
                      "or truncated (the embedded broker keeps topics in memory); ingest refuses to resume those partitions")
    fresh = Table("topic", "bronze version", "rows", "quarantined", "last commit", "newest event", "freshness")
    for t in st["topics"]:
        age = "-" if t["freshness_s"] is None else human_age(t["freshness_s"])
        fresh.add_row(t["topic"], show(t["table_version"]), show(t["rows"]), show(t["quarantined"]), t["last_commit_at"] or "-", t["newest_event_at"] or "-", age)
    console.print(fresh)
    tables = Table("table", "version", "rows", "size", "freshness", title="tables")
    for t in st["tables"]:
        tables.add_row(t["table"], show(t["version"]), show(t["rows"]), human_bytes(t["size_bytes"]), human_age(t["freshness_s"]) if t["freshness_s"] is not None else "-")
    console.print(tables)
    if st["jobs"]:
        jobs = Table("job", "status", "started", "attempt", "rows", "error", title="last job runs")
        for j in st["jobs"]:
            status = f"[red]{j['status']}[/red]" if j["status"] == "failed" else j["status"]
            error = (j["error"] or "").strip().splitlines()[-1][:80] if j["error"] else ""
            jobs.add_row(j["job"], status, str(j["started_at"] or "-")[:19], f"{j['attempt']}/{j['max_attempts']}", show(j["rows"]), error)
        console.print(jobs)
    q = st["quality"]
    if q:
        colour = "green" if not q["failed"] else "red"
        console.print(f"quality gate ({q['validated_at']}): [{colour}]{q['passed']} passed, {q['failed']} failed[/{colour}]")
        for f in q["failures"]:
            console.print(f"  [red]failing[/red] {f['table']}@{f['version']} {f['suite']} {f['expectation']} observed {f['observed']}")


def up(
    port: int = typer.Option(None, "--port", help="HTTP port of the operator page, /metrics, /health, /ready and /api/status (default: port in the service section, 8760)."),
) -> None:
    """Run the whole product until SIGTERM/Ctrl-C: broker, ingest, silver, streams, scheduled jobs, operator endpoints."""
    from pipelines.ops.up import run_up

    s = settings()
    try:
        code = run_up(s, port=port)
    except (TelcolakeError, OSError) as exc:
        fail(exc)
    _exit_now(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: a daemon thread still inside a native library
    (the Delta or DuckDB readers of a status refresh, the HTTP server) can crash it (SIGSEGV
    after a clean stop); everything worth keeping is written and the children are stopped."""
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def demo(
    subscribers: int = typer.Option(0, "--subscribers", help="Simulated subscribers (default: 200 for history and live week; with --quick the simulate section of telcolake.toml)."),
    days: int = typer.Option(0, "--days", help="Live days streamed through Kafka (default: the simulate section of telcolake.toml)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the summary numbers as JSON (last line)."),
    quick: bool = typer.Option(False, "--quick", help="Only a week through Kafka (no history, no churn model): the tests' run."),
) -> None:
    """Run the whole product on the embedded defaults and print a summary."""
    import json

    from pipelines.ops.demo import run_demo

    s = settings()
    try:
        run = run_demo(s, console, quick=quick, subscribers=subscribers, days=days)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"steps": run.results, "seconds": run.seconds}, default=str))


jobs_app = typer.Typer(help="Scheduled jobs (the jobs tables of telcolake.toml) and their runs.", no_args_is_help=True)


def sql_cmd(
    command: str = typer.Option(None, "-c", "--command", help="Run this SQL (one or more statements) and exit."),
    file: Path = typer.Option(None, "-f", "--file", help="Run the SQL in this file and exit."),
    fmt: str = typer.Option("table", "--format", help="Output: table, csv or json."),
    as_of_version: list[str] = typer.Option(None, "--as-of-version", help="TABLE=V: read TABLE (view or table name) at Delta version V; repeatable."),
    as_of: str = typer.Option(None, "--as-of", help="Read every table as it was at this UTC time (ISO 8601)."),
    max_rows: int = typer.Option(1000, "--max-rows", help="Rows shown by --format table."),
) -> None:
    """DuckDB over the lake: every table is a view (silver_usage, gold_invoices, ...). Interactive without -c/-f."""
    import duckdb

    from pipelines.core.errors import ConfigError
    from pipelines.core.lake import Lake
    from pipelines.ops import sqlshell

    s = settings()
    try:
        if fmt not in sqlshell.FORMATS:
            raise ConfigError(f"--format {fmt!r}: expected table, csv or json")
        con = duckdb.connect()
        skipped: list = []
        views = sqlshell.register_lake(con, Lake.from_settings(s), versions=sqlshell.parse_versions(as_of_version or []), as_of=as_of,
                                       skipped=skipped)
        if skipped:
            err.print(f"note: {len(skipped)} lake folder(s) not registered as views; `.tables` or `telcolake tables` says why",
                      soft_wrap=True, highlight=False)
        if command is not None or file is not None:
            text = command if command is not None else file.read_text()
            for result in sqlshell.run(con, text):
                sqlshell.render(result, fmt, sys.stdout, max_rows=max_rows, console=console)
            return
        shell = sqlshell.Shell(con, views, fmt=fmt, skipped=skipped)  # type: ignore[arg-type]
        interactive = sys.stdin.isatty()
        if interactive:
            console.print(f"telcolake sql: {len(views)} views over {s.lake_root}. .tables lists them, .help, .quit")
            s.state_dir.mkdir(parents=True, exist_ok=True)
            reader = sqlshell.interactive_reader(str(s.state_dir / "sql_history"))
        else:
            reader = sqlshell.stream_reader(sys.stdin)
        failures = shell.loop(reader, interactive=interactive)
    except (TelcolakeError, duckdb.Error, OSError) as exc:
        fail(exc)
    if failures and not interactive:
        raise typer.Exit(1)


def tables_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every lake table: version, rows, files, size, last commit and freshness."""
    import json

    from pipelines.core.lake import Lake
    from pipelines.ops.lake_info import human_age, human_bytes, lake_report

    s = settings()
    try:
        report = lake_report(Lake.from_settings(s))
    except TelcolakeError as exc:
        fail(exc)
    infos = report.tables
    for skipped in report.skipped:
        err.print(f"skipped {escape(skipped.path)}: {escape(skipped.reason)}", soft_wrap=True, highlight=False)
    if as_json:
        print(json.dumps([i.as_dict() for i in infos]))
        return
    table = Table("table", "view", "version", "rows", "files", "size", "last commit", "freshness", title=f"lake {s.lake_root}")
    for i in infos:
        table.add_row(i.table, i.view, str(i.version), f"{i.rows:,}", f"{i.files:,}", human_bytes(i.size_bytes),
                      (i.last_commit_at or "-")[:19], human_age(i.freshness_s))
    console.print(table)


def _print_run(record: dict) -> None:
    color = {"ok": "green", "failed": "red", "skipped": "yellow"}.get(record["status"], "white")
    rows = "" if record.get("rows") is None else f" rows={record['rows']:,}"
    tail = f": {record['error'].splitlines()[-1][:160]}" if record.get("error") else ""
    err.print(f"[{color}]{record['status']}[/{color}] {record['job']} run {record['run_id']} attempt {record['attempt']}/"
              f"{record['max_attempts']} ({record.get('duration_s') or 0:.1f}s){rows}{tail}")


def scheduler_cmd(
    once: bool = typer.Option(False, "--once", help="Run the due and missed jobs once, wait for them, exit."),
    for_seconds: float = typer.Option(None, "--for-seconds", help="Stop scheduling after this many seconds."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-run lines."),
) -> None:
    """Run the jobs declared in telcolake.toml on their cron schedules; every run lands in ops/job_runs."""
    import signal

    from pipelines.ops.scheduler import Scheduler

    s = settings()
    try:
        sched = Scheduler(s, on_record=None if quiet else _print_run)
    except TelcolakeError as exc:
        fail(exc)
    signal.signal(signal.SIGTERM, lambda *_: sched.stop.set())
    if not quiet:
        err.print(f"scheduler: {len(sched.jobs)} enabled jobs ({', '.join(sorted(sched.jobs))}); Ctrl-C stops")
    try:
        records = sched.run(for_seconds=for_seconds, once=once)
    except KeyboardInterrupt:
        sched.stop.set()
        sched.wait()
        records = sched.records
    counts = {k: sum(1 for r in records if r["status"] == k) for k in ("ok", "failed", "skipped")}
    if not quiet:
        err.print("scheduler stopped: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@jobs_app.command("list")
def jobs_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The configured jobs: schedule, command, retries, next run and last status."""
    import json
    from datetime import UTC, datetime, timedelta

    from pipelines.ops.jobs import last_runs, load_jobs

    s = settings()
    try:
        jobs = load_jobs(s)
        last = {r["job"]: r for r in last_runs(s)}
    except TelcolakeError as exc:
        fail(exc)
    now = datetime.now(UTC)
    rows = []
    for j in jobs.values():
        nxt = j.next_after(j.latest_ripe(now) or now) if j.enabled else None  # a time still in its grace comes next
        lr = last.get(j.name, {})
        rows.append({
            "job": j.name, "cron": j.cron or None, "schedule": j.shown_schedule(), "command": j.shown(), "enabled": j.enabled,
            "retries": j.retries, "timeout_s": j.timeout_s, "reads": list(j.reads), "writes": list(j.writes),
            "after": list(j.after), "under_up": j.under_up,
            "next_run": None if nxt is None else (nxt + timedelta(seconds=j.grace_s)).isoformat(),
            "last_status": lr.get("status"), "last_started_at": str(lr["started_at"]) if lr else None,
            "last_attempt": f"{lr['attempt']}/{lr['max_attempts']}" if lr else None,
            "last_error": (lr.get("error") or "").splitlines()[-1][:200] if lr.get("error") else None,
        })
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("job", "schedule", "command", "enabled", "next run", "last", "last started", "last error")
    for r in rows:
        last_status = r["last_status"] or "-"
        if r["last_status"] == "failed":
            last_status = f"[red]failed[/red] ({r['last_attempt']})"
        table.add_row(r["job"], r["schedule"], r["command"], "yes" if r["enabled"] else "no",
                      (r["next_run"] or "-")[:19], last_status, (r["last_started_at"] or "-")[:19], (r["last_error"] or "")[:80])
    console.print(table)


@jobs_app.command("run")
def jobs_run(
    name: str = typer.Argument(..., help="A job name from telcolake.toml (see jobs list)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run one job now (retried as configured) and record it; exit 1 if it failed, 3 if skipped."""
    import json

    from pipelines.ops.scheduler import run_now

    s = settings()
    try:
        record = run_now(s, name, on_attempt=None if as_json else _print_run)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(record, default=str))
    elif record["status"] == "skipped":
        _print_run(record)
    if record["status"] != "ok":
        raise typer.Exit(1 if record["status"] == "failed" else 3)


@jobs_app.command("history")
def jobs_history(
    name: str = typer.Argument(None, help="Only this job."),
    limit: int = typer.Option(20, "--limit", help="Newest N records."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recorded runs from ops/job_runs, newest first (one line per attempt)."""
    import json

    from pipelines.core.lake import Lake
    from pipelines.ops.jobs import history

    s = settings()
    records = history(Lake.from_settings(s), name, limit=limit)
    if as_json:
        print(json.dumps(records, default=str))
        return
    table = Table("job", "run", "trigger", "scheduled for", "started", "s", "status", "attempt", "rows", "changed", "error")
    for r in records:
        changed = ", ".join(f"{t}@{v}" for t, v in json.loads(r["output_versions"] or "{}").items())
        table.add_row(r["job"], r["run_id"], r["trigger"], str(r["scheduled_for"])[:19], str(r["started_at"])[:19],
                      f"{r['duration_s'] or 0:.1f}", r["status"], f"{r['attempt']}/{r['max_attempts']}",
                      "-" if r["rows"] is None else f"{r['rows']:,}", changed[:60] or "-",
                      (r["error"] or "").splitlines()[-1][:60] if r["error"] else "")
    console.print(table)

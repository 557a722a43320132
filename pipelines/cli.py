"""The `telcolake` command line (typer + rich)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipelines.config import Settings, load_settings
from pipelines.errors import TelcolakeError

app = typer.Typer(help="telcolake: a streaming lakehouse for a telco's BSS/OSS data.", no_args_is_help=True)
broker_app = typer.Typer(help="Start, stop and inspect the Kafka broker.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")

console = Console()
err = Console(stderr=True)


def settings() -> Settings:
    """Load the settings, turning a config error into one clear line and exit code 2."""
    try:
        return load_settings()
    except TelcolakeError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(exc: Exception, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code)


# --- broker ------------------------------------------------------------------------------


@broker_app.command("start")
def broker_start() -> None:
    """Start the embedded broker (unless TELCOLAKE_KAFKA_BOOTSTRAP names servers) and create topics."""
    from pipelines import broker

    s = settings()
    try:
        if s.embedded:
            was = broker.read_state(s.state_dir)
            state = broker.start_embedded(s.state_dir)
            verb = "already running" if was else "started"
            console.print(f"embedded broker {verb} at [bold]{state.address}[/bold] (pid {state.pid})")
            bootstrap = state.address
        else:
            bootstrap = broker.ensure_broker(s)
            console.print(f"using external Kafka at [bold]{bootstrap}[/bold]; nothing started")
        have = broker.ensure_topics(bootstrap, s.topics, extra=s.kafka_client)
        console.print("topics: " + ", ".join(f"{t} ({n})" for t, n in sorted(have.items())))
    except TelcolakeError as exc:
        fail(exc)


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker of this state dir (its in-memory topics go with it)."""
    from pipelines import broker

    s = settings()
    if not s.embedded:
        console.print("external Kafka configured; nothing to stop")
        return
    state = broker.stop_embedded(s.state_dir)
    console.print(f"stopped embedded broker pid {state.pid}" if state else "no embedded broker was running")


@broker_app.command("status")
def broker_status() -> None:
    """Address, topics, partitions and true end offsets."""
    from pipelines import broker

    s = settings()
    try:
        bootstrap = broker.resolve_bootstrap(s)
        broker.wait_ready(bootstrap, timeout=5)
    except TelcolakeError as exc:
        fail(exc)
    kind = "embedded" if s.embedded else "external"
    console.print(f"{kind} broker at [bold]{bootstrap}[/bold]")
    table = Table("topic", "partition", "end offset")
    for topic in sorted(s.topics):
        for p, end in sorted(broker.end_offsets(bootstrap, topic, extra=s.kafka_client).items()):
            table.add_row(topic, str(p), str(end))
    console.print(table)


# --- ingest ------------------------------------------------------------------------------


def _progress_callback(progress, task):
    def on_landed(landed) -> None:
        progress.update(task, advance=landed.rows + landed.quarantined)

    return on_landed


@app.command()
def ingest(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once everything on the topics at start has landed."),
    workers: int = typer.Option(0, "--workers", "-w", help="Bytewax workers (default: [ingest] workers)."),
    processes: int = typer.Option(1, "--processes", help="Run as a Bytewax cluster of this many local processes."),
    silver: bool = typer.Option(True, "--silver/--no-silver", help="Refresh silver tables after an --until-caught-up run."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Land Kafka topics into bronze Delta tables (+ quarantine), exactly once."""
    import json

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipelines import ingest as ingest_mod
    from pipelines.kafka_source import StopFlag

    s = settings()
    try:
        if processes > 1:
            secs = ingest_mod.run_cluster(s, processes=processes, workers=workers or s.ingest.workers, until_caught_up=until_caught_up)
            summary = {"processes": processes, "seconds": round(secs, 3)}
        else:
            stop = StopFlag()
            stop.install()
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} records"), TimeElapsedColumn(), console=err, disable=quiet or as_json) as progress:
                task = progress.add_task("ingesting" + (" until caught up" if until_caught_up else " (Ctrl-C to stop)"), total=None)
                stats = ingest_mod.run_ingest(s, until_caught_up=until_caught_up, workers=workers or None, on_landed=_progress_callback(progress, task), stop=stop)
            summary = stats.as_dict()
        if silver and until_caught_up:
            from pipelines.silver import refresh

            summary["silver"] = [r.__dict__ for r in refresh(s)]
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary, default=str))
    elif not quiet:
        console.print(summary)


@app.command()
def backfill(
    paths: list[Path] = typer.Argument(..., help="Dump files or directories (CSV, Parquet, JSON lines)."),
    topic: str = typer.Option(None, "--topic", help="Contract topic of the files when their path does not say."),
    workers: int = typer.Option(1, "--workers", "-w"),
    silver: bool = typer.Option(True, "--silver/--no-silver", help="Refresh silver tables afterwards."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Land legacy dumps through the same decoder, quarantine and bronze tables; each file once."""
    import json

    from bytewax._bytewax import cli_main

    from dataflows.backfill import FORMATS, build_flow, describe
    from pipelines.ingest import IngestStats

    s = settings()
    files, seen = [], set()
    try:
        for p in paths:
            candidates = sorted(q for q in p.rglob("*") if q.suffix.lower() in FORMATS) if p.is_dir() else [p]
            if not candidates or not all(c.exists() for c in candidates):
                raise TelcolakeError(f"{p}: no such file, or no dump files in it")
            for c in candidates:
                f = describe(c, topic)
                if f.sha256 not in seen:
                    seen.add(f.sha256)
                    files.append(f)
        stats = IngestStats()
        cli_main(build_flow(s, files, on_landed=stats.add), workers_per_process=workers)
        summary = {"files": len(files), **stats.as_dict()}
        if silver:
            from pipelines.silver import refresh

            summary["silver"] = [r.__dict__ for r in refresh(s)]
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        console.print(summary)


@app.command("silver")
def silver_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Bring silver tables (deduplicated usage, subscriber intervals) up to date with bronze."""
    import json

    from pipelines.silver import refresh

    s = settings()
    results = [r.__dict__ for r in refresh(s)]
    if as_json:
        print(json.dumps(results, default=str))
    else:
        for r in results:
            console.print(r)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The whole system: broker, topics and lag, tables and freshness, last job runs, last quality gate."""
    import json

    from pipelines.lake_info import human_age, human_bytes
    from pipelines.status import system_status

    s = settings()
    st = system_status(s)
    if as_json:
        print(json.dumps(st, default=str))
        return
    b = st["broker"]
    console.print(f"broker: {b['kind']} at {b['address'] or '-'}" + ("" if b["running"] else " (not running: `telcolake broker start`)"))
    show = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
    table = Table("topic", "part", "end", "landed", "lag", "rows", "quarantined", title="ingest")
    for t in st["topics"]:
        for p in t["partitions"]:
            table.add_row(t["topic"], str(p["partition"]), show(p["end_offset"]), show(p["landed_offset"]), show(p["lag"]), show(p["rows"]), show(p["quarantined"]))
    console.print(table)
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
            jobs.add_row(j["job"], j["status"], str(j["started_at"] or "-"), str(j["attempt"]), show(j["rows"]), (j["error"] or "")[-60:])
        console.print(jobs)
    q = st["quality"]
    if q:
        colour = "green" if not q["failed"] else "red"
        console.print(f"quality gate ({q['validated_at']}): [{colour}]{q['passed']} passed, {q['failed']} failed[/{colour}]")
        for f in q["failures"]:
            console.print(f"  [red]failing[/red] {f['table']}@{f['version']} {f['suite']} {f['expectation']} observed {f['observed']}")


@app.command()
def maintain(
    retention_hours: float = typer.Option(168.0, "--retention-hours", help="Vacuum files unreferenced for longer than this."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compact small files, write checkpoints, vacuum old files; safe while ingest runs."""
    import json

    from pipelines.maintain import maintain_all

    s = settings()
    results = maintain_all(s, retention_hours=retention_hours)
    if as_json:
        print(json.dumps(results, default=str))
    else:
        for r in results:
            console.print(r)


# --- simulate ----------------------------------------------------------------------------


@app.command()
def simulate(
    subscribers: int = typer.Option(None, "--subscribers", help="Population size (default: telcolake.toml simulate.subscribers)."),
    days: int = typer.Option(None, "--days", help="Simulated days (default: telcolake.toml simulate.days)."),
    seed: int = typer.Option(None, "--seed", help="Random seed; same seed, same records (default: telcolake.toml simulate.seed)."),
    start: str = typer.Option(None, "--start", help="First simulated day, YYYY-MM-DD (default: telcolake.toml simulate.start)."),
    to: str = typer.Option("kafka", "--to", help="kafka: produce to the configured topics."),
    to_dir: Path = typer.Option(None, "--to-dir", help="Write legacy mediation dumps into this directory instead."),
    fmt: str = typer.Option("jsonl", "--format", help="Dump format with --to-dir: csv, parquet or jsonl."),
    as_json: bool = typer.Option(False, "--json", help="Print the planted summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Simulate usage, network and BSS events (with planted churn, fraud, incidents and defects)."""
    import json
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines import broker
    from pipelines import simulate as sim
    from pipelines.errors import ConfigError

    s = settings()
    try:
        if to != "kafka" and to_dir is None:
            raise ConfigError(f"--to {to!r}: expected kafka (or use --to-dir DIR)")
        if fmt not in ("csv", "parquet", "jsonl"):
            raise ConfigError(f"--format {fmt!r}: expected csv, parquet or jsonl")
        cfg = sim.SimConfig.from_settings(s, subscribers=subscribers, days=days, seed=seed,
                                          start=sim.parse_date(start) if start else None)
        bootstrap = broker.resolve_bootstrap(s) if to_dir is None else ""
        started = time.perf_counter()
        result = sim.simulate(cfg)
        summary = sim.planted_summary(result)
        summary["generate_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        if to_dir is not None:
            files = sim.write_dir(result, to_dir, fmt)  # type: ignore[arg-type]
            summary["files"] = len(files)
            summary["skipped_in_files"] = files.skipped
            summary["directory"] = str(to_dir)
        else:
            broker.ensure_topics(bootstrap, s.topics, extra=s.kafka_client)
            topics = {t: s.topic(t) for t in result.values}
            total = sum(len(v) for v in result.values.values())
            columns = (TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err, disable=quiet or as_json) as progress:
                task = progress.add_task("produce", total=total)
                summary["produced"] = sim.produce(result, bootstrap, topics, extra_conf=s.kafka_client,
                                                  progress=lambda k: progress.update(task, advance=k))
            summary["topics"] = topics
        summary["write_s"] = round(time.perf_counter() - started, 2)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary, default=str))
        return
    if quiet:
        return
    counts = ", ".join(f"{k}={summary[k]:,}" for k in ("churners", "fraudsters", "duplicates", "late", "malformed", "roamers"))
    console.print(f"simulated {cfg.subscribers:,} subscribers x {cfg.days} days from {cfg.start} (seed {cfg.seed}) "
                  f"in {summary['generate_s']}s; planted: {counts}")
    table = Table("topic", "records", "late", "malformed", title="records per topic")
    for topic, n in summary["per_topic"].items():
        table.add_row(topic, f"{n:,}", f"{summary['late_by_topic'][topic]:,}", f"{summary['malformed_by_topic'][topic]:,}")
    console.print(table)
    console.print("incidents: " + "; ".join(f"{c} {a} .. {b}" for c, a, b in summary["incidents"]))
    where = f"{summary['files']} files in {to_dir}" if to_dir is not None else "Kafka " + ", ".join(summary["topics"].values())
    console.print(f"written to {where} in {summary['write_s']}s")


# --- demo --------------------------------------------------------------------------------


@app.command()
def demo(
    subscribers: int = typer.Option(0, "--subscribers", help="Simulated subscribers (default: the simulate section of telcolake.toml)."),
    days: int = typer.Option(0, "--days", help="Simulated days (default: the simulate section of telcolake.toml)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the summary numbers as JSON (last line)."),
) -> None:
    """Run the whole product on the embedded defaults and print a summary."""
    import json

    from pipelines.demo import run_demo

    s = settings()
    try:
        run = run_demo(s, console, subscribers=subscribers, days=days)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"steps": run.results, "seconds": run.seconds}, default=str))


# --- billing -----------------------------------------------------------------------------

catalog_app = typer.Typer(help="The tariff catalog (reference/catalog.toml).", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("load")
def catalog_load(
    path: Path = typer.Option(None, "--file", help="Catalog file (default: reference/catalog.toml)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Validate the catalog and append its new versions to the reference tables (never edits history)."""
    import json

    from pipelines.billing.reference import load_catalog

    s = settings()
    try:
        result = load_catalog(s, path)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result.__dict__))
    else:
        console.print(f"loaded versions: {result.loaded or 'none'}; already loaded: {result.unchanged or 'none'}")


def _billing_progress(quiet: bool):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, disable=quiet)
    task = progress.add_task("starting", total=None)
    return progress, lambda step: progress.update(task, description=step)


@app.command("bill-run")
def bill_run_cmd(
    cycle: str = typer.Option(..., "--cycle", help="Billing cycle, YYYY-MM (a calendar month in UTC)."),
    early: bool = typer.Option(False, "--early", help="Bill a cycle that has not ended yet."),
    gate: bool = typer.Option(True, "--gate/--no-gate", help="Run the quality gate before closing the cycle."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Rate the cycle's usage (and late usage), write invoices and close the cycle; idempotent."""
    import json

    from pipelines.billing.run import as_dict, bill_run, quality_gate

    s = settings()
    check = quality_gate() if gate else None
    progress, on_step = _billing_progress(quiet or as_json)
    try:
        with progress:
            result = bill_run(s, cycle, early=early, gate=check, on_step=on_step)
    except TelcolakeError as exc:
        fail(exc)
    if check is None and not result.already_closed:
        result.quality_gate = "skipped (--no-gate)" if not gate else "skipped (quality.runner not installed)"
    summary = as_dict(result)
    if as_json:
        print(json.dumps(summary, default=str))
    elif not quiet:
        verb = "was already closed" if result.already_closed else "closed"
        console.print(f"cycle [bold]{result.cycle}[/bold] {verb}: {result.rated:,} rated, {result.unrated:,} unrated, "
                      f"{result.late:,} late, {result.invoices:,} invoices, {result.amount_incl_tax} incl. tax; "
                      f"quality gate: {result.quality_gate}")


@app.command()
def rerate(
    cycle: str = typer.Option(..., "--cycle", help="A closed billing cycle, YYYY-MM."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Rate a closed cycle again with the current catalog; bill differences on the next open invoice."""
    import json

    from pipelines.billing.run import as_dict
    from pipelines.billing.run import rerate as do_rerate

    s = settings()
    progress, on_step = _billing_progress(quiet or as_json)
    try:
        with progress:
            result = do_rerate(s, cycle, on_step=on_step)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(as_dict(result), default=str))
    elif not quiet:
        console.print(f"rerated {result.cycle}: {result.changed_records:,} records changed, {result.adjustments:,} "
                      f"adjustments ({result.net_amount} net) onto cycle {result.target_cycle}")


# --- stream ------------------------------------------------------------------------------


@app.command()
def stream(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once everything on the input topics at start is processed."),
    workers: int = typer.Option(0, "--workers", "-w", help="Bytewax workers (default: [streams] workers)."),
    only: str = typer.Option("", "--only", help="Comma-separated flows: kpi, fraud, offers (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Cell KPIs + network alerts, fraud alerts and offer triggers, as Bytewax dataflows (exactly once into Delta)."""
    import json

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipelines.kafka_source import StopFlag
    from pipelines.streams import run_streams

    s = settings()
    stop = StopFlag()
    stop.install()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} events"),
                      TimeElapsedColumn(), console=err, disable=quiet or as_json) as progress:
            task = progress.add_task("streaming" + (" until caught up" if until_caught_up else " (Ctrl-C to stop)"), total=None)

            def on_commit(flow: str, emits: list) -> None:
                progress.update(task, advance=sum(e.result.counts.get("events", 0) for e in emits))

            stats = run_streams(s, only=only or None, until_caught_up=until_caught_up, workers=workers or None, stop=stop, on_commit=on_commit)
    except TelcolakeError as exc:
        fail(exc)
    summary = stats.as_dict()
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        table = Table("flow", "events", "too late", "rejected", "rows", "alerts raised", "alerts cleared", "triggers")
        for flow, c in summary["flows"].items():
            table.add_row(flow, *(f"{c.get(k, 0):,}" for k in ("events", "too_late", "rejected", "kpi_rows", "alerts_raised", "alerts_cleared", "triggers")))
        console.print(table)
        console.print(f"{summary['commits']} commits in {summary['seconds']} s")


# --- operations and analysts: sql, tables, scheduler, jobs -------------------------------

jobs_app = typer.Typer(help="Scheduled jobs (the jobs tables of telcolake.toml) and their runs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@app.command("sql")
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

    from pipelines import sqlshell
    from pipelines.errors import ConfigError
    from pipelines.lake import Lake

    s = settings()
    try:
        if fmt not in sqlshell.FORMATS:
            raise ConfigError(f"--format {fmt!r}: expected table, csv or json")
        con = duckdb.connect()
        views = sqlshell.register_lake(con, Lake.from_settings(s), versions=sqlshell.parse_versions(as_of_version or []), as_of=as_of)
        if command is not None or file is not None:
            text = command if command is not None else file.read_text()
            for result in sqlshell.run(con, text):
                sqlshell.render(result, fmt, sys.stdout, max_rows=max_rows, console=console)
            return
        shell = sqlshell.Shell(con, views, fmt=fmt)  # type: ignore[arg-type]
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


@app.command("tables")
def tables_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every lake table: version, rows, files, size, last commit and freshness."""
    import json

    from pipelines.lake import Lake
    from pipelines.lake_info import human_age, human_bytes, lake_tables

    s = settings()
    try:
        infos = lake_tables(Lake.from_settings(s))
    except TelcolakeError as exc:
        fail(exc)
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


@app.command("scheduler")
def scheduler_cmd(
    once: bool = typer.Option(False, "--once", help="Run the due and missed jobs once, wait for them, exit."),
    for_seconds: float = typer.Option(None, "--for-seconds", help="Stop scheduling after this many seconds."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-run lines."),
) -> None:
    """Run the jobs declared in telcolake.toml on their cron schedules; every run lands in ops/job_runs."""
    import signal

    from pipelines.scheduler import Scheduler

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
    from datetime import UTC, datetime

    from pipelines.jobs import last_runs, load_jobs

    s = settings()
    try:
        jobs = load_jobs(s)
        last = {r["job"]: r for r in last_runs(s)}
    except TelcolakeError as exc:
        fail(exc)
    now = datetime.now(UTC)
    rows = [{"job": j.name, "cron": j.cron, "command": j.shown(), "enabled": j.enabled, "retries": j.retries,
             "timeout_s": j.timeout_s, "next_run": j.next_after(now).isoformat() if j.enabled else None,
             "last_status": last.get(j.name, {}).get("status"),
             "last_started_at": str(last[j.name]["started_at"]) if j.name in last else None} for j in jobs.values()]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("job", "cron", "command", "enabled", "retries", "next run", "last", "last started")
    for r in rows:
        table.add_row(r["job"], r["cron"], r["command"], "yes" if r["enabled"] else "no", str(r["retries"]),
                      (r["next_run"] or "-")[:19], r["last_status"] or "-", (r["last_started_at"] or "-")[:19])
    console.print(table)


@jobs_app.command("run")
def jobs_run(
    name: str = typer.Argument(..., help="A job name from telcolake.toml (see jobs list)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run one job now (retried as configured) and record it; exit 1 if it failed, 3 if skipped."""
    import json

    from pipelines.scheduler import run_now

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

    from pipelines.jobs import history
    from pipelines.lake import Lake

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


# --- partner sharing ---------------------------------------------------------------------

partners_app = typer.Typer(help="Partners (partners.toml): secrets and Delta Sharing tokens.", no_args_is_help=True)
partner_secrets_app = typer.Typer(help="Per-partner pseudonymisation secrets.", no_args_is_help=True)
partner_tokens_app = typer.Typer(help="Per-partner bearer tokens (stored hashed, with an expiry).", no_args_is_help=True)
app.add_typer(partners_app, name="partners")
partners_app.add_typer(partner_secrets_app, name="secrets")
partners_app.add_typer(partner_tokens_app, name="token")


@partners_app.command("list")
def partners_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Partners, what they receive, and which tables are published."""
    import json

    from pipelines.lake import Lake
    from pipelines.sharing.registry import load_partners

    s = settings()
    try:
        partners = load_partners(s)
    except TelcolakeError as exc:
        fail(exc)
    lake = Lake.from_settings(s)
    rows = [{"partner": p.partner_id, "name": p.name, "kind": p.kind, "ids": ", ".join(p.plmns) or p.ott_partner_id or "-",
             "tables": {t: lake.version(p.share_table(t)) for t in p.tables}} for p in partners.values()]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("partner", "name", "kind", "identifiers", "tables (published version)")
    for r in rows:
        table.add_row(r["partner"], r["name"], r["kind"], r["ids"], ", ".join(f"{t}@{'-' if v is None else v}" for t, v in r["tables"].items()))
    console.print(table)


@partner_secrets_app.command("init")
def partner_secrets_init() -> None:
    """Write random dev secrets for partners without one into the git-ignored secrets file."""
    from pipelines.sharing.registry import init_secrets

    s = settings()
    try:
        path, added = init_secrets(s)
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"{path}: new secrets for {', '.join(added)}" if added else f"{path}: every partner already has a secret")


@partner_tokens_app.command("create")
def partner_token_create(
    partner: str = typer.Argument(..., help="Partner id from partners.toml."),
    days: float = typer.Option(None, "--days", help="Lifetime in days (default: [sharing] token_days)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Public server URL ending in /delta-sharing (default: [sharing] endpoint)."),
    out: Path = typer.Option(None, "--out", help="Write the profile file here instead of printing it."),
) -> None:
    """Issue a bearer token and print the partner's Delta Sharing profile file (JSON)."""
    import json

    from pipelines.sharing.registry import sharing_settings
    from pipelines.sharing.tokens import create_token

    s = settings()
    try:
        issued = create_token(s, partner, days=days)
        profile = json.dumps(issued.profile((endpoint or sharing_settings(s).endpoint).rstrip("/")), indent=2)
    except TelcolakeError as exc:
        fail(exc)
    if out:
        out.write_text(profile + "\n")
        out.chmod(0o600)
        err.print(f"profile for {partner} (token {issued.token_id}, expires {issued.expires_at:%Y-%m-%d}) written to {out}")
    else:
        print(profile)


@partner_tokens_app.command("revoke")
def partner_token_revoke(
    partner: str = typer.Argument(..., help="Partner id from partners.toml."),
    token_id: str = typer.Option(None, "--token-id", help="Revoke only this token (default: every live token of the partner)."),
) -> None:
    """Revoke a partner's tokens; the server refuses them from the next request on."""
    from pipelines.sharing.registry import get_partner
    from pipelines.sharing.tokens import revoke_tokens

    s = settings()
    try:
        get_partner(s, partner)
        n = revoke_tokens(s, partner, token_id=token_id)
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"revoked {n} token(s) of {partner}")


@app.command()
def publish(
    partner: str = typer.Option(None, "--partner", help="Publish only this partner's share (default: every partner)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Build, quality-gate and publish partner shares (a new Delta version only when content changed)."""
    import json

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipelines.sharing.publish import publish as do_publish

    s = settings()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, disable=quiet or as_json) as progress:
            task = progress.add_task("publishing", total=None)
            results = do_publish(s, partner, on_step=lambda m: progress.update(task, description=m))
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], default=str))
        return
    if quiet:
        return
    table = Table("partner", "table", "status", "rows", "version", "gate")
    for r in results:
        for t in r.tables:
            table.add_row(r.partner_id, t.table, t.status, f"{t.rows:,}", "-" if t.version is None else str(t.version), r.gate)
    console.print(table)


@app.command("serve-shares")
def serve_shares(
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 for every interface)."),
) -> None:
    """Serve the partner shares over the Delta Sharing protocol (FastAPI + uvicorn)."""
    from pipelines.sharing.server import serve

    s = settings()
    try:
        console.print(f"Delta Sharing server on http://{host}:{port}/delta-sharing (Ctrl-C to stop)")
        serve(s, host=host, port=port)
    except TelcolakeError as exc:
        fail(exc)


# --- churn -------------------------------------------------------------------------------

churn_app = typer.Typer(help="Churn model: train on gold/churn/features_daily, score a day, make offers.", no_args_is_help=True)
app.add_typer(churn_app, name="churn")


def _parse_day(value: str | None, option: str):
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error:[/red] {option} {value!r}: expected a date YYYY-MM-DD")
        raise typer.Exit(2) from None


@app.command("features")
def features_cmd(
    as_of: str = typer.Option(None, "--as-of", help="Compute one as-of date (YYYY-MM-DD), replacing its partition."),
    start: str = typer.Option(None, "--from", help="First as-of date of a backfill."),
    end: str = typer.Option(None, "--to", help="Last as-of date of a backfill (inclusive)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write gold/churn/features_daily (point in time) for one as-of date or a --from/--to range."""
    import json
    from dataclasses import asdict

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.churn.features import build_features

    day, first, last = _parse_day(as_of, "--as-of"), _parse_day(start, "--from"), _parse_day(end, "--to")
    if (day is None) == (first is None and last is None) or (day is None and (first is None or last is None)):
        err.print("[red]error:[/red] give either --as-of DATE or both --from DATE and --to DATE")
        raise typer.Exit(2)
    first, last = (day, day) if day else (first, last)
    s = settings()
    total = (last - first).days + 1 if last >= first else 0
    try:
        with Progress(TextColumn("features"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, disable=quiet or as_json) as progress:
            task = progress.add_task("staging inputs", total=total)
            run = build_features(s, first, last, on_day=lambda d, n: progress.update(task, advance=1, description=f"{d} ({n:,} rows)"))
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(asdict(run), default=str))
    elif not quiet:
        console.print(f"wrote {run.rows:,} rows for {len(run.days)} day(s) {run.days[0]}..{run.days[-1]} in {run.seconds:.1f}s (table version {run.table_version})")


@churn_app.command("train")
def churn_train(as_json: bool = typer.Option(False, "--json", help="Print the run as JSON.")) -> None:
    """Train the baseline (and a tenure-only model) on a time-based split; store metrics with the model version."""
    import json
    from dataclasses import asdict

    from pipelines.churn.model import train

    s = settings()
    try:
        with err.status("training", spinner="dots") if not as_json else _nullcontext():
            r = train(s)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(asdict(r), default=str))
        return
    table = Table("model", "ROC AUC", "precision@top5%")
    table.add_row(f"baseline v{r.model_version}", f"{r.roc_auc:.3f}", f"{r.precision_at_5pct:.3f}")
    table.add_row("tenure only", f"{r.tenure_roc_auc:.3f}", f"{r.tenure_precision_at_5pct:.3f}")
    console.print(f"train {r.train_from}..{r.train_to} ({r.rows_train:,} rows, {r.positives_train} churned), "
                  f"test {r.test_from}..{r.test_to} ({r.rows_test:,} rows, {r.positives_test} churned)")
    console.print(table)


def _nullcontext():
    from contextlib import nullcontext

    return nullcontext()


@churn_app.command("score")
def churn_score(
    as_of: str = typer.Option(..., "--as-of", help="The as-of date to score (its features must exist)."),
    model_version: int = typer.Option(None, "--model-version", help="Model version (default: the latest)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write gold/churn/scores and gold/churn/offers (top-risk subscribers, reasons, offer) for one day."""
    import json
    from dataclasses import asdict

    from pipelines.churn.scoring import score

    day = _parse_day(as_of, "--as-of")
    s = settings()
    try:
        r = score(s, day, version=model_version)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(asdict(r)))
    else:
        console.print(f"scored {r.scored:,} subscribers for {r.as_of_date} with model v{r.model_version}; {r.offers:,} offers")


# --- quality -----------------------------------------------------------------------------


@app.command("quality")
def quality_cmd(
    tables: list[str] = typer.Argument(None, help="Tables to gate (default: every table a suite guards)."),
    docs: bool = typer.Option(False, "--docs", help="Print the Data Docs folder and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Validate pinned table versions with the Great Expectations suites in quality/; exit 1 on failure."""
    import json

    from rich.progress import Progress

    from quality.docs import docs_dir
    from quality.runner import run_gate

    s = settings()
    if docs:
        print(docs_dir(s))
        return
    try:
        with Progress(console=err, transient=True, disable=quiet or as_json) as progress:
            task = progress.add_task("quality", total=None)
            result = run_gate(s, tables or None, raise_on_failure=False,
                              progress=lambda name: progress.update(task, description=name, advance=1))
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result.summary(), default=str))
    else:
        for line in result.failures:
            print(line, file=sys.stderr)
        verdict = "passed" if result.ok else f"FAILED ({len(result.failures)} expectation(s))"
        print(f"quality {verdict}: {len(result.suites)} suite(s), {len(result.rows)} expectation(s), versions "
              f"{', '.join(f'{t}@v{v}' for t, v in result.versions.items()) or '-'}; results in ops/quality_results "
              f"run_id={result.run_id}; docs {result.docs_dir}")
        if result.unguarded:
            print(f"no suite guards: {', '.join(result.unguarded)}", file=sys.stderr)
    if not result.ok:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())


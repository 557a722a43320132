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
    """Per topic and partition: end offset, landed offset, lag, rows, quarantine, freshness."""
    import json

    from pipelines.status import as_json as to_json
    from pipelines.status import topic_status

    s = settings()
    statuses = topic_status(s)
    if as_json:
        print(json.dumps({"topics": to_json(statuses)}, default=str))
        return
    table = Table("topic", "part", "end", "landed", "lag", "rows", "quarantined", title="ingest")
    for t in statuses:
        for p in t.partitions:
            show = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
            table.add_row(t.topic, str(p.partition), show(p.end_offset), show(p.landed_offset), show(p.lag), f"{p.rows:,}", f"{p.quarantined:,}")
    console.print(table)
    tables = Table("topic", "bronze version", "rows", "quarantined", "last commit", "newest event", "freshness")
    for t in statuses:
        fresh = "-" if t.freshness_s is None else f"{t.freshness_s:,.0f}s"
        tables.add_row(t.topic, str(t.table_version), f"{t.rows:,}", f"{t.quarantined:,}", t.last_commit_at or "-", t.newest_event_at or "-", fresh)
    console.print(tables)


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


# --- demo --------------------------------------------------------------------------------


@app.command()
def demo(
    subscribers: int = typer.Option(0, "--subscribers", help="Simulated subscribers (default: [simulate] subscribers)."),
    days: int = typer.Option(0, "--days", help="Simulated days (default: [simulate] days)."),
) -> None:
    """Run the whole product on the embedded defaults and print a summary."""
    from pipelines.demo import run_demo

    s = settings()
    try:
        run_demo(s, console, subscribers=subscribers, days=days)
    except TelcolakeError as exc:
        fail(exc)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())


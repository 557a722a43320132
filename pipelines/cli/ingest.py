"""`telcolake ingest|backfill|silver|maintain`: Kafka and legacy dumps into bronze and silver."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError


def _progress_callback(progress, task):
    def on_landed(landed) -> None:
        progress.update(task, advance=landed.rows + landed.quarantined)

    return on_landed


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
    from pipelines.ingest.kafka_source import StopFlag

    s = settings()
    try:
        if processes > 1:
            secs = ingest_mod.run_cluster(s, processes=processes, workers=workers or s.ingest.workers, until_caught_up=until_caught_up)
            summary = {"processes": processes, "seconds": round(secs, 3)}
        else:
            stop = StopFlag()
            stop.install()
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} records"), TimeElapsedColumn(), console=err, disable=quiet or as_json, transient=True) as progress:
                task = progress.add_task("ingesting" + (" until caught up" if until_caught_up else " (Ctrl-C to stop)"), total=None)
                stats = ingest_mod.run_ingest(s, until_caught_up=until_caught_up, workers=workers or None, on_landed=_progress_callback(progress, task), stop=stop)
            summary = stats.as_dict()
        if silver and until_caught_up:
            from pipelines.ingest.silver import refresh

            summary["silver"] = [r.__dict__ for r in refresh(s)]
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary, default=str))
    elif not quiet:
        console.print(summary)


def backfill(
    paths: list[Path] = typer.Argument(..., help="Dump files or directories (CSV, Parquet, JSON lines)."),
    topic: str = typer.Option(None, "--topic", help="Contract topic of the files when their path does not say."),
    workers: int = typer.Option(1, "--workers", "-w"),
    silver: bool = typer.Option(True, "--silver/--no-silver", help="Refresh silver tables afterwards."),
    as_json: bool = typer.Option(False, "--json"),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of CSV / JSON-lines dumps (legacy exports: latin-1, cp1252 ...)."),
    retry_refused: bool = typer.Option(False, "--retry-refused", help="Also retry files refused before whose content did not change."),
) -> None:
    """Land legacy dumps through the same decoder, quarantine and bronze tables; each file once."""
    import json

    from rich.markup import escape

    from pipelines.ingest.backfill import run_backfill

    s = settings()
    try:
        result = run_backfill(s, paths, topic=topic, encoding=encoding, workers=workers, retry_refused=retry_refused)
        summary = result.as_dict()
        if silver:
            from pipelines.ingest.silver import refresh

            summary["silver"] = [r.__dict__ for r in refresh(s)]
    except TelcolakeError as exc:
        fail(exc)
    for r in result.refused:
        err.print(f"refused {escape(r.path)}: {escape(r.reason)}", soft_wrap=True, highlight=False)
    for r in result.skipped:
        err.print(f"skipped {escape(r.path)}: {escape(r.reason)}", soft_wrap=True, highlight=False)
    for r in result.unchanged_refused:
        err.print(f"refused before, unchanged (not retried) {escape(r.path)}: {escape(r.reason)}", soft_wrap=True, highlight=False)
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        console.print(summary)


def silver_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Bring silver tables (deduplicated usage, subscriber intervals) up to date with bronze."""
    import json

    from pipelines.ingest.silver import refresh

    s = settings()
    results = [r.__dict__ for r in refresh(s)]
    if as_json:
        print(json.dumps(results, default=str))
    else:
        for r in results:
            console.print(r)


def maintain(
    retention_hours: float = typer.Option(168.0, "--retention-hours", help="Vacuum files unreferenced for longer than this."),
    force: bool = typer.Option(False, "--force", help="Allow a retention below a table's safe minimum (breaks time travel to older versions)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compact small files, write checkpoints, vacuum old files; safe while ingest runs."""
    import json

    from pipelines.core.errors import ConfigError
    from pipelines.ingest.maintain import maintain_all

    s = settings()
    try:
        results = maintain_all(s, retention_hours=retention_hours, force=force)
    except ConfigError as exc:
        fail(exc, 2)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(results, default=str))
    else:
        for r in results:
            console.print(r)

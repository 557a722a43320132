"""`telcolake stream`: cell KPIs, network and fraud alerts, offer triggers."""

from __future__ import annotations

import typer
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError


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

    from pipelines.ingest.kafka_source import StopFlag
    from pipelines.streams import run_streams

    s = settings()
    stop = StopFlag()
    stop.install()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} events"),
                      TimeElapsedColumn(), console=err, disable=quiet or as_json, transient=True) as progress:
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

"""`telcolake catalog load|bill-run|rerate`: the tariff catalog, bill runs and rerates."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError

catalog_app = typer.Typer(help="The tariff catalog (reference/catalog.toml).", no_args_is_help=True)


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
        if result.held_accounts:
            console.print(f"{result.held_accounts:,} accounts held (billed once their data is fixed): "
                          "see gold/billing/held_accounts")


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

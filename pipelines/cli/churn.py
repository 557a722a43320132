"""`telcolake features|churn train|churn score`: churn features, model and offers."""

from __future__ import annotations

import typer
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError

churn_app = typer.Typer(help="Churn model: train on gold/churn/features_daily, score a day, make offers.", no_args_is_help=True)


def _parse_day(value: str | None, option: str):
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error:[/red] {option} {value!r}: expected a date YYYY-MM-DD")
        raise typer.Exit(2) from None


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
        console.print(f"scored {r.scored:,} subscribers for {r.as_of_date} with model v{r.model_version}; {r.offers:,} offers; "
                      f"gold/offers/retention: {r.retention_offers:,} ({r.retention_by_source})")

"""`telcolake quality`: the Great Expectations gates."""

from __future__ import annotations

import sys

import typer

from pipelines.cli.common import err, fail, settings
from pipelines.core.errors import TelcolakeError


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

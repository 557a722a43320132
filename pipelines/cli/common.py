"""What every command module shares: the consoles, loading settings, one-line failures."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import TelcolakeError

console = Console()
err = Console(stderr=True)


def settings() -> Settings:
    """Load the settings, turning a config error into one clear line and exit code 2."""
    try:
        return load_settings()
    except TelcolakeError as exc:
        err.print(f"[red]config error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def fail(exc: Exception, code: int = 1) -> None:
    """Print ``exc`` as one line (its text verbatim: ``[vat]`` is not rich markup) and exit."""
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(code)

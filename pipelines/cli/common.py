"""What every command module shares: the consoles, loading settings, one-line failures."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from pipelines.core.config import Settings, load_settings
from pipelines.core.errors import ConfigError, TelcolakeError

console = Console()
err = Console(stderr=True)


def settings() -> Settings:
    """Load the settings, turning a config error into one clear line and exit code 2."""
    try:
        return load_settings()
    except TelcolakeError as exc:
        err.print(f"[red]config error:[/red] {one_line(exc)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


def one_line(exc: Exception) -> str:
    """The message of ``exc`` as one line of literal text (rich markup in it is escaped)."""
    return escape(" ".join(str(exc).split("\n")).strip())


def fail(exc: Exception, code: int = 1) -> None:
    """Print ``exc`` as one line (never wrapped to the terminal's width) and exit with ``code``."""
    if isinstance(exc, ConfigError):
        err.print(f"[red]config error:[/red] {one_line(exc)}", soft_wrap=True, highlight=False)
        raise typer.Exit(code)
    err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)

"""The Suite (a named list of Great Expectations expectations guarding one lake table) and the gate run context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import great_expectations as gx
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.lake import Lake


@dataclass(frozen=True)
class Suite:
    """Expectations over a lake table, or over a frame computed from pinned table versions.

    Attributes:
        name: Dotted suite name, e.g. ``"billing.invoices_balance"``.
        table: The lake table it guards, e.g. ``"gold/billing/invoices"``.
        expectations: Builds the GE 1.x expectations afresh for each run.
        frame: Builds the data to validate from pinned versions (table name -> version) of
            ``table`` and ``inputs``; None validates ``table`` itself.
        inputs: Other tables ``frame`` reads; their versions are pinned and recorded.
        description: One line: what a failure means and where to look.
    """

    name: str
    table: str
    expectations: Callable[[], list[gx.expectations.Expectation]]
    frame: Callable[[Lake, dict[str, int]], pa.Table] | None = None
    inputs: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class QualityConfig:
    """The ``[quality]`` section of telcolake.toml.

    Attributes:
        max_future_skew_hours: event times later than validation time plus this fail.
        max_event_age_days: event times older than validation time minus this fail.
        batch_rows: rows per pandas batch handed to Great Expectations.
        duckdb_memory_limit: DuckDB memory before spilling, for the global (uniqueness) checks.
        examples: unexpected examples kept per expectation.
        docs_keep_runs: gate runs per suite kept in the Data Docs site (the results table keeps all).
    """

    max_future_skew_hours: float = 24.0
    max_event_age_days: float = 3650.0
    batch_rows: int = 1_000_000
    duckdb_memory_limit: str = "1GB"
    examples: int = 20
    docs_keep_runs: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityConfig:
        """Parse ``[quality]``; a bad value raises a one-line ConfigError naming the key."""
        out = settings.values("quality")
        return cls(**out)


@dataclass(frozen=True)
class RunContext:
    """What expectation builders may read during a gate run: the config, the run's clock and the
    settings (for a domain's own thresholds, e.g. ``[billing] max_held_share``)."""

    config: QualityConfig
    now: datetime
    settings: Settings | None = None


_ACTIVE: ContextVar[RunContext | None] = ContextVar("quality_run", default=None)


def active() -> RunContext:
    """The running gate's context (outside a run: the default config and now)."""
    ctx = _ACTIVE.get()
    if ctx is not None:
        return ctx
    from pipelines.core.config import load_settings

    settings = load_settings()
    return RunContext(config=QualityConfig.from_settings(settings), now=datetime.now(UTC), settings=settings)


@contextmanager
def running(ctx: RunContext) -> Iterator[RunContext]:
    """Make ``ctx`` the active run context while the gate runs."""
    token = _ACTIVE.set(ctx)
    try:
        yield ctx
    finally:
        _ACTIVE.reset(token)


def event_time_window() -> tuple[datetime, datetime]:
    """(oldest, latest) event time allowed now: horizon and future skew from ``[quality]``."""
    ctx = active()
    return (
        ctx.now - timedelta(days=ctx.config.max_event_age_days),
        ctx.now + timedelta(hours=ctx.config.max_future_skew_hours),
    )

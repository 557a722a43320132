"""What is in the lake: every table's version, rows, size, last commit and freshness."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.lake import Lake, Skipped, view_name, view_names


@dataclass
class TableInfo:
    """One Delta table as ``telcolake tables`` shows it."""

    table: str
    view: str
    version: int
    rows: int
    files: int
    size_bytes: int
    last_commit_at: str | None
    last_operation: str | None
    freshness_s: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def table_info(lake: Lake, name: str, *, now: datetime | None = None, view: str | None = None) -> TableInfo:
    """Version, row count (from file statistics), size (sum of file sizes) and last commit of ``name``."""
    dt = lake.table(name)
    adds = pa.table(dt.get_add_actions(flatten=True))
    counts = adds.column("num_records") if "num_records" in adds.column_names else None
    if counts is not None and counts.null_count == 0:
        rows = int(pc.sum(counts).as_py() or 0)
    else:  # files written without statistics: count them
        rows = dt.to_pyarrow_dataset().count_rows()
    size = int(pc.sum(adds.column("size_bytes")).as_py() or 0) if adds.num_rows else 0
    last = dt.history(limit=1)
    commit_at = datetime.fromtimestamp(last[0]["timestamp"] / 1000, UTC) if last and "timestamp" in last[0] else None
    now = now or datetime.now(UTC)
    return TableInfo(
        table=name,
        view=view_name(name) if view is None else view,
        version=dt.version(),
        rows=rows,
        files=adds.num_rows,
        size_bytes=size,
        last_commit_at=commit_at.isoformat() if commit_at else None,
        last_operation=last[0].get("operation") if last else None,
        freshness_s=round((now - commit_at).total_seconds(), 1) if commit_at else None,
    )


@dataclass
class LakeReport:
    """Every registered table's info, and what discovery or reading skipped, with the reason."""

    tables: list[TableInfo]
    skipped: list[Skipped]


def lake_report(lake: Lake) -> LakeReport:
    """``table_info`` of every table discovery finds; a table that cannot be read is skipped with the reason.

    A table whose view name another table took keeps its row with an empty ``view``.
    """
    now = datetime.now(UTC)
    found = lake.discover()
    skipped = list(found.skipped)
    views = {table: view for view, table in view_names(found.tables, skipped).items() if view == view_name(table)}
    infos = []
    for name in found.tables:
        try:
            infos.append(table_info(lake, name, now=now, view=views.get(name, "")))
        except Exception as exc:  # noqa: BLE001 - one broken table must not hide the others
            lines = str(exc).strip().splitlines()
            skipped.append(Skipped(name, f"cannot be read: {(lines[0] if lines else type(exc).__name__)[:300]}"))
    return LakeReport(infos, skipped)


def lake_tables(lake: Lake) -> list[TableInfo]:
    """``table_info`` of every readable table under the layer roots, by name (see :func:`lake_report`)."""
    return lake_report(lake).tables


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for limit, unit, div in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:,.0f}{unit} ago"
    return f"{seconds / 86400:,.1f}d ago"

"""Table maintenance: compaction, checkpoints, vacuum; safe to run beside a live ingest.

One run compacts each table in one commit (every partition at most once), checkpoints it and
vacuums files unreferenced for longer than the retention. A run right after another changes
nothing: no commit when nothing is left to compact or to delete. A retention below a table's
``delta.deletedFileRetentionDuration`` (Delta's default: 168 h) is refused unless forced:
readers of older versions, time travel and the change data feed need those files.
"""

from __future__ import annotations

import re
import time

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError
from pipelines.core.lake import Lake

DEFAULT_RETENTION_HOURS = 168.0
_UNITS = {"microsecond": 1 / 3.6e9, "millisecond": 1 / 3.6e6, "second": 1 / 3600, "minute": 1 / 60, "hour": 1.0, "day": 24.0, "week": 168.0}
_INTERVAL = re.compile(r"^\s*interval\s+(\d+(?:\.\d+)?)\s+([a-z]+?)s?\s*$", re.I)


def safe_retention_hours(dt: DeltaTable) -> float:
    """The table's ``delta.deletedFileRetentionDuration`` in hours (168 when not set)."""
    value = dt.metadata().configuration.get("delta.deletedFileRetentionDuration")
    m = _INTERVAL.match(value or "")
    if not m or m.group(2).lower() not in _UNITS:
        return DEFAULT_RETENTION_HOURS
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def check_retention(lake: Lake, names: list[str], retention_hours: float) -> None:
    """Refuse ``retention_hours`` below any table's safe minimum.

    Raises:
        ConfigError: naming the first such table and its minimum.
    """
    for name in names:
        floor = safe_retention_hours(lake.table(name))
        if retention_hours < floor:
            raise ConfigError(
                f"--retention-hours {retention_hours:g} is below the safe minimum of {floor:g} h for {name} "
                "(delta.deletedFileRetentionDuration): time travel, the change data feed and readers of older versions "
                "would fail with 'No such file'; pass --force to vacuum anyway"
            )


def maintain_table(lake: Lake, name: str, *, retention_hours: float = DEFAULT_RETENTION_HOURS, force: bool = False,
                   attempts: int = 10) -> dict:
    """Compact (one commit), checkpoint and vacuum one table; a conflicting concurrent commit is retried.

    Raises:
        ConfigError: ``retention_hours`` below the table's safe minimum and not ``force``.
    """
    if not force:
        check_retention(lake, [name], retention_hours)
    result: dict = {"table": name, "files_removed": 0, "files_added": 0}
    for attempt in range(attempts):
        try:
            metrics = lake.table(name).optimize.compact()
            result["files_removed"] = metrics.get("numFilesRemoved", 0)
            result["files_added"] = metrics.get("numFilesAdded", 0)
            break
        except CommitFailedError as exc:  # a commit replaced some of those files meanwhile; compaction is redone
            result["retries"] = attempt + 1
            if attempt == attempts - 1:
                result["error"] = str(exc)
            time.sleep(0.1 * (attempt + 1))
    dt = lake.table(name)
    dt.create_checkpoint()
    kwargs = {"retention_hours": int(retention_hours), "enforce_retention_duration": not force}
    # the Delta log keeps listing removed files until their tombstones expire: vacuum (two
    # commits) only when some of them are still in storage
    due = lake.existing_files(name, dt.vacuum(dry_run=True, **kwargs))
    result["vacuumed"] = len(dt.vacuum(dry_run=False, **kwargs)) if due else 0
    result["version"] = lake.table(name).version()
    return result


def maintain_all(settings: Settings, *, retention_hours: float = DEFAULT_RETENTION_HOURS, force: bool = False) -> list[dict]:
    """Maintain every table of the lake.

    Raises:
        ConfigError: ``retention_hours`` below a table's safe minimum and not ``force`` (before any work).
    """
    lake = Lake.from_settings(settings)
    names = lake.list_tables()
    if not force:
        check_retention(lake, names, retention_hours)
    return [maintain_table(lake, name, retention_hours=retention_hours, force=force) for name in names]

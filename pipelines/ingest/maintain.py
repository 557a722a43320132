"""Table maintenance: compaction, checkpoints, vacuum; safe to run beside a live ingest."""

from __future__ import annotations

import time
from datetime import timedelta

from deltalake.exceptions import CommitFailedError

from pipelines.core.config import Settings
from pipelines.core.lake import Lake


def maintain_table(lake: Lake, name: str, *, retention_hours: float = 168.0, attempts: int = 10) -> dict:
    """Compact, checkpoint and vacuum one table; a conflicting concurrent commit is retried."""
    result: dict = {"table": name}
    for attempt in range(attempts):
        try:
            dt = lake.table(name)
            metrics = dt.optimize.compact(min_commit_interval=timedelta(seconds=0))
            result["files_removed"] = metrics.get("numFilesRemoved", 0)
            result["files_added"] = metrics.get("numFilesAdded", 0)
            break
        except CommitFailedError as exc:  # an append committed meanwhile; compaction is redone
            result["retries"] = attempt + 1
            if attempt == attempts - 1:
                result["error"] = str(exc)
            time.sleep(0.1 * (attempt + 1))
    dt = lake.table(name)
    dt.create_checkpoint()
    removed = dt.vacuum(retention_hours=int(retention_hours), enforce_retention_duration=False, dry_run=False)
    result["vacuumed"] = len(removed)
    result["version"] = dt.version()
    return result


def maintain_all(settings: Settings, *, retention_hours: float = 168.0) -> list[dict]:
    lake = Lake.from_settings(settings)
    return [maintain_table(lake, name, retention_hours=retention_hours) for name in lake.list_tables()]

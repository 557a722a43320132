"""Backfill legacy dumps: every good file lands, every bad file is refused with its reason in ``quarantine/backfill_files``.

A run finds the files (:func:`pipelines.ingest.dumps.find_dumps`), leaves out files refused
before whose content (hash) and reading options (topic, encoding) are unchanged, runs the
backfill dataflow over the rest (a file refused while it is read does not stop the others),
and appends one row per new refusal or skip: path, content hash, size, topic, format,
encoding, status, reason and time. Running it again retries only refused files that changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.ingest.dumps import Plan, Refusal, check_encoding, find_dumps
from pipelines.ingest.landing import Landed
from pipelines.ingest.run import IngestStats

BACKFILL_FILES = "quarantine/backfill_files"
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("path", pa.string()), ("content_sha256", pa.string()), ("size_bytes", pa.int64()), ("topic", pa.string()),
    ("format", pa.string()), ("encoding", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("recorded_at", TS),
])


@dataclass
class BackfillResult:
    """What one backfill run did."""

    files: int = 0
    stats: IngestStats = field(default_factory=IngestStats)
    refused: list[Refusal] = field(default_factory=list)
    skipped: list[Refusal] = field(default_factory=list)
    unchanged_refused: list[Refusal] = field(default_factory=list)
    same_content: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        def rows(items: list[Refusal]) -> list[dict]:
            return [{"path": r.path, "reason": r.reason, **({"sha256": r.sha256} if r.sha256 else {})} for r in items]

        return {"files": self.files, **self.stats.as_dict(), "refused_files": rows(self.refused), "skipped_files": rows(self.skipped),
                "refused_before_unchanged": rows(self.unchanged_refused), "same_content_as": dict(self.same_content)}


def _key(r: Refusal) -> tuple:
    """What makes a refusal the same one again: the file, its content, and how it was read."""
    return (r.path, r.sha256, r.topic, r.encoding) if r.sha256 else (r.path, None, r.reason)


def recorded(lake: Lake) -> dict[tuple, Refusal]:
    """Every refusal and skip recorded in ``quarantine/backfill_files``, by its key."""
    if not lake.exists(BACKFILL_FILES):
        return {}
    out = {}
    for row in lake.read(BACKFILL_FILES).to_pylist():
        r = Refusal(row["path"], row["reason"], row["status"], row["content_sha256"], row["size_bytes"], row["topic"], row["format"], row["encoding"])
        out[_key(r)] = r
    return out


def record(lake: Lake, refusals: list[Refusal], *, now: datetime | None = None) -> int | None:
    """Append ``refusals`` to ``quarantine/backfill_files`` in one commit; returns the version (None: nothing to write)."""
    if not refusals:
        return None
    at = now or datetime.now(UTC)
    rows = [{"path": r.path, "content_sha256": r.sha256, "size_bytes": r.size, "topic": r.topic, "format": r.fmt,
             "encoding": r.encoding, "status": r.status, "reason": r.reason, "recorded_at": at} for r in refusals]
    return lake.write(BACKFILL_FILES, pa.Table.from_pylist(rows, schema=SCHEMA))


def plan_backfill(lake: Lake, paths: list[Path], *, topic: str | None, encoding: str,
                  retry_refused: bool = False) -> tuple[Plan, list[Refusal]]:
    """The files to land now, and the refusals left out because the file is unchanged since it was refused.

    A file refused before is retried when its content hash, its topic or the encoding it is
    read with changed (or with ``retry_refused``).
    """
    plan = find_dumps(paths, topic, encoding)
    before = {} if retry_refused else recorded(lake)
    unchanged = [before[k] for f in plan.files if (k := (str(f.path), f.sha256, f.topic, f.encoding)) in before]
    plan.files = [f for f in plan.files if (str(f.path), f.sha256, f.topic, f.encoding) not in before]
    unchanged += [r for r in plan.refusals if r.status == "refused" and _key(r) in before]
    plan.refusals = [r for r in plan.refusals if not (r.status == "refused" and _key(r) in before)]
    return plan, unchanged


def run_backfill(
    settings: Settings,
    paths: list[Path],
    *,
    topic: str | None = None,
    encoding: str = "utf-8",
    workers: int = 1,
    retry_refused: bool = False,
    on_landed: Callable[[Landed], None] | None = None,
) -> BackfillResult:
    """Land the dumps under ``paths`` through the same decoder, quarantine and bronze tables as Kafka.

    Args:
        settings: the settings.
        paths: dump files or directories.
        topic: the contract topic of files whose path does not name one.
        encoding: text encoding of CSV and JSON-lines files (UTF-8 by default).
        workers: Bytewax workers.
        retry_refused: also retry files refused before whose content did not change.
        on_landed: called after each landed batch (progress).

    Raises:
        ConfigError: an unknown encoding.
        TelcolakeError: a path named directly does not exist.
    """
    from bytewax._bytewax import cli_main

    from dataflows.backfill import build_flow

    encoding = check_encoding(encoding)
    lake = Lake.from_settings(settings)
    plan, unchanged = plan_backfill(lake, paths, topic=topic, encoding=encoding, retry_refused=retry_refused)
    result = BackfillResult(files=len(plan.files), unchanged_refused=unchanged, same_content=plan.same_content)
    lock = threading.Lock()
    during: list[Refusal] = []

    def refused(r: Refusal) -> None:
        with lock:
            during.append(r)

    def landed(x: Landed) -> None:
        result.stats.add(x)
        if on_landed is not None:
            on_landed(x)

    started = time.monotonic()
    if plan.files:
        cli_main(build_flow(settings, plan.files, on_landed=landed, on_refused=refused), workers_per_process=workers)
    result.stats.seconds = time.monotonic() - started
    found = plan.refusals + sorted(during, key=lambda r: r.path)
    before = recorded(lake)
    record(lake, [r for r in found if _key(r) not in before])
    result.refused = [r for r in found if r.status == "refused"]
    result.skipped = [r for r in found if r.status == "skipped"]
    return result

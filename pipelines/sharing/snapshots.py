"""Delta table facts the sharing protocol needs: versions by time, snapshot files, per-version changes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable

from pipelines.core.lake import Lake, _s3_filesystem


class BadRequest(ValueError):
    """The request names a version or time the table does not have, or a malformed value."""


@dataclass
class FileEntry:
    """One data file of a snapshot or a change: its path relative to the table root."""

    path: str
    size: int
    partition_values: dict[str, str]
    num_records: int | None = None
    stats: str | None = None
    action: str = "file"  # file | add | remove | cdf
    version: int | None = None
    timestamp: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def file_id(self) -> str:
        return hashlib.sha256(self.path.encode()).hexdigest()[:32]


def filesystem(lake: Lake, table: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the table root path on it."""
    uri = lake.uri(table)
    if lake.is_remote:
        fs = _s3_filesystem(lake)
        if fs is not None:
            return fs, uri.split("://", 1)[1]
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri.removeprefix("file://")


def parse_timestamp(text: str) -> int:
    """A protocol timestamp (``yyyy-mm-dd hh:mm:ss[.f]`` in UTC, or ISO 8601 with a zone) in epoch ms."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"timestamp {text!r}: expected yyyy-mm-dd hh:mm:ss (UTC) or ISO 8601") from None
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def commit_times(dt: DeltaTable) -> dict[int, int]:
    """Version -> commit timestamp (epoch ms) for every version in the log."""
    return {h["version"]: int(h["timestamp"]) for h in dt.history()}


def version_at(dt: DeltaTable, ts_ms: int) -> int:
    """The latest version committed at or before ``ts_ms``."""
    before = [v for v, t in commit_times(dt).items() if t <= ts_ms]
    if not before:
        raise BadRequest("the timestamp is before the table's first version")
    return max(before)


def version_from(dt: DeltaTable, ts_ms: int) -> int:
    """The earliest version committed at or after ``ts_ms`` (the latest if none is)."""
    times = commit_times(dt)
    after = [v for v, t in times.items() if t >= ts_ms]
    return min(after) if after else max(times)


def snapshot_files(dt: DeltaTable, limit_hint: int | None = None) -> list[FileEntry]:
    """The data files of the loaded snapshot; with ``limit_hint``, only enough to hold that many rows."""
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    out: list[FileEntry] = []
    rows = 0
    for a in sorted(actions, key=lambda a: a["path"]):
        if limit_hint is not None and out and rows >= limit_hint:
            break
        pv = {k.removeprefix("partition."): ("" if v is None else str(v)) for k, v in a.items() if k.startswith("partition.")}
        n = a.get("num_records")
        rows += n or 0
        out.append(FileEntry(path=a["path"], size=int(a["size_bytes"]), partition_values=pv, num_records=n,
                             stats=None if n is None else json.dumps({"numRecords": n})))
    return out


def changes(lake: Lake, table: str, start: int, end: int) -> list[FileEntry]:
    """Data change files of versions ``start..end``: cdc files where a commit wrote them, else its adds and removes."""
    fs, root = filesystem(lake, table)
    out: list[FileEntry] = []
    for v in range(start, end + 1):
        with fs.open_input_stream(f"{root}/_delta_log/{v:020d}.json") as f:
            actions = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
        ts = next((a["commitInfo"].get("timestamp") for a in actions if "commitInfo" in a), None)
        cdc = [a["cdc"] for a in actions if "cdc" in a]
        picked = [("cdf", c) for c in cdc] if cdc else [(k, a[k]) for a in actions for k in ("add", "remove") if k in a and a[k].get("dataChange", True)]
        for kind, a in picked:
            size = a.get("size")
            if size is None:
                size = fs.get_file_info(f"{root}/{a['path']}").size
            stats = a.get("stats") if kind == "add" else None
            n = json.loads(stats).get("numRecords") if stats else None
            out.append(FileEntry(path=a["path"], size=int(size), partition_values={k: "" if x is None else str(x) for k, x in (a.get("partitionValues") or {}).items()},
                                 num_records=n, stats=stats, action=kind, version=v, timestamp=int(ts or a.get("deletionTimestamp") or 0)))
    return out

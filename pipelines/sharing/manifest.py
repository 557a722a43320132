"""Share manifests (``ops/share_manifests``): what each complete publish of a partner's share made visible.

A publish commits the partner's changed tables one by one, then appends one manifest row
naming every table's version and content hash. The server serves each table as of the
partner's latest manifest, so a publish killed between two table commits is invisible: the
partner keeps reading the previous complete share, never tables built from different inputs.

Maintenance commits (OPTIMIZE, VACUUM: no data change) after a manifest's version carry the
same content, so the served version moves over them; a data-changing commit that no manifest
names (left by a killed publish) is never served.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.lake import Lake, utcnow
from pipelines.sharing.snapshots import filesystem

MANIFESTS = "ops/share_manifests"
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("partner_id", pa.string()), ("seq", pa.int64()), ("published_at", TS), ("tables", pa.string()),
                    ("input_versions", pa.string())])


@dataclass(frozen=True)
class Entry:
    """One table of a manifest: the version a complete publish left it at, its content hash and rows."""

    version: int
    content_sha256: str
    rows: int


@dataclass(frozen=True)
class Manifest:
    """One complete publish of a partner's share."""

    partner_id: str
    seq: int
    published_at: datetime
    tables: dict[str, Entry]
    input_versions: dict[str, int] = field(default_factory=dict)


def _rows(lake: Lake, partner_id: str) -> list[Manifest]:
    if not lake.exists(MANIFESTS):
        return []
    table = lake.read(MANIFESTS, filter=pc.field("partner_id") == partner_id)
    out = []
    for r in table.to_pylist():
        tables = {t: Entry(int(e["version"]), str(e["content_sha256"]), int(e["rows"])) for t, e in json.loads(r["tables"]).items()}
        out.append(Manifest(r["partner_id"], int(r["seq"]), r["published_at"], tables, json.loads(r["input_versions"] or "{}")))
    return sorted(out, key=lambda m: (m.seq, m.published_at))


def history(lake: Lake, partner_id: str) -> list[Manifest]:
    """Every manifest of ``partner_id``, oldest first."""
    return _rows(lake, partner_id)


def latest(lake: Lake, partner_id: str) -> Manifest | None:
    """The partner's latest complete publish (None before the first)."""
    rows = _rows(lake, partner_id)
    return rows[-1] if rows else None


def append(lake: Lake, partner_id: str, tables: dict[str, Entry], input_versions: dict[str, int],
           *, previous: Manifest | None) -> Manifest:
    """Record a complete publish: one row, one commit (the moment the partner sees the new share)."""
    m = Manifest(partner_id, (previous.seq + 1) if previous else 1, utcnow(), dict(tables), dict(input_versions))
    row = {"partner_id": partner_id, "seq": m.seq, "published_at": m.published_at,
           "tables": json.dumps({t: e.__dict__ for t, e in sorted(tables.items())}),
           "input_versions": json.dumps(input_versions, sort_keys=True)}
    lake.write(MANIFESTS, pa.Table.from_pylist([row], schema=SCHEMA))
    return m


class ChangeLog:
    """Per table and version: did that commit change data (add/remove/cdc with dataChange, or metadata)?

    Commits never change once written, so the answers are cached for the life of the process.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._known: dict[tuple[str, int], bool] = {}
        self._lock = threading.Lock()

    def changes_data(self, table: str, version: int) -> bool:
        key = (table, version)
        with self._lock:
            if key in self._known:
                return self._known[key]
        fs, root = filesystem(self.lake, table)
        with fs.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as f:
            actions = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
        changed = any("metaData" in a or "protocol" in a or any(k in a and a[k].get("dataChange", True) for k in ("add", "remove", "cdc"))
                      for a in actions)
        with self._lock:
            self._known[key] = changed
        return changed

    def reach(self, table: str, version: int, latest: int) -> int:
        """The latest version after ``version`` (up to ``latest``) reached through commits that change no data."""
        v = version
        while v < latest and not self.changes_data(table, v + 1):
            v += 1
        return v


def served_version(log: ChangeLog, table: str, entry: Entry, latest: int) -> int:
    """The version to serve for a table whose latest complete publish left it at ``entry.version``."""
    return log.reach(table, entry.version, latest)


def readable(log: ChangeLog, table: str, manifests: list[Manifest], name: str, version: int, latest: int) -> bool:
    """Whether ``version`` of share table ``name`` was part of a complete publish (or precedes every manifest).

    Versions a killed publish committed and no manifest named are not readable: their content
    may belong to inputs the other tables of the share never saw.
    """
    entries = [m.tables[name].version for m in manifests if name in m.tables]
    if not entries or version > latest:
        return False
    if version < min(entries):
        return True  # history from before the first manifest
    for start in sorted(set(entries)):
        if start <= version <= log.reach(table, start, latest):
            return True
    return False


def published_versions(lake: Lake, partner_id: str, tables: tuple[str, ...]) -> dict[str, int | None]:
    """Table -> the version partners are served now (None: not in a complete publish yet)."""
    last = latest(lake, partner_id)
    log = ChangeLog(lake)
    out: dict[str, int | None] = {}
    for t in tables:
        name = f"shares/{partner_id}/{t}"
        entry = last.tables.get(t) if last else None
        dt = lake.maybe_table(name) if entry else None
        out[t] = None if dt is None else served_version(log, name, entry, dt.version())
    return out

"""The share access log (ops/share_access_log): every server request, batched into few commits."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import pyarrow as pa

from pipelines.core.lake import Lake, utcnow

ACCESS_LOG = "ops/share_access_log"
SCHEMA = pa.schema([
    ("at", pa.timestamp("us", tz="UTC")), ("partner_id", pa.string()), ("share", pa.string()), ("schema", pa.string()),
    ("table", pa.string()), ("operation", pa.string()), ("status", pa.int32()), ("version", pa.int64()),
    ("files", pa.int64()), ("rows", pa.int64()), ("bytes", pa.int64()), ("path", pa.string()), ("log_date", pa.date32()),
])
log = logging.getLogger(__name__)


class AccessLog:
    """Buffers request rows and appends them every ``interval`` seconds (and on :meth:`flush`)."""

    def __init__(self, lake: Lake, interval: float = 1.0) -> None:
        self.lake = lake
        self.interval = interval
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, *, operation: str, status: int, partner_id: str | None = None, share: str | None = None,
               schema: str | None = None, table: str | None = None, version: int | None = None, files: int = 0,
               rows: int = 0, nbytes: int = 0, path: str = "", at: datetime | None = None) -> None:
        at = at or utcnow()
        with self._lock:
            self._rows.append({"at": at, "partner_id": partner_id, "share": share, "schema": schema, "table": table,
                               "operation": operation, "status": status, "version": version, "files": files, "rows": rows,
                               "bytes": nbytes, "path": path[:500], "log_date": at.date()})

    def flush(self) -> int:
        """Append what is buffered in one commit; returns the number of rows written."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if rows:
                try:
                    self.lake.write(ACCESS_LOG, pa.Table.from_pylist(rows, schema=SCHEMA), partition_by=["log_date"])
                except Exception:
                    with self._lock:
                        self._rows[:0] = rows
                    raise
            return len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the log must never stop the server; rows are retried next tick
                log.exception("share access log flush failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="share-access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.flush()

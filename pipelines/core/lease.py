"""Leases recorded in Delta: one holder at a time of a named lease, across processes and hosts.

A lease is a row of ``ops/leases`` (partitioned by lease name) plus a Delta app transaction
``telcolake-lease:<name>`` whose version counts the lease's changes. Taking, renewing and
giving it back are commits planned from one snapshot and checked against it
(:meth:`pipelines.core.lake.Lake.commit`): two processes taking a free lease at once both
commit the next count, so delta-rs fails one of them, which then sees the other holder. No
lock file, so it works the same with the lake on object storage.

A holder renews its lease on a background thread every third of the time to live; a holder
that died lets it expire. A holder stalled for longer than the time to live (clocks of the
hosts agreeing within a few seconds) can lose it: it is then told so when it gives it back.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import DeltaError

from pipelines.core.config import Settings
from pipelines.core.errors import ConcurrentWriterError, LakeError
from pipelines.core.lake import Lake, Write, utcnow

LEASES = "ops/leases"
TTL_S = 60.0
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("lease", pa.string()), ("holder", pa.string()), ("acquired_at", TS), ("expires_at", TS)])


class Lease:
    """A named lease in ``ops/leases``; use :meth:`held` as a context manager.

    Example:
        >>> with Lease(lake, "billing").held(on_wait=print):  # doctest: +SKIP
        ...     run_the_bill_run()
    """

    def __init__(self, lake: Lake, name: str, *, ttl_s: float = TTL_S, holder: str | None = None) -> None:
        self.lake, self.name, self.ttl_s = lake, name, ttl_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.generation: int | None = None
        self.lost: str | None = None
        self.renew_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def app_id(self) -> str:
        return f"telcolake-lease:{self.name}"

    def _predicate(self) -> str:
        return "lease = '" + self.name.replace("'", "''") + "'"

    def _row(self, dt) -> dict[str, Any] | None:
        if dt is None:
            return None
        rows = self.lake.read(LEASES, version=dt.version(), filter=pc.field("lease") == self.name).to_pylist()
        return rows[0] if rows else None

    def _commit(self, decide: Callable[[int, dict | None], Write | None]) -> bool:
        """Commit what ``decide(generation, row)`` returns, as generation + 1; False when it returned None."""
        planned: dict[str, int] = {}

        def plan(dt):
            generation = (dt.transaction_version(self.app_id) if dt is not None else None) or 0
            write = decide(generation, self._row(dt))
            if write is None:
                return None
            planned["generation"] = generation + 1
            return Write(write.data, mode="overwrite", predicate=self._predicate(), txns={self.app_id: generation + 1})

        done = self.lake.commit(LEASES, plan, partition_by=["lease"]) is not None
        if done:
            self.generation = planned["generation"]
        return done

    def _mine(self, now) -> Write:
        expires = now + timedelta(seconds=self.ttl_s)
        return Write(pa.Table.from_pylist([{"lease": self.name, "holder": self.holder, "acquired_at": now, "expires_at": expires}], schema=SCHEMA))

    def try_acquire(self) -> dict[str, Any] | None:
        """Take the lease if it is free (or expired); returns the other holder's row if not."""
        busy: dict[str, Any] = {}

        def decide(_generation: int, row: dict | None) -> Write | None:
            now = utcnow()
            busy.clear()
            if row is not None and row["holder"] != self.holder and row["expires_at"] > now:
                busy.update(row)
                return None
            return self._mine(now)

        if self._commit(decide):
            self._start_renewing()
            return None
        return dict(busy)

    def acquire(self, *, wait: bool = True, timeout_s: float | None = None, on_wait: Callable[[str], None] | None = None) -> Lease:
        """Take the lease, waiting while another live holder has it (unless ``wait`` is False).

        Raises:
            ConcurrentWriterError: held by another holder and ``wait`` is False, or still held
                after ``timeout_s``.
        """
        started = time.monotonic()
        told = False
        while True:
            other = self.try_acquire()
            if other is None:
                return self
            line = f"{self.name} is held by {other['holder']} (since {other['acquired_at']:%Y-%m-%dT%H:%M:%SZ})"
            if not wait or (timeout_s is not None and time.monotonic() - started > timeout_s):
                raise ConcurrentWriterError(f"{line}; another run is in progress, try again when it ends")
            if on_wait is not None and not told:
                on_wait(f"waiting: {line}")
                told = True
            time.sleep(min(1.0, self.ttl_s / 10))

    def renew(self) -> None:
        """Push the expiry out by the time to live; records :attr:`lost` when another holder took it."""

        def decide(generation: int, row: dict | None) -> Write | None:
            if generation != self.generation or row is None or row["holder"] != self.holder:
                self.lost = f"{row['holder'] if row else 'nobody'} holds it now"
                return None
            return self._mine(utcnow())

        self._commit(decide)

    def release(self) -> None:
        """Give the lease back (if still ours) and stop renewing it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

        def decide(generation: int, row: dict | None) -> Write | None:
            if generation != self.generation or row is None or row["holder"] != self.holder:
                self.lost = self.lost or f"{row['holder'] if row else 'nobody'} holds it now"
                return None
            return Write(SCHEMA.empty_table())

        self._commit(decide)

    def _start_renewing(self) -> None:
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.ttl_s / 3) and not self.lost:
                try:
                    self.renew()
                except (OSError, DeltaError, LakeError) as exc:  # the lake unreachable for a moment
                    self.renew_error = str(exc)  # the next beat tries again

        self._thread = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def held(self, *, wait: bool = True, timeout_s: float | None = None, on_wait: Callable[[str], None] | None = None) -> _Held:
        """A context manager holding the lease for its body."""
        return _Held(self, wait, timeout_s, on_wait)


class _Held:
    def __init__(self, lease: Lease, wait: bool, timeout_s: float | None, on_wait) -> None:
        self.lease, self.wait, self.timeout_s, self.on_wait = lease, wait, timeout_s, on_wait

    def __enter__(self) -> Lease:
        return self.lease.acquire(wait=self.wait, timeout_s=self.timeout_s, on_wait=self.on_wait)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.lease.release()
        if self.lease.lost and exc_type is None:
            raise ConcurrentWriterError(
                f"lease {self.lease.name} was lost while held ({self.lease.lost}): this run stalled for longer than "
                f"{self.lease.ttl_s:g} s and another may have run beside it; check its output tables"
            )


def leased(name_of: Callable[..., str]) -> Callable:
    """Run the decorated ``fn(settings, ...)`` holding the lease ``name_of(settings, ...)``.

    A second call waits while the first holds it; a ``on_step`` keyword argument of the call,
    when given, is told once that it waits and for whom.
    """

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(settings: Settings, *args: Any, **kwargs: Any) -> Any:
            step = kwargs.get("on_step")
            lease = Lease(Lake.from_settings(settings), name_of(settings, *args, **kwargs))
            with lease.held(on_wait=step):
                return fn(settings, *args, **kwargs)

        return run

    return wrap

"""Leases in ops/leases: one holder at a time across processes, waits, expiry, a lost lease is told."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pipelines.core.errors import ConcurrentWriterError
from pipelines.core.lake import Lake
from pipelines.core.lease import Lease

RACE = """
import sys, time
from pipelines.core.lake import Lake
from pipelines.core.lease import Lease
lease = Lease(Lake(sys.argv[1]), "billing", holder=sys.argv[2])
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start at the same instant
other = lease.try_acquire()
print("got" if other is None else "busy", flush=True)
if other is None:
    time.sleep(3)
    lease.release()
"""


def test_processes_racing_for_a_free_lease_get_exactly_one_holder(tmp_path):
    root = str(tmp_path / "lake")
    Lease(Lake(root), "warm-up").held().__enter__().release()  # the table exists; the race is on the lease
    at = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", RACE, root, f"p{i}", at], stdout=subprocess.PIPE, text=True) for i in range(4)]
    answers = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert answers == ["busy", "busy", "busy", "got"], answers


def test_a_held_lease_is_refused_or_waited_for_and_free_after_release(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    first = Lease(lake, "publish:fr-orange", holder="first").acquire()
    second = Lease(lake, "publish:fr-orange", holder="second")
    assert second.try_acquire()["holder"] == "first"
    with pytest.raises(ConcurrentWriterError, match="publish:fr-orange is held by first"):
        second.acquire(wait=False)
    told = []
    with pytest.raises(ConcurrentWriterError):
        second.acquire(timeout_s=0.5, on_wait=told.append)
    assert told and "held by first" in told[0]
    assert Lease(lake, "billing", holder="third").try_acquire() is None, "another lease name is independent"
    first.release()
    with second.held():
        assert Lease(lake, "publish:fr-orange").try_acquire()["holder"] == "second"
    assert Lease(lake, "publish:fr-orange").try_acquire() is None


def test_an_expired_lease_is_taken_over_and_its_stalled_holder_is_told(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    stalled = Lease(lake, "billing", ttl_s=1.0, holder="stalled")
    held = stalled.held()
    held.__enter__()
    stalled._stop.set()  # a holder that stopped renewing (stalled longer than its time to live)
    stalled._thread.join()
    time.sleep(1.2)
    assert Lease(lake, "billing", holder="next").try_acquire() is None
    with pytest.raises(ConcurrentWriterError, match="lease billing was lost while held"):
        held.__exit__(None, None, None)


def test_a_live_holder_keeps_its_lease_past_the_time_to_live(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    with Lease(lake, "billing", ttl_s=0.6, holder="alive").held():
        time.sleep(1.5)  # renewed every 0.2 s meanwhile
        assert Lease(lake, "billing", holder="other").try_acquire()["holder"] == "alive"

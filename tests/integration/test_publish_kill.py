"""Crash-consistent publish: kill -9 a real publish at every commit point; the partner's share is never mixed.

Each case starts from the same copy of a lake (one complete publish, then new roaming data),
runs ``telcolake publish`` in a child process that SIGKILLs itself right after its Nth commit
(the test-only hook ``TELCOLAKE_TEST_KILL_PUBLISH_AFTER_COMMITS``), and reads both tables of
the partner through the server with the official client: the settlement must always add up
to the records it was built from (both old or both new), never one of each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import delta_sharing
import pytest

from pipelines.core.config import load_settings
from pipelines.core.lake import Lake
from pipelines.sharing.publish import KILL_AFTER_ENV, publish
from tests.unit.sharing.conftest import Shared, make_env, running
from tests.unit.sharing.data import DAY, Builder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
P = "fr-orange"
OLD, NEW = (15, 15), (23, 23)  # (settlement count_events, records) before and after the 8 new roaming records
COMMITS = 5  # staged settlement, staged records, settlement merge, records merge, manifest


def point_at(root: Path, mp: pytest.MonkeyPatch) -> Shared:
    mp.setenv("TELCOLAKE_CONFIG", str(root / "telcolake.toml"))
    mp.setenv("TELCOLAKE_LAKE", str(root / "lake"))
    mp.setenv("TELCOLAKE_STATE_DIR", str(root / "state"))
    mp.setenv("TELCOLAKE_SECRETS_FILE", str(root / "secrets.toml"))
    settings = load_settings()
    return Shared(settings, Lake.from_settings(settings), Builder(), root)


def killed_publish(root: Path, after: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "TELCOLAKE_CONFIG": str(root / "telcolake.toml"), "TELCOLAKE_LAKE": str(root / "lake"),
           "TELCOLAKE_STATE_DIR": str(root / "state"), "TELCOLAKE_SECRETS_FILE": str(root / "secrets.toml"), KILL_AFTER_ENV: str(after)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "publish", "--partner", P, "--json"], env=env,
                          capture_output=True, text=True, timeout=600)


def partner_view(env: Shared, tmp: Path) -> tuple[int, int] | None:
    """What the partner reads through the server: (settlement events, record rows), None when nothing is shared."""
    with running(env, tmp) as srv:
        profile = srv.profile(P)
        names = sorted(t.name for t in delta_sharing.SharingClient(profile).list_all_tables())
        if not names:
            return None
        assert names == ["roaming_records", "roaming_settlement"]
        settlement = delta_sharing.load_as_pandas(f"{profile}#{P}.telcolake.roaming_settlement")
        records = delta_sharing.load_as_pandas(f"{profile}#{P}.telcolake.roaming_records")
        return int(settlement["count_events"].sum()), len(records)


class TestCrashConsistentPublish:
    """A publish killed at any commit leaves the partner on one complete share; the next publish completes it."""

    def test_kill_at_every_commit_point_of_a_republish(self, tmp_path, monkeypatch):
        base = tmp_path / "base"
        base.mkdir()
        env = make_env(base, monkeypatch)
        publish(env.settings, P)
        b = Builder()
        b.n = 60_000
        for i in range(1, 5):
            b.record(i, "voice", DAY + timedelta(hours=16, minutes=i), duration_s=61, plmn="208-01", cell=None)
            b.record(i, "sms", DAY + timedelta(hours=17, minutes=i), plmn="208-01", cell=None)
        b.append_usage(env.lake)
        assert partner_view(env, tmp_path) == OLD
        for after in range(1, COMMITS + 2):
            root = tmp_path / f"kill-after-{after}"
            shutil.copytree(base, root)
            proc = killed_publish(root, after)
            copy = point_at(root, monkeypatch)
            seen = partner_view(copy, tmp_path)
            if after <= COMMITS:
                assert proc.returncode == -9, (after, proc.returncode, proc.stderr[-2000:])
                assert seen == (NEW if after == COMMITS else OLD), (after, seen)  # never (23, 15) or (15, 23)
                publish(copy.settings, P)  # the next publish completes the share
                assert partner_view(copy, tmp_path) == NEW
            else:  # more commits asked for than a publish makes: it runs to the end
                assert proc.returncode == 0, proc.stderr[-2000:]
                assert seen == NEW

    def test_a_first_publish_killed_half_way_shows_nothing(self, tmp_path, monkeypatch):
        (tmp_path / "fresh").mkdir()
        env = make_env(tmp_path / "fresh", monkeypatch)
        proc = killed_publish(env.root, 3)  # after the first share table is created, before the second and the manifest
        assert proc.returncode == -9
        assert env.lake.exists(f"shares/{P}/roaming_settlement") and not env.lake.exists(f"shares/{P}/roaming_records")
        assert partner_view(env, tmp_path) is None
        publish(env.settings, P)
        assert partner_view(env, tmp_path) == OLD

"""Shared fixtures: a real embedded broker per test session, an isolated lake per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pipelines.core import broker
from pipelines.core.config import Settings, load_settings
from pipelines.core.lake import Lake


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Bootstrap address of a real embedded broker (Tansu) on a free loopback port."""
    state_dir = tmp_path_factory.mktemp("broker-state")
    state = broker.start_embedded(state_dir)
    yield state.address
    broker.stop_embedded(state_dir)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka: str) -> Settings:
    """Settings for an isolated test: its own lake and state dir, the session broker.

    Each test gets uuid-suffixed topic names so tests never see each other's records.
    """
    suffix = uuid.uuid4().hex[:8]
    config = tmp_path / "telcolake.toml"
    base = (Path(__file__).resolve().parent.parent / "telcolake.toml").read_text()
    base = base.replace('"usage.events" = 4', f'"usage.events.{suffix}" = 4')
    base = base.replace('"network.events" = 2', f'"network.events.{suffix}" = 2')
    base = base.replace('"bss.events" = 2', f'"bss.events.{suffix}" = 2')
    for topic in ("orders.events", "provisioning.commands", "provisioning.results", "orders.clock", "orders.state", "orders.jeopardy"):
        base = base.replace(f'"{topic}" =', f'"{topic}.{suffix}" =')
    config.write_text(base)
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(config))
    monkeypatch.setenv("TELCOLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("TELCOLAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TELCOLAKE_KAFKA_BOOTSTRAP", kafka)
    settings = load_settings()
    broker.ensure_topics(kafka, settings.topics)
    return settings


@pytest.fixture
def lake(env: Settings) -> Lake:
    return Lake.from_settings(env)


@pytest.fixture
def local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with an isolated lake and state dir and no Kafka at all (pure lake tests)."""
    monkeypatch.setenv("TELCOLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("TELCOLAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TELCOLAKE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TELCOLAKE_CONFIG", raising=False)
    return load_settings()


# Modules whose tests share the session's demo lake (``demo_lake`` in tests/e2e/conftest.py):
# one unit of work for pytest-xdist, so the lake is built once. Checked at collection.
DEMO_LAKE_MODULES = ("tests/e2e/test_notebooks.py", "tests/e2e/test_readme.py")


def _unit(nodeid: str) -> str:
    """The unit of work a test belongs to under pytest-xdist: its module, or the demo lake's."""
    path = nodeid.split("::")[0]
    return "demo_lake" if path in DEMO_LAKE_MODULES else path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the tests so the longest units start first: the demo lake's, then modules with slow
    tests, then the rest, each in its own order (pytest-xdist hands units out in this order)."""
    stray = [item.nodeid for item in items if "demo_lake" in getattr(item, "fixturenames", ()) and _unit(item.nodeid) != "demo_lake"]
    if stray:
        raise pytest.UsageError(f"tests on the demo lake outside DEMO_LAKE_MODULES (tests/conftest.py): {stray}")
    slow = {_unit(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        unit = _unit(item.nodeid)
        return 0 if unit == "demo_lake" else 1 if unit in slow else 2

    items.sort(key=rank)  # stable: the order within a rank is kept


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: the cores this process may use (affinity and a cgroup CPU quota), not the
    host's count that psutil reports inside a container; ``PYTEST_XDIST_AUTO_NUM_WORKERS`` wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").isdigit():
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN201 - xdist's scheduler type
    """``just test`` runs ``-n auto``: whole modules go to a worker (module fixtures are built
    once), the demo lake's modules together, in collection order."""
    if config.getoption("dist") != "load":
        return None  # an explicit --dist mode is xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._telcolake_exitstatus = int(exitstatus)  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit with pytest's status without the interpreter's teardown.

    Daemon threads of in-process servers and native readers (delta-rs, DuckDB, uvicorn) can
    crash the teardown with SIGSEGV after the summary was printed and every test passed; the
    run's verdict is pytest's, so it exits with that (the same as `telcolake up` does).
    """
    status = getattr(config, "_telcolake_exitstatus", None)
    if status is None:
        return
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

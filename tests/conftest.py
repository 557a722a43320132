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

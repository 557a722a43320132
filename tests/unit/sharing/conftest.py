"""Fixtures for the sharing tests: a tmp lake with planted data, dev secrets, published shares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.core.config import REPO_ROOT, Settings, load_settings
from pipelines.core.lake import Lake
from pipelines.sharing.publish import publish
from pipelines.sharing.registry import init_secrets
from tests.unit.sharing.data import Builder, standard_day


@dataclass
class Shared:
    settings: Settings
    lake: Lake
    builder: Builder
    root: Path


def make_env(root: Path, mp: pytest.MonkeyPatch, sharing: str = "") -> Shared:
    """Point telcolake at ``root`` (lake, state, secrets, config with extra ``[sharing]`` lines) and plant one day."""
    config = root / "telcolake.toml"
    lines = (REPO_ROOT / "telcolake.toml").read_text().splitlines()
    if sharing:
        keys = {line.split("=")[0].strip() for line in sharing.splitlines()}
        start = lines.index("[sharing]")
        rest, in_section = [], True
        for line in lines[start + 1:]:
            in_section = in_section and not line.startswith("[")
            if not (in_section and line.split("=")[0].strip() in keys):
                rest.append(line)
        lines = lines[: start + 1] + sharing.splitlines() + rest
    text = "\n".join(lines) + "\n"
    config.write_text(text)
    mp.setenv("TELCOLAKE_CONFIG", str(config))
    mp.setenv("TELCOLAKE_LAKE", str(root / "lake"))
    mp.setenv("TELCOLAKE_STATE_DIR", str(root / "state"))
    mp.setenv("TELCOLAKE_SECRETS_FILE", str(root / "secrets.toml"))
    mp.delenv("TELCOLAKE_KAFKA_BOOTSTRAP", raising=False)
    mp.delenv("TELCOLAKE_PARTNERS", raising=False)
    settings = load_settings()
    init_secrets(settings)
    lake = Lake.from_settings(settings)
    b = Builder()
    standard_day(b)
    b.write(lake)
    return Shared(settings, lake, b, root)


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shared:
    """A fresh lake with one planted day and dev secrets, nothing published yet."""
    return make_env(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One lake per module with every partner's share published once."""
    with pytest.MonkeyPatch.context() as mp:
        env = make_env(tmp_path_factory.mktemp("sharing"), mp)
        publish(env.settings)
        yield env

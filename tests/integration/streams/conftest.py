"""Fixtures for the stream-flow tests: uuid-suffixed output topics too, and tunable config."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.core import broker
from pipelines.core.config import Settings, load_settings


def configure(**sections: dict) -> Settings:
    """Rewrite keys in the test's config file (``section -> {key: value}``) and reload it."""
    path = Path(os.environ["TELCOLAKE_CONFIG"])
    text = path.read_text()
    for section, values in sections.items():
        for key, value in values.items():
            literal = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
            pattern = re.compile(rf"(\[{section}\][^\[]*?^){key} = [^\n]*", re.M | re.S)
            text, n = pattern.subn(rf"\g<1>{key} = {literal}", text, count=1)
            assert n == 1, f"{section}.{key} not in the config"
    path.write_text(text)
    return load_settings()


@pytest.fixture
def senv(env: Settings, kafka: str) -> Settings:
    """``env`` plus uuid-suffixed alert/trigger topics, so tests never read each other's alerts."""
    path = Path(os.environ["TELCOLAKE_CONFIG"])
    suffix = next(iter(env.topics)).rsplit(".", 1)[1]
    text = path.read_text()
    for name in ("network.alerts", "fraud.alerts", "offers.triggers"):
        text = text.replace(f'"{name}" = 1', f'"{name}.{suffix}" = 1')
    path.write_text(text)
    settings = load_settings()
    broker.ensure_topics(kafka, settings.topics)
    return settings


def other_lake(settings: Settings, tmp_path: Path, name: str) -> Settings:
    """The same settings over a second, empty lake (to compare two runs on the same topics)."""
    return replace(settings, lake_root=str(tmp_path / name))


def uid() -> str:
    return uuid.uuid4().hex[:6]

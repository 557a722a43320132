"""Fixtures for the sharing tests: a tmp lake with planted data, dev secrets, published shares."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import requests
import uvicorn

from pipelines.core.config import REPO_ROOT, Settings, load_settings
from pipelines.core.lake import Lake
from pipelines.sharing.publish import publish
from pipelines.sharing.registry import init_secrets
from pipelines.sharing.server import create_app
from pipelines.sharing.tokens import create_token
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A server running in a thread of the test process, on a free port, for one lake."""

    def __init__(self, env: Shared, endpoint: str, app, tmp: Path) -> None:
        self.env, self.endpoint, self.app, self.tmp = env, endpoint, app, tmp

    def profile(self, partner: str, *, days: float = 1, now: datetime | None = None, token: str | None = None) -> str:
        issued = create_token(self.env.settings, partner, days=days, now=now)
        body = issued.profile(self.endpoint)
        if token is not None:
            body["bearerToken"] = token
        path = self.tmp / f"{partner}-{issued.token_id}.share"
        path.write_text(json.dumps(body))
        return str(path)

    def token(self, partner: str) -> str:
        return create_token(self.env.settings, partner, days=1).token

    def query(self, profile: str, table: str, share: str = "fr-orange", **body) -> tuple[requests.Response, list[dict]]:
        token = json.loads(Path(profile).read_text())["bearerToken"]
        r = requests.post(f"{self.endpoint}/shares/{share}/schemas/telcolake/tables/{table}/query", json=body,
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return r, [json.loads(line) for line in r.text.splitlines() if line]


@contextmanager
def running(env: Shared, tmp: Path, **app_options) -> Iterator[Running]:
    """Serve ``env``'s lake on a free port (file URLs on that port) until the block ends."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/delta-sharing"
    app = create_app(env.settings, log_interval=0.2, endpoint=endpoint, **app_options)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    try:
        yield Running(env, endpoint, app, tmp)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)

"""The operator endpoints' protection: loopback by default, a bearer token for everything but /health."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.core import broker
from pipelines.core.config import REPO_ROOT, load_settings
from pipelines.core.errors import ConfigError
from pipelines.ops.up.server import HttpServer, create_app
from pipelines.ops.up.service import Service
from pipelines.ops.up.settings import ServiceSettings

TOKEN = "s3cret-token-for-ops-0123"


def _get(port: int, path: str, auth: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def _config(tmp_path: Path, monkeypatch, **service: str) -> None:
    """telcolake.toml with these [service] keys set."""
    text = (REPO_ROOT / "telcolake.toml").read_text()
    head, rest = text.split("[service]\n", 1)
    section, tail = rest.split("\n[", 1)
    lines = [line for line in section.splitlines() if line.split("=")[0].strip() not in service]
    lines += [f'{k} = "{v}"' for k, v in service.items()]
    text = head + "[service]\n" + "\n".join(lines) + "\n\n[" + tail
    path = tmp_path / "telcolake.toml"
    path.write_text(text)
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(path))


def test_the_default_binds_loopback_and_needs_no_token(local_settings):
    config = ServiceSettings.from_settings(local_settings)
    assert config.host == "127.0.0.1" and config.token == "" and config.loopback
    config.check_exposure()


def test_binding_beyond_loopback_needs_a_token(local_settings, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, host="0.0.0.0")
    config = ServiceSettings.from_settings(load_settings())
    with pytest.raises(ConfigError, match=r"service.host = '0.0.0.0' serves beyond this machine: set \[service\] token"):
        config.check_exposure()
    # `telcolake up` refuses to start, in one line, before it starts anything
    env = {k: v for k, v in os.environ.items() if k != "TELCOLAKE_SERVICE_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "up", "--port", str(broker.free_port())], env=env,
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "set [service] token" in lines[0], done.stderr
    assert not (Path(os.environ["TELCOLAKE_STATE_DIR"]) / "up").exists()
    # with a token (the config key, or the environment) it may bind there
    monkeypatch.setenv("TELCOLAKE_SERVICE_TOKEN", TOKEN)
    ServiceSettings.from_settings(load_settings()).check_exposure()
    monkeypatch.setenv("TELCOLAKE_SERVICE_TOKEN", "short")
    with pytest.raises(ConfigError, match="TELCOLAKE_SERVICE_TOKEN: expected 16-512") as err:
        ServiceSettings.from_settings(load_settings())
    assert "short" not in str(err.value)  # a secret is not repeated


def test_a_token_is_needed_on_every_path_but_health(local_settings, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, token=TOKEN)
    settings = load_settings()
    service = Service(settings, port=broker.free_port())
    assert service.config.token == TOKEN
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<html>data docs</html>")
    server = HttpServer(create_app(service, token=service.config.token, docs_dir=docs), "127.0.0.1", service.port)
    server.start()
    port = service.port
    try:
        assert _get(port, "/health")[0] == 200
        for path in ("/", "/ready", "/api/status", "/metrics", "/quality-docs/index.html", "/nothing-here"):
            code, headers = _get(port, path)
            assert code == 401, path
            assert "Bearer" in headers["www-authenticate"] and "Basic" in headers["www-authenticate"]
            assert _get(port, path, f"Bearer {TOKEN}x")[0] == 401
            assert _get(port, path, f"Basic {base64.b64encode(b'ops:wrong-token-0123456').decode()}")[0] == 401
        for path in ("/", "/api/status", "/metrics", "/quality-docs/index.html"):
            assert _get(port, path, f"Bearer {TOKEN}")[0] == 200, path
        basic = "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()  # what a browser sends
        assert _get(port, "/", basic)[0] == 200
        assert _get(port, "/quality-docs/../../etc/passwd", f"Bearer {TOKEN}")[0] == 404
    finally:
        server.stop()

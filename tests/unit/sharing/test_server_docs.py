"""The sharing server's /health, and its API docs hidden unless ``[sharing] api_docs = true``."""

from __future__ import annotations

import requests

from tests.unit.sharing.conftest import make_env, running


def test_health_answers_and_the_api_docs_are_hidden_by_default(shared, tmp_path):
    with running(shared, tmp_path) as srv:
        base = srv.endpoint.removesuffix("/delta-sharing")
        r = requests.get(f"{base}/health", timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert requests.get(base + path, timeout=10).status_code == 404, path
        # the protocol still needs a token: /health opened nothing else
        assert requests.get(f"{srv.endpoint}/shares", timeout=10).status_code == 401


def test_api_docs_are_served_when_enabled(tmp_path, monkeypatch):
    env = make_env(tmp_path, monkeypatch, sharing="api_docs = true")
    with running(env, tmp_path) as srv:
        base = srv.endpoint.removesuffix("/delta-sharing")
        assert requests.get(f"{base}/docs", timeout=10).status_code == 200
        assert requests.get(f"{base}/redoc", timeout=10).status_code == 200
        spec = requests.get(f"{base}/openapi.json", timeout=10).json()
        assert "/delta-sharing/shares" in spec["paths"] and "/health" not in spec["paths"]

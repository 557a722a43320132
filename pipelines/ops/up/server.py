"""The operator HTTP endpoints of `telcolake up` (FastAPI): ``/`` (the page), ``/health``, ``/ready``,
``/api/status``, ``/metrics`` and the quality Data Docs under ``/quality-docs/``.

One app on one port, built from the running :class:`~pipelines.ops.up.service.Service`. Answers
come from the service's cached snapshot, so a request never scans the lake or waits on the
broker. With a ``token`` every path but ``/health`` needs it: ``Authorization: Bearer <token>``
(Prometheus, curl) or HTTP Basic with the token as password (a browser asks once).
"""

from __future__ import annotations

import base64
import hmac
import threading
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response

OPEN_PATHS = ("/health",)


class Service(Protocol):
    """What the endpoints need of the running service (:class:`pipelines.ops.up.service.Service`)."""

    def uptime_s(self) -> float: ...

    def readiness(self) -> tuple[bool, list[str]]: ...

    def status(self) -> dict: ...

    def metrics_text(self) -> bytes: ...


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (Bearer, or Basic with it as the password)."""
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.encode(), token.encode())


def create_app(service: Service, *, token: str | None = None, docs_dir: Path | None = None) -> FastAPI:
    """The operator app; ``token`` protects every path but ``/health``; ``docs_dir`` is served at ``/quality-docs/``."""
    from pipelines.ops.up.metrics import CONTENT_TYPE
    from pipelines.ops.up.page import render

    app = FastAPI(title="telcolake up", docs_url=None, redoc_url=None, openapi_url=None)

    if token:
        @app.middleware("http")
        async def bearer(request: Request, call_next):
            if request.url.path in OPEN_PATHS or authorized(request.headers.get("authorization"), token):
                return await call_next(request)
            return JSONResponse({"error": "a token is needed: Authorization: Bearer <[service] token>"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="telcolake", Basic realm="telcolake"'})

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        """The operator page: everything ``/api/status`` serves, reloading itself every few seconds."""
        docs = "/quality-docs/index.html" if docs_dir is not None and (docs_dir / "index.html").exists() else None
        return HTMLResponse(render(jsonable_encoder(service.status()), docs_url=docs))  # exactly what /api/status serves

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text format (lag, landed, quarantined, tables, jobs, quality, alerts)."""
        return Response(service.metrics_text(), media_type=CONTENT_TYPE)

    @app.get("/health")
    def health() -> dict:
        """Liveness: the service process answers."""
        return {"status": "ok", "uptime_s": round(service.uptime_s(), 1)}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: broker reachable, every component running, ingest caught up once (503 otherwise)."""
        ok, reasons = service.readiness()
        return JSONResponse({"ready": ok, "reasons": reasons}, status_code=200 if ok else 503)

    @app.get("/api/status")
    def status() -> dict:
        """Components, per-partition lag, tables and freshness, jobs: the service's latest snapshot."""
        return service.status()

    if docs_dir is not None:
        from fastapi.responses import FileResponse

        @app.get("/quality-docs/{path:path}")
        def quality_docs(path: str) -> Response:
            """The Great Expectations Data Docs site (built by each gate run)."""
            root = docs_dir.resolve()
            target = (root / (path or "index.html")).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(root) or not target.is_file():
                return JSONResponse({"error": f"not found: /quality-docs/{path}"}, status_code=404)
            return FileResponse(target)
    return app


class HttpServer:
    """uvicorn serving the app in a thread (the service's main thread keeps the signals)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="up-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; raises OSError when the port cannot be bound."""
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise OSError(f"the HTTP server could not listen on {self.server.config.host}:{self.server.config.port}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

"""The Delta Sharing server (FastAPI): each partner reads its own share with the open delta-sharing client.

Protocol: delta-io/delta-sharing PROTOCOL.md, answered in the parquet response format (the
official Python client's delta format path only fetches cloud-signed URLs). Data files are
served by this server at ``/files/<signed token>/<file name>``: the token names the partner,
table and file and expires; HEAD gives Content-Length and Range gives 206. File URLs are built
from the configured ``[sharing] endpoint`` only, never from the request's Host header.

Each table is served as of the partner's latest complete publish (:mod:`pipelines.sharing.manifest`):
a publish killed half-way is never visible. Hostile input gets a 4xx and a row in the access
log: a body over ``[sharing] max_body_bytes`` is refused (413) before it is read, a body that
is not JSON (also nested too deeply to parse) is a 400, and every protocol field has a strict
type (a boolean is not a version).
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.sharing import manifest
from pipelines.sharing.access_log import AccessLog
from pipelines.sharing.registry import Partner, load_partners, sharing_settings
from pipelines.sharing.signing import FileGrant, UrlSigner
from pipelines.sharing.snapshots import (
    BadRequest,
    FileEntry,
    changes,
    commit_times,
    filesystem,
    parse_timestamp,
    snapshot_files,
)
from pipelines.sharing.tokens import TokenStore

PREFIX = "/delta-sharing"
SCHEMA = "telcolake"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NDJSON = "application/x-ndjson; charset=utf-8"
MAX_LONG = 2**63 - 1
MAX_INT = 2**31 - 1
DIGITS = re.compile(r"^[0-9]{1,19}$")
log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


@dataclass
class Target:
    partner: Partner
    share: str
    table: str

    @property
    def lake_name(self) -> str:
        return self.partner.share_table(self.table)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist or is not shared with you")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- strict protocol fields ---------------------------------------------------------------


def long_field(value: Any, name: str, *, hi: int = MAX_LONG) -> int | None:
    """A JSON integer field (``version``, ``limitHint`` ...): None, or an int in [0, hi]; a boolean is not one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise _bad(f"{name} {_shown(value)}: expected a non-negative integer of at most {hi}")
    return value


def timestamp_field(value: Any, name: str) -> int | None:
    """A timestamp field: None, or a string ``yyyy-mm-dd hh:mm:ss[.f]`` (UTC) / ISO 8601, as epoch ms."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise _bad(f"{name} {_shown(value)}: expected a timestamp string such as 2026-10-05 12:00:00 (UTC) or ISO 8601")
    try:
        return parse_timestamp(value)
    except (BadRequest, OverflowError, ValueError) as exc:
        raise _bad(f"{name}: {exc}") from None


def strings_field(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 1000 or not all(isinstance(v, str) and len(v) <= 10_000 for v in value):
        raise _bad(f"{name}: expected a list of at most 1000 SQL expression strings")
    return value


def string_field(value: Any, name: str, *, max_len: int = 100_000) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _bad(f"{name}: expected a string of at most {max_len} characters")
    return value


def query_param(request: Request, name: str) -> str | None:
    """One query parameter; given twice is an error (which one would win is not obvious)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _bad(f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def long_param(request: Request, name: str) -> int | None:
    raw = query_param(request, name)
    if raw is None:
        return None
    if not DIGITS.match(raw) or int(raw) > MAX_LONG:
        raise _bad(f"{name}={_shown(raw)}: expected a non-negative integer")
    return int(raw)


def bool_param(request: Request, name: str) -> bool | None:
    raw = query_param(request, name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise _bad(f"{name}={_shown(raw)}: expected true or false")
    return raw.lower() == "true"


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "REQUEST_TOO_LARGE", f"the request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 before the app reads it.

    A declared ``Content-Length`` over the limit is answered at once (the body is never read);
    a chunked body is counted as it arrives and refused when it passes the limit.
    """

    def __init__(self, app, limit: int, on_refused) -> None:
        self.app, self.limit, self.on_refused = app, limit, on_refused

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lengths = [v for k, v in scope.get("headers", []) if k == b"content-length"]
        declared = lengths[0] if len(lengths) == 1 else None
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            self.on_refused(scope, 413)
            body = json.dumps({"errorCode": "REQUEST_TOO_LARGE", "message": f"the request body is larger than {self.limit} bytes"}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return None
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        return await self.app(scope, counted, send)


def create_app(settings: Settings, *, signer: UrlSigner | None = None, log_interval: float = 1.0,
               endpoint: str | None = None) -> FastAPI:
    """The server app for ``settings``; the registry is read at start, tokens, manifests and tables per request.

    Args:
        settings: the settings (``[sharing]`` gives the endpoint, URL lifetime and body limit).
        signer: the file URL signer (default: key from the environment or random).
        log_interval: seconds between access-log commits.
        endpoint: the public endpoint (default ``[sharing] endpoint``); file URLs are built on it.
    """
    lake = Lake.from_settings(settings)
    partners = load_partners(settings)
    ss = sharing_settings(settings)
    ttl, limit = ss.file_url_ttl_s, ss.max_body_bytes
    if endpoint is not None:
        from pipelines.core.keys import CONFIG

        CONFIG.keys["sharing"].keys["endpoint"].check(endpoint, "--endpoint")
    public = (endpoint or ss.endpoint).rstrip("/")
    files_base = public[: -len(PREFIX)] if public.endswith(PREFIX) else public
    tokens = TokenStore(lake)
    signer = signer or UrlSigner()
    access = AccessLog(lake, interval=log_interval)
    changelog = manifest.ChangeLog(lake)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        access.start()
        try:
            yield
        finally:
            access.stop()

    docs = ss.api_docs  # off by default: the docs pages would list every route to anyone
    app = FastAPI(title="telcolake Delta Sharing", lifespan=lifespan, openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.access_log, app.state.signer = access, signer

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        """Liveness for load balancers and monitors: the server answers (no token, no lake read)."""
        return {"status": "ok"}

    def refused(request: Request, status: int) -> None:
        path = request.url.path
        access.record(operation=_operation(path), status=status, partner_id=getattr(request.state, "partner_id", None), path=path)

    def error(request: Request, status: int, code: str, message: str) -> JSONResponse:
        refused(request, status)
        return JSONResponse({"errorCode": code, "message": message}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(request, exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(request, 400, "INVALID_PARAMETER_VALUE", "the request's parameters are not valid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "RESOURCE_DOES_NOT_EXIST", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "BAD_REQUEST")
        return error(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("sharing server: %s %s failed", request.method, request.url.path)
        return error(request, 500, "INTERNAL_ERROR", "the server failed to answer this request; it is logged")

    def partner_of(request: Request) -> Partner:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        pid = tokens.partner_for(token if token and len(token) <= 512 and token.isascii() else None)
        if pid is None or pid not in partners:
            raise ApiError(401, "UNAUTHENTICATED", "missing, unknown, expired or revoked bearer token")
        request.state.partner_id = pid
        return partners[pid]

    def share_of(request: Request, share: str) -> Partner:
        partner = partner_of(request)
        if not NAME.match(share) or share.lower() != partner.partner_id:
            raise _not_found(f"share {_shown(share)}")
        return partner

    def published(partner: Partner) -> dict[str, tuple[int, list[manifest.Manifest]]]:
        """Table -> (served version, the partner's manifests) for every table of its latest complete publish."""
        history = manifest.history(lake, partner.partner_id)
        if not history:
            return {}
        out = {}
        for t in partner.tables:
            entry = history[-1].tables.get(t)
            dt = lake.maybe_table(partner.share_table(t)) if entry else None
            if dt is not None:
                out[t] = (manifest.served_version(changelog, partner.share_table(t), entry, dt.version()), history)
        return out

    def target(request: Request, share: str, schema: str, table: str) -> tuple[Target, int, list[manifest.Manifest]]:
        partner = share_of(request, share)
        if not NAME.match(schema) or schema.lower() != SCHEMA:
            raise _not_found(f"schema {_shown(schema)}")
        tables = published(partner) if NAME.match(table) else {}
        if table.lower() not in tables:
            raise _not_found(f"table {_shown(table)}")
        served, history = tables[table.lower()]
        return Target(partner, partner.partner_id, table.lower()), served, history

    def table_items(partner: Partner) -> list[dict]:
        return [{"name": t, "schema": SCHEMA, "share": partner.partner_id} for t in published(partner)]

    def log_ok(request: Request, op: str, t: Target | None = None, **kw) -> None:
        access.record(operation=op, status=200, partner_id=getattr(request.state, "partner_id", None),
                      share=t.share if t else None, schema=SCHEMA if t else None, table=t.table if t else None, path=request.url.path, **kw)

    def paging(request: Request) -> None:
        long_param(request, "maxResults")
        token = query_param(request, "pageToken")
        if token is not None and len(token) > 1024:
            raise _bad("pageToken: expected at most 1024 characters")

    @app.get(PREFIX + "/shares")
    def list_shares(request: Request) -> dict:
        partner = partner_of(request)
        paging(request)
        log_ok(request, "list_shares")
        return {"items": [{"name": partner.partner_id, "id": partner.partner_id}]}

    @app.get(PREFIX + "/shares/{share}")
    def get_share(request: Request, share: str) -> dict:
        partner = share_of(request, share)
        log_ok(request, "get_share")
        return {"share": {"name": partner.partner_id, "id": partner.partner_id}}

    @app.get(PREFIX + "/shares/{share}/schemas")
    def list_schemas(request: Request, share: str) -> dict:
        partner = share_of(request, share)
        paging(request)
        log_ok(request, "list_schemas")
        return {"items": [{"name": SCHEMA, "share": partner.partner_id}]}

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables")
    def list_tables(request: Request, share: str, schema: str) -> dict:
        partner = share_of(request, share)
        if not NAME.match(schema) or schema.lower() != SCHEMA:
            raise _not_found(f"schema {_shown(schema)}")
        paging(request)
        log_ok(request, "list_tables")
        return {"items": table_items(partner)}

    @app.get(PREFIX + "/shares/{share}/all-tables")
    def list_all_tables(request: Request, share: str) -> dict:
        partner = share_of(request, share)
        paging(request)
        log_ok(request, "list_all_tables")
        return {"items": table_items(partner)}

    def open_table(t: Target, version: int):
        try:
            return lake.table(t.lake_name, version=version)
        except Exception as exc:  # noqa: BLE001 - a version the log does not have is the client's error
            raise _bad(f"table {t.table} has no version {version}: {str(exc).splitlines()[0][:200]}") from None

    def check_readable(t: Target, version: int, served: int, history: list[manifest.Manifest]) -> int:
        if version > served or not manifest.readable(changelog, t.lake_name, history, t.table, version, served):
            raise _bad(f"version {version}: table {t.table} has no published version {version} (latest {served})")
        return version

    def readable_at(t: Target, ts_ms: int, served: int, history: list[manifest.Manifest]) -> int:
        """The latest published version committed at or before ``ts_ms``."""
        times = commit_times(lake.table(t.lake_name))
        for v in sorted((v for v, at in times.items() if at <= ts_ms and v <= served), reverse=True):
            if manifest.readable(changelog, t.lake_name, history, t.table, v, served):
                return v
        raise _bad("the timestamp is before the table's first published version")

    def readable_from(t: Target, ts_ms: int, served: int) -> int:
        """The earliest version committed at or after ``ts_ms`` (the served one when none is, or it is later)."""
        times = commit_times(lake.table(t.lake_name))
        after = [v for v, at in times.items() if at >= ts_ms and v <= served]
        return min(after) if after else served

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/version")
    def table_version(request: Request, share: str, schema: str, table: str) -> Response:
        t, served, _history = target(request, share, schema, table)
        starting = timestamp_field(query_param(request, "startingTimestamp"), "startingTimestamp")
        v = served if starting is None else readable_from(t, starting, served)
        log_ok(request, "version", t, version=v)
        return Response(status_code=200, headers={"Delta-Table-Version": str(v)})

    def protocol_lines(dt, t: Target, with_version: bool) -> list[str]:
        md = dt.metadata()
        meta = {"id": md.id, "name": t.table, "format": {"provider": "parquet"}, "schemaString": dt.schema().to_json(),
                "partitionColumns": list(md.partition_columns), "configuration": dict(md.configuration)}
        if with_version:
            meta["version"] = dt.version()
        return [json.dumps({"protocol": {"minReaderVersion": 1}}), json.dumps({"metaData": meta})]

    def ndjson(lines: list[str], version: int) -> Response:
        return Response("\n".join(lines) + "\n", media_type=NDJSON, headers={"Delta-Table-Version": str(version)})

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/metadata")
    def table_metadata(request: Request, share: str, schema: str, table: str) -> Response:
        t, served, _history = target(request, share, schema, table)
        dt = open_table(t, served)
        log_ok(request, "metadata", t, version=served)
        return ndjson(protocol_lines(dt, t, False), served)

    def file_url(t: Target, f: FileEntry) -> str:
        token = signer.sign(FileGrant(t.partner.partner_id, t.lake_name, f.path, int(time.time()) + ttl))
        return f"{files_base}/files/{token}/{quote(posixpath.basename(unquote(f.path)), safe='')}"

    def file_json(t: Target, f: FileEntry) -> dict:
        d = {"url": file_url(t, f), "id": f.file_id, "partitionValues": f.partition_values, "size": f.size}
        if f.stats:
            d["stats"] = f.stats
        if f.version is not None:
            d["version"], d["timestamp"] = f.version, f.timestamp
        return d

    async def json_body(request: Request) -> dict:
        body = await request.body()  # the middleware stops a body over the limit while it arrives
        if len(body) > limit:
            raise BodyTooLarge(limit)
        try:
            doc = json.loads(body.decode("utf-8")) if body.strip() else {}  # strict UTF-8 (RFC 8259), no lone surrogates
        except RecursionError:
            raise ApiError(400, "MALFORMED_REQUEST", "the request body is JSON nested too deeply") from None
        except ValueError as exc:  # also UnicodeDecodeError: not UTF-8
            raise ApiError(400, "MALFORMED_REQUEST", f"the request body is not JSON: {str(exc)[:120]}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "the request body must be a JSON object")
        return doc

    @app.post(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/query")
    async def query_table(request: Request, share: str, schema: str, table: str) -> Response:
        t, served, history = target(request, share, schema, table)
        body = await json_body(request)
        strings_field(body.get("predicateHints"), "predicateHints")  # hints: best effort, all files are returned
        string_field(body.get("jsonPredicateHints"), "jsonPredicateHints")
        limit_hint = long_field(body.get("limitHint"), "limitHint", hi=MAX_INT)
        version = long_field(body.get("version"), "version")
        ts = timestamp_field(body.get("timestamp"), "timestamp")
        if long_field(body.get("startingVersion"), "startingVersion") is not None or long_field(body.get("endingVersion"), "endingVersion") is not None:
            raise _bad("startingVersion/endingVersion are not supported on /query; use /changes")
        if version is not None and ts is not None:
            raise _bad("give version or timestamp, not both")
        travel = version is not None or ts is not None
        if version is not None:
            v = check_readable(t, version, served, history)
        elif ts is not None:
            v = readable_at(t, ts, served, history)
        else:
            v = served
        dt = open_table(t, v)
        files = snapshot_files(dt, limit_hint)
        lines = protocol_lines(dt, t, travel) + [json.dumps({"file": file_json(t, f)}) for f in files]
        log_ok(request, "query", t, version=v, files=len(files), rows=sum(f.num_records or 0 for f in files),
               nbytes=sum(f.size for f in files))
        return ndjson(lines, v)

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/changes")
    def table_changes(request: Request, share: str, schema: str, table: str) -> Response:
        t, served, _history = target(request, share, schema, table)
        starting_version, ending_version = long_param(request, "startingVersion"), long_param(request, "endingVersion")
        starting_ts = timestamp_field(query_param(request, "startingTimestamp"), "startingTimestamp")
        ending_ts = timestamp_field(query_param(request, "endingTimestamp"), "endingTimestamp")
        bool_param(request, "includeHistoricalMetadata")
        start = starting_version if starting_version is not None else (
            readable_from(t, starting_ts, served) if starting_ts is not None else None)
        if start is None:
            raise _bad("startingVersion or startingTimestamp is required")
        end = ending_version if ending_version is not None else (
            max((v for v, at in commit_times(lake.table(t.lake_name)).items() if at <= ending_ts and v <= served), default=-1)
            if ending_ts is not None else served)
        if not 0 <= start <= end <= served:
            raise _bad(f"versions {start}..{end}: expected 0 <= start <= end <= {served}")
        dt = open_table(t, served)
        if dt.metadata().configuration.get("delta.enableChangeDataFeed") != "true":
            raise _bad(f"table {t.table} does not have the change data feed enabled")
        entries = changes(lake, t.lake_name, start, end)
        lines = protocol_lines(open_table(t, start), t, False)
        for f in entries:
            d = file_json(t, f)
            d.pop("stats", None) if f.action != "add" else None
            lines.append(json.dumps({f.action: d}))
        log_ok(request, "changes", t, version=start, files=len(entries), rows=sum(f.num_records or 0 for f in entries))
        return ndjson(lines, start)

    @app.api_route("/files/{token}/{name}", methods=["GET", "HEAD"])
    def read_file(request: Request, token: str, name: str) -> Response:
        grant = signer.verify(token)
        if grant is None:
            raise ApiError(403, "PERMISSION_DENIED", "the file URL is invalid or has expired; query the table again")
        partner = partners.get(grant.partner)
        parts = unquote(grant.path).split("/")
        if (partner is None or not grant.table.startswith(f"shares/{partner.partner_id}/") or ".." in parts
                or grant.path.startswith("/") or "\\" in grant.path or name != parts[-1]):
            raise ApiError(403, "PERMISSION_DENIED", "the file URL does not match its grant")
        request.state.partner_id = partner.partner_id
        fs, root = filesystem(lake, grant.table)
        full = f"{root}/{unquote(grant.path)}"
        if not lake.is_remote:
            resolved, base = Path(full).resolve(), Path(root).resolve()
            if base not in resolved.parents or not resolved.is_file():
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "the file no longer exists (vacuumed?)")
            response: Response = FileResponse(resolved, media_type="application/octet-stream")
        else:
            response = _remote_range(fs, full, request.headers.get("range"), request.method == "HEAD")
        access.record(operation="file", status=200, partner_id=partner.partner_id, share=partner.partner_id,
                      table=grant.table.rsplit("/", 1)[-1], files=1, path=name)
        return response

    def body_refused(scope, status: int) -> None:
        access.record(operation=_operation(scope.get("path", "")), status=status, path=scope.get("path", ""))

    app.add_middleware(BodyLimit, limit=limit, on_refused=body_refused)  # runs before anything reads the body
    return app


def _operation(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 1 and parts[0] == "files":
        return "file"
    tail = parts[-1] if parts else "root"
    known = {"shares": "list_shares", "schemas": "list_schemas", "tables": "list_tables", "all-tables": "list_all_tables",
             "version": "version", "metadata": "metadata", "query": "query", "changes": "changes"}
    return known.get(tail, "get_share" if len(parts) == 3 and parts[1] == "shares" else "unknown")


def _remote_range(fs, path: str, header: str | None, head_only: bool) -> Response:
    info = fs.get_file_info(path)
    size = info.size or 0
    base = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    m = re.fullmatch(r"bytes=(\d{1,19})?-(\d{1,19})?", (header or "").strip())
    if not m or (not m.group(1) and not m.group(2)):
        body = b"" if head_only else fs.open_input_file(path).read()
        return Response(body, headers={**base, "Content-Length": str(size)})
    start = int(m.group(1)) if m.group(1) else max(0, size - int(m.group(2)))
    end = min(int(m.group(2)), size - 1) if m.group(1) and m.group(2) else size - 1
    if start > end or start >= size:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    with fs.open_input_file(path) as f:
        body = b"" if head_only else f.read_at(end - start + 1, start)
    return Response(body, status_code=206, headers={**base, "Content-Range": f"bytes {start}-{end}/{size}", "Content-Length": str(end - start + 1)})


def url_mismatch(endpoint: str, host: str, port: int) -> str | None:
    """Why file URLs on ``endpoint`` would not reach a server bound to ``host:port`` (None when they may)."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if loopback and (parts.port or (443 if parts.scheme == "https" else 80)) != port:
        return (f"the endpoint {endpoint} names port {parts.port} on this machine but the server listens on {port}: "
                "partners' file URLs would not reach it; pass --endpoint or set [sharing] endpoint")
    return None


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8765, endpoint: str | None = None) -> None:
    """Run the server until interrupted; file URLs use ``endpoint`` (default ``[sharing] endpoint``)."""
    import uvicorn

    uvicorn.run(create_app(settings, endpoint=endpoint), host=host, port=port, log_level="warning")

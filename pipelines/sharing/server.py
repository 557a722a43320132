"""The Delta Sharing server (FastAPI): each partner reads its own share with the open delta-sharing client.

Protocol: delta-io/delta-sharing PROTOCOL.md, answered in the parquet response format (the
official Python client's delta format path only fetches cloud-signed URLs). Data files are
served by this server at ``/files/<signed token>/<file name>``: the token names the partner,
table and file and expires; HEAD gives Content-Length and Range gives 206.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from pipelines.core.config import Settings
from pipelines.core.lake import Lake
from pipelines.sharing.access_log import AccessLog
from pipelines.sharing.registry import Partner, load_partners, sharing_settings
from pipelines.sharing.signing import FileGrant, UrlSigner
from pipelines.sharing.snapshots import (
    BadRequest,
    FileEntry,
    changes,
    filesystem,
    parse_timestamp,
    snapshot_files,
    version_at,
    version_from,
)
from pipelines.sharing.tokens import TokenStore

PREFIX = "/delta-sharing"
SCHEMA = "telcolake"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NDJSON = "application/x-ndjson; charset=utf-8"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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


def create_app(settings: Settings, *, signer: UrlSigner | None = None, log_interval: float = 1.0) -> FastAPI:
    """The server app for ``settings``; the registry is read at start, tokens and tables per request."""
    lake = Lake.from_settings(settings)
    partners = load_partners(settings)
    ttl = sharing_settings(settings).file_url_ttl_s
    tokens = TokenStore(lake)
    signer = signer or UrlSigner()
    access = AccessLog(lake, interval=log_interval)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        access.start()
        try:
            yield
        finally:
            access.stop()

    app = FastAPI(title="telcolake Delta Sharing", lifespan=lifespan)
    app.state.access_log, app.state.signer = access, signer

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        access.record(operation=request.url.path.rsplit("/", 1)[-1] or "root", status=exc.status,
                      partner_id=getattr(request.state, "partner_id", None), path=request.url.path)
        return JSONResponse({"errorCode": exc.code, "message": exc.message}, status_code=exc.status)

    def partner_of(request: Request) -> Partner:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        pid = tokens.partner_for(token)
        if pid is None or pid not in partners:
            raise ApiError(401, "UNAUTHENTICATED", "missing, unknown, expired or revoked bearer token")
        request.state.partner_id = pid
        return partners[pid]

    def share_of(request: Request, share: str) -> Partner:
        partner = partner_of(request)
        if not NAME.match(share) or share.lower() != partner.partner_id:
            raise _not_found(f"share {share!r}")
        return partner

    def published(partner: Partner) -> list[str]:
        return [t for t in partner.tables if lake.exists(partner.share_table(t))]

    def target(request: Request, share: str, schema: str, table: str) -> Target:
        partner = share_of(request, share)
        if not NAME.match(schema) or schema.lower() != SCHEMA:
            raise _not_found(f"schema {schema!r}")
        if not NAME.match(table) or table.lower() not in published(partner):
            raise _not_found(f"table {table!r}")
        return Target(partner, partner.partner_id, table.lower())

    def table_items(partner: Partner) -> list[dict]:
        return [{"name": t, "schema": SCHEMA, "share": partner.partner_id} for t in published(partner)]

    def log_ok(request: Request, op: str, t: Target | None = None, **kw) -> None:
        access.record(operation=op, status=200, partner_id=getattr(request.state, "partner_id", None),
                      share=t.share if t else None, schema=SCHEMA if t else None, table=t.table if t else None, path=request.url.path, **kw)

    @app.get(PREFIX + "/shares")
    def list_shares(request: Request) -> dict:
        partner = partner_of(request)
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
        log_ok(request, "list_schemas")
        return {"items": [{"name": SCHEMA, "share": partner.partner_id}]}

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables")
    def list_tables(request: Request, share: str, schema: str) -> dict:
        partner = share_of(request, share)
        if not NAME.match(schema) or schema.lower() != SCHEMA:
            raise _not_found(f"schema {schema!r}")
        log_ok(request, "list_tables")
        return {"items": table_items(partner)}

    @app.get(PREFIX + "/shares/{share}/all-tables")
    def list_all_tables(request: Request, share: str) -> dict:
        partner = share_of(request, share)
        log_ok(request, "list_all_tables")
        return {"items": table_items(partner)}

    def open_table(t: Target, version: int | None = None):
        try:
            return lake.table(t.lake_name, version=version)
        except Exception as exc:  # noqa: BLE001 - a version the log does not have is the client's error
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"table {t.table} has no version {version}: {exc}") from None

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/version")
    def table_version(request: Request, share: str, schema: str, table: str, startingTimestamp: str | None = None) -> Response:  # noqa: N803
        t = target(request, share, schema, table)
        dt = open_table(t)
        v = dt.version()
        if startingTimestamp:
            v = _bad(lambda: version_from(dt, parse_timestamp(startingTimestamp)))
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
        t = target(request, share, schema, table)
        dt = open_table(t)
        log_ok(request, "metadata", t, version=dt.version())
        return ndjson(protocol_lines(dt, t, False), dt.version())

    def file_url(request: Request, t: Target, f: FileEntry) -> str:
        token = signer.sign(FileGrant(t.partner.partner_id, t.lake_name, f.path, int(time.time()) + ttl))
        return f"{str(request.base_url).rstrip('/')}/files/{token}/{posixpath.basename(unquote(f.path))}"

    def file_json(request: Request, t: Target, f: FileEntry) -> dict:
        d = {"url": file_url(request, t, f), "id": f.file_id, "partitionValues": f.partition_values, "size": f.size}
        if f.stats:
            d["stats"] = f.stats
        if f.version is not None:
            d["version"], d["timestamp"] = f.version, f.timestamp
        return d

    @app.post(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/query")
    async def query_table(request: Request, share: str, schema: str, table: str) -> Response:
        t = target(request, share, schema, table)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise ApiError(400, "MALFORMED_REQUEST", "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "the request body must be a JSON object")
        version, ts, limit = body.get("version"), body.get("timestamp"), body.get("limitHint")
        if body.get("startingVersion") is not None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "startingVersion is not supported on /query; use /changes")
        if version is not None and (not isinstance(version, int) or version < 0):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"version {version!r}: expected a non-negative integer")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limitHint {limit!r}: expected a non-negative integer")
        if ts is not None:
            version = _bad(lambda: version_at(open_table(t), parse_timestamp(str(ts))))
        dt = open_table(t, version)
        files = snapshot_files(dt, limit)
        lines = protocol_lines(dt, t, version is not None) + [json.dumps({"file": file_json(request, t, f)}) for f in files]
        log_ok(request, "query", t, version=dt.version(), files=len(files), rows=sum(f.num_records or 0 for f in files),
               nbytes=sum(f.size for f in files))
        return ndjson(lines, dt.version())

    @app.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/changes")
    def table_changes(request: Request, share: str, schema: str, table: str, startingVersion: int | None = None,  # noqa: N803
                      startingTimestamp: str | None = None, endingVersion: int | None = None,  # noqa: N803
                      endingTimestamp: str | None = None) -> Response:  # noqa: N803
        t = target(request, share, schema, table)
        dt = open_table(t)
        latest = dt.version()
        start = startingVersion if startingVersion is not None else (
            _bad(lambda: version_from(dt, parse_timestamp(startingTimestamp))) if startingTimestamp else None)
        if start is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "startingVersion or startingTimestamp is required")
        end = endingVersion if endingVersion is not None else (
            _bad(lambda: version_at(dt, parse_timestamp(endingTimestamp))) if endingTimestamp else latest)
        if not 0 <= start <= end <= latest:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"versions {start}..{end}: expected 0 <= start <= end <= {latest}")
        if dt.metadata().configuration.get("delta.enableChangeDataFeed") != "true":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"table {t.table} does not have the change data feed enabled")
        entries = changes(lake, t.lake_name, start, end)
        lines = protocol_lines(open_table(t, start), t, False)
        for f in entries:
            d = file_json(request, t, f)
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
        access.record(operation="file", status=200, partner_id=partner.partner_id, share=partner.partner_id,
                      table=grant.table.rsplit("/", 1)[-1], files=1, path=name)
        fs, root = filesystem(lake, grant.table)
        full = f"{root}/{unquote(grant.path)}"
        if not lake.is_remote:
            resolved, base = Path(full).resolve(), Path(root).resolve()
            if base not in resolved.parents or not resolved.is_file():
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "the file no longer exists (vacuumed?)")
            return FileResponse(resolved, media_type="application/octet-stream")
        return _remote_range(fs, full, request.headers.get("range"), request.method == "HEAD")

    return app


def _bad(fn):
    try:
        return fn()
    except BadRequest as exc:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", str(exc)) from None


def _remote_range(fs, path: str, header: str | None, head_only: bool) -> Response:
    info = fs.get_file_info(path)
    size = info.size or 0
    base = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
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


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the server until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")

"""The lake: one way to locate, read and write a Delta table, local or on object storage.

Tables are named by their path under the lake root (``bronze/usage.events``,
``gold/billing/invoices``); nothing else builds a table path by hand. Their SQL view name is
the path with ``/`` and ``.`` turned into ``_`` (``bronze_usage_events``,
``gold_billing_invoices``); gold tables also answer to ``gold_<leaf>`` when the leaf is
unique (``gold_invoices``).

Every write is a commit planned from one snapshot and checked against it (:meth:`Lake.commit`):
a writer that overtook it makes it plan again rather than re-send, so any number of
processes can write one table (docs/operations.md, "Concurrent writers").
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from pipelines.core.config import Settings
from pipelines.core.errors import LakeError

COMMIT_RETRIES = 30


@dataclass(frozen=True)
class Lake:
    """A lake root plus the storage options every reader and writer uses."""

    root: str
    storage_options: Mapping[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        return cls(root=settings.lake_root, storage_options=storage_options(settings) or None)

    @property
    def is_remote(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")

    def uri(self, name: str) -> str:
        """The URI of table ``name`` (a path under the root such as ``silver/usage``)."""
        name = name.strip("/")
        if not name or ".." in name.split("/"):
            raise LakeError(f"bad table name {name!r}: expected a path under the lake root such as silver/usage")
        return f"{self.root}/{name}"

    def _opts(self) -> dict[str, str] | None:
        return dict(self.storage_options) if self.storage_options else None

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self._opts())

    def table(self, name: str, *, version: int | None = None) -> DeltaTable:
        """Open table ``name`` (at ``version`` when given).

        Raises:
            LakeError: the table does not exist.
        """
        try:
            dt = DeltaTable(self.uri(name), storage_options=self._opts())
            if version is not None:
                dt.load_as_version(version)
            return dt
        except TableNotFoundError:
            raise LakeError(f"table {name} does not exist under {self.root}") from None

    def maybe_table(self, name: str) -> DeltaTable | None:
        return self.table(name) if self.exists(name) else None

    def version(self, name: str) -> int | None:
        dt = self.maybe_table(name)
        return None if dt is None else dt.version()

    def dataset(self, name: str, *, version: int | None = None) -> Any:
        """Table ``name`` (at ``version``) as a pyarrow dataset.

        A local lake is read through Arrow's own file system: several times faster than
        delta-rs's Python file-system bridge, which can also abort the process at exit.
        """
        dt = self.table(name, version=version)
        if self.is_remote:
            return dt.to_pyarrow_dataset()
        import pyarrow.fs as pafs

        local = pafs.SubTreeFileSystem(dt.table_uri.removeprefix("file://"), pafs.LocalFileSystem())
        return dt.to_pyarrow_dataset(filesystem=local)

    def read(
        self,
        name: str,
        *,
        columns: list[str] | None = None,
        filter: Any = None,
        version: int | None = None,
    ) -> pa.Table:
        """Read a table (or its columns / rows matching a pyarrow dataset filter) into Arrow."""
        return self.dataset(name, version=version).to_table(columns=columns, filter=filter)

    def txn_version(self, name: str, app_id: str) -> int | None:
        """The version last committed by ``app_id`` into table ``name`` (None if never)."""
        dt = self.maybe_table(name)
        return None if dt is None else dt.transaction_version(app_id)

    def txn_versions(self, name: str, app_ids: Iterable[str]) -> dict[str, int | None]:
        dt = self.maybe_table(name)
        return txn_versions(dt, app_ids)

    def handle(self, name: str) -> TableHandle:
        """A live handle on table ``name`` for repeated planned commits (see :meth:`commit`)."""
        return TableHandle(self, name)

    def commit(
        self,
        name: str,
        plan: Plan,
        *,
        partition_by: list[str] | None = None,
        configuration: Mapping[str, str] | None = None,
    ) -> int | None:
        """Commit what ``plan`` decides against the table's current snapshot; re-plan on conflict.

        ``plan`` gets the table as of one snapshot (None while it does not exist) and returns
        the :class:`Write` to commit, or None for nothing to do. The commit is checked against
        that snapshot: when another writer committed meanwhile in a way that conflicts (the
        same Delta app transaction id, files this write replaces, a concurrent creation of
        the table), the commit fails and ``plan`` runs again on the newer snapshot. So a
        writer that filters its rows by the app transaction versions it reads in ``plan``
        never writes a row twice, however many processes write the table at once.

        Returns:
            the version this commit created, or None when ``plan`` returned None.

        Raises:
            LakeError: still conflicting after many attempts.
        """
        return self.handle(name).commit(plan, partition_by=partition_by, configuration=configuration)

    def write(
        self,
        name: str,
        data: pa.Table,
        *,
        mode: Literal["append", "overwrite"] = "append",
        partition_by: list[str] | None = None,
        predicate: str | None = None,
        txns: Mapping[str, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
        schema_mode: Literal["merge", "overwrite"] | None = None,
        configuration: Mapping[str, str] | None = None,
    ) -> int:
        """Write ``data`` in one commit and return the new table version.

        The same rows whatever the table holds (for rows that depend on it, use
        :meth:`commit` with a plan). ``txns`` (app id -> version) are recorded in the same
        commit. ``predicate`` with ``mode="overwrite"`` replaces the matching rows; a
        concurrent commit that touched them makes this one start again from the newer
        snapshot (so two writers replacing the same rows leave one copy). ``configuration``
        applies when the write creates the table (e.g. ``{"delta.enableChangeDataFeed":
        "true"}``). Concurrent commits (a running ``maintain``) are retried, never surfaced
        as failures.
        """
        write = Write(data, mode=mode, predicate=predicate, txns=txns, metadata=metadata, schema_mode=schema_mode)
        version = self.commit(name, lambda _dt: write, partition_by=partition_by, configuration=configuration)
        assert version is not None
        return version

    def parquet_files(self, name: str, *, version: int | None = None) -> ParquetFiles | None:
        """The data files of table ``name`` (at ``version``) for a reader of plain Parquet (DuckDB's
        ``read_parquet``), or None when that would not read the table right: a remote lake,
        deletion vectors or column mapping, or partition values not spelled in the file paths."""
        if self.is_remote:
            return None
        dt = self.table(name, version=version)
        features = set(dt.protocol().reader_features or [])
        if features & {"deletionVectors", "columnMapping"} or dt.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
            return None
        root = dt.table_uri.removeprefix("file://").rstrip("/")
        actions = pa.table(dt.get_add_actions(flatten=True))
        partitions = list(dt.metadata().partition_columns)
        for column in partitions:
            values = actions[f"partition.{column}"].cast(pa.string()).to_pylist()
            for path, value in zip(actions["path"].to_pylist(), values, strict=True):
                if value is None or f"{column}={value}" not in unquote(path).split("/"):
                    return None
        schema = pa.schema(dt.schema().to_arrow())
        types = {c: _DUCKDB_TYPES.get(str(schema.field(c).type), "VARCHAR") for c in partitions}
        return ParquetFiles([f"{root}/{unquote(p)}" for p in actions["path"].to_pylist()], types, schema)

    def commit_files(
        self,
        name: str,
        files: list[WrittenFile],
        *,
        schema: pa.Schema,
        partition_by: list[str],
        replace: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Commit Parquet files already written inside table ``name``'s folder (by DuckDB's COPY)
        as one transaction, creating the table when needed; return the new version.

        With ``replace`` (partition column -> value) the commit also removes every file of that
        partition, so the partition holds exactly ``files`` afterwards.
        """
        from deltalake.transaction import AddAction

        schema = _delta_schema(schema)
        uri = self.uri(name)
        props = CommitProperties(custom_metadata={k: str(v) for k, v in (metadata or {}).items()} or None,
                                 max_commit_retries=COMMIT_RETRIES)
        if not self.exists(name):
            DeltaTable.create(uri, schema, partition_by=partition_by, storage_options=self._opts(), commit_properties=props)
        root = uri.removeprefix("file://").rstrip("/")
        now = int(time.time() * 1000)
        actions = [AddAction(os.path.relpath(f.path, root), f.size, dict(f.partition_values), now, True,
                             json.dumps({"numRecords": f.num_records, "nullCount": f.null_counts}))
                   for f in files]
        filters = [(k, "=", v) for k, v in (replace or {}).items()] or None
        dt = self.table(name)
        dt.create_write_transaction(actions, "overwrite" if replace else "append", schema, partition_by=partition_by,
                                    partition_filters=filters, commit_properties=props)
        return self.table(name).version()

    def existing_files(self, name: str, paths: list[str]) -> list[str]:
        """Which of ``paths`` (relative to table ``name``, as the Delta log has them) are in storage."""
        import urllib.parse

        import pyarrow.fs as pafs

        if not paths:
            return []
        if self.is_remote:
            fs, base = pafs.FileSystem.from_uri(self.uri(name))
            fs = _s3_filesystem(self) or fs
        else:
            fs, base = pafs.LocalFileSystem(), self.uri(name).removeprefix("file://")
        infos = fs.get_file_info([f"{base.rstrip('/')}/{urllib.parse.unquote(p)}" for p in paths])
        return [p for p, info in zip(paths, infos, strict=True) if info.type != pafs.FileType.NotFound]

    def list_tables(self) -> list[str]:
        """Every Delta table under the layer roots, as names (``bronze/usage.events`` ...); see :meth:`discover`."""
        return self.discover().tables

    def discover(self) -> Discovery:
        """The tables under the layer roots (:data:`LAYERS`), and what was skipped with the reason.

        A table is a directory holding ``_delta_log``; its name is its path under the root. A
        name that does not map to a SQL identifier (a part with characters other than letters,
        digits, ``_``, ``-`` and ``.``), a table outside the layer roots (``lake/silver_usage``
        would otherwise shadow the ``silver_usage`` view) and every symlink (never followed:
        not out of the lake, not in a loop) are skipped and reported. The walk stops at a
        table (its partition folders are not tables) and at :data:`MAX_DEPTH`.
        """
        if self.is_remote:
            return _discover_remote(self)
        return _discover_local(self.root.removeprefix("file://"))


LAYERS = ("bronze", "quarantine", "silver", "gold", "reference", "shares", "ops", "staging")
MAX_DEPTH = 6
NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Skipped:
    """A directory (or link) that discovery did not register, and why."""

    path: str
    reason: str


@dataclass
class Discovery:
    """What :meth:`Lake.discover` found: table names, and everything skipped with its reason."""

    tables: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def name_problem(name: str) -> str | None:
    """Why table ``name`` cannot be registered (None when it can)."""
    parts = name.split("/")
    if parts[0] not in LAYERS:
        return f"not under a layer root ({', '.join(LAYERS)}); a table here could shadow a view"
    if len(parts) < 2:
        return "a layer root itself is not a table"
    bad = next((p for p in parts if not NAME_PART.match(p) or not p.isascii()), None)
    if bad is not None:
        return f"name part {bad!r} has characters other than ASCII letters, digits, '_', '-', '.': no SQL view name"
    return None


def _discover_local(base: str) -> Discovery:
    found = Discovery()
    root = base.rstrip("/")

    def rel(path: str) -> str:
        """The path under the root, printable: undecodable bytes and control characters shown escaped."""
        text = os.fsencode(path[len(root) + 1:]).decode("utf-8", "backslashreplace")
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

    def is_table(path: str) -> bool:
        try:
            return os.path.isdir(os.path.join(path, "_delta_log")) and not os.path.islink(os.path.join(path, "_delta_log"))
        except (OSError, ValueError):
            return False

    def skip_link(entry: os.DirEntry) -> None:
        try:
            target = os.readlink(entry.path)
        except OSError:
            target = "?"
        found.skipped.append(Skipped(rel(entry.path), f"symlink to {target}: not followed (tables are found only inside the lake)"))

    def walk(path: str, depth: int) -> None:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            found.skipped.append(Skipped(rel(path), f"cannot be listed: {exc.strerror}"))
            return
        for entry in entries:
            if entry.name == "_delta_log":
                continue
            try:
                if entry.is_symlink():
                    skip_link(entry)
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            name = rel(entry.path)
            if is_table(entry.path):
                problem = name_problem(name)
                if problem is None:
                    found.tables.append(name)
                else:
                    found.skipped.append(Skipped(name, problem))
            elif depth + 1 < MAX_DEPTH:
                walk(entry.path, depth + 1)
            else:
                found.skipped.append(Skipped(name, f"deeper than {MAX_DEPTH} levels: not searched"))

    try:
        with os.scandir(root) as it:
            top = sorted(it, key=lambda e: e.name)
    except OSError:
        return found
    for entry in top:
        if entry.is_symlink():
            skip_link(entry)
        elif entry.is_dir(follow_symlinks=False):
            if entry.name in LAYERS:
                if is_table(entry.path):
                    found.skipped.append(Skipped(entry.name, "a layer root itself is not a table"))
                walk(entry.path, 1)
            elif is_table(entry.path):
                found.skipped.append(Skipped(entry.name, name_problem(entry.name) or "not under a layer root"))
    return found


def _discover_remote(lake: Lake) -> Discovery:
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(lake.root)
    fs = _s3_filesystem(lake) or fs
    found = Discovery()
    names = set()
    for layer in LAYERS:
        try:
            infos = fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/{layer}", recursive=True, allow_not_found=True))
        except (OSError, pa.ArrowException):
            continue
        for info in infos:
            if info.type == pafs.FileType.Directory and info.path.endswith("/_delta_log"):
                names.add(info.path[len(base.rstrip("/")) + 1 : -len("/_delta_log")])
    for name in sorted(names):
        if any(name.startswith(other + "/") for other in names):
            continue  # a table inside a table's folder is not a table of the lake
        problem = name_problem(name)
        if problem:
            found.skipped.append(Skipped(name, problem))
        else:
            found.tables.append(name)
    return found


@dataclass(frozen=True)
class Write:
    """One commit a plan asks for (see :meth:`Lake.commit`).

    Attributes:
        data: the rows to add (may be empty: a commit that only moves ``txns``).
        mode: ``append``, or ``overwrite`` (the rows matching ``predicate``, or all rows).
        predicate: with ``overwrite``, the rows this commit replaces (SQL on the table's columns).
        txns: Delta app transactions (app id -> version) recorded in the same commit.
        metadata: commit metadata (values become strings).
        schema_mode: ``merge`` (add new columns) or ``overwrite`` (replace the schema).
    """

    data: Any
    mode: Literal["append", "overwrite"] = "append"
    predicate: str | None = None
    txns: Mapping[str, int] | None = None
    metadata: Mapping[str, Any] | None = None
    schema_mode: Literal["merge", "overwrite"] | None = None


Plan = Callable[[DeltaTable | None], Write | None]
"""Decides a commit from one snapshot of the table (None: the table does not exist yet)."""


def txn_versions(dt: DeltaTable | None, app_ids: Iterable[str]) -> dict[str, int | None]:
    """App transaction version per app id in snapshot ``dt`` (None: never committed)."""
    return {a: (None if dt is None else dt.transaction_version(a)) for a in app_ids}


class TableHandle:
    """One table's snapshot, kept between commits and brought up to date before each plan.

    Not thread-safe: one handle per writer thread.
    """

    def __init__(self, lake: Lake, name: str) -> None:
        self.lake, self.name = lake, name
        self._dt: DeltaTable | None = None

    def snapshot(self) -> DeltaTable | None:
        """The table as of now (None while it does not exist)."""
        if self._dt is None:
            self._dt = self.lake.maybe_table(self.name)
        else:
            self._dt.update_incremental()
        return self._dt

    def commit(self, plan: Plan, *, partition_by: list[str] | None = None, configuration: Mapping[str, str] | None = None) -> int | None:
        """See :meth:`Lake.commit`."""
        for attempt in range(COMMIT_RETRIES):
            dt = self.snapshot()
            write = plan(dt)
            if write is None:
                return None
            data = _plain_types(write.data)
            props = CommitProperties(
                custom_metadata={k: str(v) for k, v in (write.metadata or {}).items()} or None,
                # creating the table: a concurrent creation must fail this commit (a retry inside
                # delta-rs would land it on top of the other one unchecked); then plan again
                max_commit_retries=0 if dt is None else COMMIT_RETRIES,
                app_transactions=[Transaction(app_id=a, version=v) for a, v in (write.txns or {}).items()] or None,
            )
            try:
                if dt is None:
                    write_deltalake(
                        self.lake.uri(self.name),
                        data,
                        mode="error",
                        partition_by=partition_by,
                        storage_options=self.lake._opts(),
                        commit_properties=props,
                        configuration=configuration,
                    )
                    self._dt = self.lake.table(self.name, version=0)
                    return 0
                write_deltalake(
                    dt,
                    data,
                    mode=write.mode,
                    partition_by=partition_by,
                    predicate=write.predicate,
                    schema_mode=write.schema_mode,
                    commit_properties=props,
                )
                return dt.version()
            except CommitFailedError:
                pass  # someone committed meanwhile in a way that conflicts: plan again
            except DeltaError as exc:
                if dt is not None or "already exists" not in str(exc):
                    raise
            time.sleep(random.uniform(0.01, min(0.05 * (attempt + 1), 0.5)))
        raise LakeError(f"table {self.name}: {COMMIT_RETRIES} commits in a row conflicted with other writers; try again")


@dataclass(frozen=True)
class ParquetFiles:
    """A table's data files (absolute local paths), its partition columns' DuckDB types, its schema."""

    paths: list[str]
    partition_types: dict[str, str]
    schema: pa.Schema


@dataclass(frozen=True)
class WrittenFile:
    """A Parquet file written into a table's folder, not committed yet (see :meth:`Lake.commit_files`)."""

    path: str
    size: int
    num_records: int
    partition_values: Mapping[str, str]
    null_counts: Mapping[str, int]


_DUCKDB_TYPES = {"date32[day]": "DATE", "string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER"}


def _delta_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` as Delta types: timestamps in UTC microseconds, dictionaries as their values."""
    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(t):
            return plain(t.value_type)
        if pa.types.is_timestamp(t) and t.tz:
            return pa.timestamp("us", tz="UTC")
        return _VIEW_TYPES.get(t, t)

    return pa.schema([f.with_type(plain(f.type)) for f in schema])


_VIEW_TYPES = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary(), pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}


def _plain_types(data: Any) -> pa.Table:
    """Arrow table with view/large string types made plain (pyarrow's compute and DuckDB's
    dataset filters have no kernels for string_view, which Polars writes by default)."""
    table = data if isinstance(data, pa.Table) else pa.table(data.to_arrow() if hasattr(data, "to_arrow") else data)
    if not any(f.type in _VIEW_TYPES for f in table.schema):
        return table
    schema = pa.schema([f.with_type(_VIEW_TYPES.get(f.type, f.type)) for f in table.schema], metadata=table.schema.metadata)
    return table.cast(schema)


def _s3_filesystem(lake: Lake) -> Any:
    import pyarrow.fs as pafs

    opts = dict(lake.storage_options or {})
    if not lake.root.startswith("s3://"):
        return None
    endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("endpoint_url")
    kwargs: dict[str, Any] = {
        "access_key": opts.get("AWS_ACCESS_KEY_ID"),
        "secret_key": opts.get("AWS_SECRET_ACCESS_KEY"),
        "region": opts.get("AWS_REGION", "us-east-1"),
    }
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host, scheme=scheme)
    return pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})


def storage_options(settings: Settings) -> dict[str, str]:
    """Object-store options: ``[lake.storage]`` in the config, then ``AWS_*`` from the environment."""
    opts = {str(k): str(v) for k, v in settings.section("lake").get("storage", {}).items()}
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ALLOW_HTTP",
        "AWS_CONDITIONAL_PUT",
        "AWS_S3_LOCKING_PROVIDER",
    ):
        if os.environ.get(key):
            opts[key] = os.environ[key]
    if settings.lake_root.startswith("s3://"):
        opts.setdefault("AWS_CONDITIONAL_PUT", "etag")
    return opts


def view_name(name: str) -> str:
    """SQL view name of table ``name``: ``bronze/usage.events`` -> ``bronze_usage_events``."""
    return name.strip("/").replace("/", "_").replace(".", "_").replace("-", "_")


def view_names(names: Iterable[str], skipped: list[Skipped] | None = None) -> dict[str, str]:
    """View name -> table name, including the unique ``gold_<leaf>`` short names.

    View names are compared case-insensitively (DuckDB's rule): when two tables map to the
    same view (``silver/a.b`` and ``silver/a_b``), the first by name keeps it and the other is
    added to ``skipped`` with the reason; a short name never takes a full view name.
    """
    views: dict[str, str] = {}
    taken: dict[str, str] = {}
    for n in sorted(names):
        view = view_name(n)
        owner = taken.get(view.lower())
        if owner is not None:
            if skipped is not None:
                skipped.append(Skipped(n, f"its view name {view} is already taken by {owner}"))
            continue
        taken[view.lower()] = n
        views[view] = n
    leaves: dict[str, list[str]] = {}
    for n in views.values():
        parts = n.split("/")
        if parts[0] == "gold" and len(parts) > 2:
            leaves.setdefault(f"gold_{view_name(parts[-1])}", []).append(n)
    for alias, owners in leaves.items():
        if len(owners) == 1 and alias.lower() not in taken:
            views[alias] = owners[0]
    return views


def utcnow() -> datetime:
    return datetime.now(UTC)

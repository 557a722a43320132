"""The lake: one way to locate, read and write a Delta table, local or on object storage.

Tables are named by their path under the lake root (``bronze/usage.events``,
``gold/billing/invoices``); nothing else builds a table path by hand. Their SQL view name is
the path with ``/`` and ``.`` turned into ``_`` (``bronze_usage_events``,
``gold_billing_invoices``); gold tables also answer to ``gold_<leaf>`` when the leaf is
unique (``gold_invoices``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

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
        return {a: (None if dt is None else dt.transaction_version(a)) for a in app_ids}

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

        ``txns`` (app id -> version) are recorded in the same commit, which is how writers
        make a replayed input idempotent. ``configuration`` applies when the write creates
        the table (e.g. ``{"delta.enableChangeDataFeed": "true"}``). Concurrent commits (a running ``maintain``) are
        retried, never surfaced as failures.
        """
        props = CommitProperties(
            custom_metadata={k: str(v) for k, v in (metadata or {}).items()} or None,
            max_commit_retries=COMMIT_RETRIES,
            app_transactions=[Transaction(app_id=a, version=v) for a, v in (txns or {}).items()] or None,
        )
        data = _plain_types(data)
        if configuration and self.exists(name):
            configuration = None
        for attempt in range(COMMIT_RETRIES):
            try:
                write_deltalake(
                    self.uri(name),
                    data,
                    mode=mode,
                    partition_by=partition_by,
                    predicate=predicate,
                    schema_mode=schema_mode,
                    storage_options=self._opts(),
                    commit_properties=props,
                    configuration=configuration,
                )
                return self.table(name).version()
            except CommitFailedError:
                if attempt == COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

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

    def list_tables(self) -> list[str]:
        """Every Delta table under the root, as names (``bronze/usage.events`` ...)."""
        import pyarrow.fs as pafs

        if self.is_remote:
            fs, base = pafs.FileSystem.from_uri(self.root)
            fs = _s3_filesystem(self) or fs
        else:
            fs, base = pafs.LocalFileSystem(), self.root.removeprefix("file://")
        try:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except (OSError, pa.ArrowException):
            return []
        names = set()
        for info in infos:
            path = info.path
            if info.type == pafs.FileType.Directory and path.endswith("/_delta_log"):
                names.add(path[len(base.rstrip("/")) + 1 : -len("/_delta_log")])
        return sorted(n for n in names if n)


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


def view_names(names: Iterable[str]) -> dict[str, str]:
    """View name -> table name, including the unique ``gold_<leaf>`` short names."""
    names = list(names)
    views = {view_name(n): n for n in names}
    leaves: dict[str, list[str]] = {}
    for n in names:
        parts = n.split("/")
        if parts[0] == "gold" and len(parts) > 2:
            leaves.setdefault(f"gold_{view_name(parts[-1])}", []).append(n)
    for alias, owners in leaves.items():
        if len(owners) == 1 and alias not in views:
            views[alias] = owners[0]
    return views


def utcnow() -> datetime:
    return datetime.now(UTC)

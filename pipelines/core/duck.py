"""DuckDB over the lake: register Delta tables as views, run SQL models, get Arrow back."""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from pipelines.core.config import REPO_ROOT
from pipelines.core.lake import Lake

SQL_DIR = REPO_ROOT / "sql"


def connect(lake: Lake | None = None, views: Mapping[str, str] | None = None, *, versions: Mapping[str, int] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``views`` (view name -> table name) registered from ``lake``.

    ``versions`` pins tables (table name -> Delta version); others are read at their latest.
    """
    con = duckdb.connect()
    for view, table in (views or {}).items():
        version = (versions or {}).get(table)
        con.register(view, lake.dataset(table, version=version))
    return con


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run ``sql`` and return the whole result as an Arrow table."""
    return con.sql(sql).to_arrow_table()


def model_sql(path: str) -> str:
    """The text of a SQL model, e.g. ``model_sql("billing/rated_usage")``."""
    name = path if path.endswith(".sql") else f"{path}.sql"
    return (SQL_DIR / name).read_text()

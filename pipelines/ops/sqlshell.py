"""The analyst SQL surface: every lake table as a DuckDB view, time travel, a small REPL."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal, TextIO

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines.core.errors import ConfigError, LakeError
from pipelines.core.lake import Lake, Skipped, view_names

Format = Literal["table", "csv", "json"]
FORMATS = ("table", "csv", "json")
PROMPT, CONTINUE = "telcolake> ", "      ...> "
HELP = """.tables            list the registered views and the table each reads (and what was skipped, why)
.mode table|csv|json  change the output format
.help              this text
.quit / .exit      leave (so does Ctrl-D)
Statements end with ';' and may span lines."""


def parse_as_of(value: str | datetime) -> datetime:
    """An ISO 8601 time (naive means UTC) as an aware UTC datetime.

    Raises:
        ConfigError: the text is not an ISO 8601 time.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--as-of {value!r}: expected an ISO 8601 time such as 2026-10-05T12:00:00Z") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def parse_versions(pairs: Iterable[str]) -> dict[str, int]:
    """``["silver_usage=3", "gold/billing/invoices=1"]`` -> ``{key: version}``.

    Raises:
        ConfigError: a pair is not ``TABLE=VERSION`` with a non-negative integer version.
    """
    out: dict[str, int] = {}
    for pair in pairs:
        key, sep, version = pair.partition("=")
        if not sep or not key.strip() or not version.strip().isdigit():
            raise ConfigError(f"--as-of-version {pair!r}: expected TABLE=VERSION, e.g. silver_usage=3")
        out[key.strip()] = int(version)
    return out


def version_at(lake: Lake, name: str, when: datetime) -> int | None:
    """The latest version of table ``name`` committed at or before ``when`` (None: none was)."""
    cutoff_ms = int(when.timestamp() * 1000)
    best = None
    for commit in lake.table(name).history():
        if commit.get("timestamp", 0) <= cutoff_ms and (best is None or commit["version"] > best):
            best = commit["version"]
    return best


def register_lake(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    versions: Mapping[str, int] | None = None,
    as_of: str | datetime | None = None,
    skipped: list[Skipped] | None = None,
) -> dict[str, str]:
    """Register every lake table on ``con`` as a view; return view name -> table name.

    Tables discovery skips (names that are no SQL identifier, tables outside the layer roots,
    symlinks, view-name collisions) and tables that cannot be opened are left out, each with
    its reason appended to ``skipped``: one bad directory never makes every query fail.

    Args:
        con: the DuckDB connection.
        lake: the lake whose tables to register.
        versions: pins (view name or table name -> Delta version); they win over ``as_of``.
        as_of: read each table at its latest version committed at or before this time;
            tables created after it are not registered.
        skipped: when given, receives what was not registered and why.

    Raises:
        ConfigError: a pinned name is not a table of the lake.
        LakeError: a pinned version does not exist or a pinned table cannot be read.

    Example:
        >>> con = duckdb.connect()
        >>> views = register_lake(con, lake, versions={"silver_usage": 3})
        >>> con.sql("select count(*) from silver_usage").fetchone()
    """
    found = lake.discover()
    left_out = list(found.skipped)
    views = view_names(found.tables, left_out)
    tables = set(views.values())
    pins: dict[str, int] = {}
    for key, version in (versions or {}).items():
        name = views.get(key) or (key.strip("/") if key.strip("/") in tables else None)
        if name is None:
            raise ConfigError(f"--as-of-version {key}={version}: no such table; expected a view or table name "
                              f"such as {', '.join(sorted(views)[:5]) or '(the lake is empty)'}")
        pins[name] = version
    when = parse_as_of(as_of) if as_of is not None else None
    resolved: dict[str, int | None] = {}
    for name in sorted(tables):
        if name in pins:
            resolved[name] = pins[name]
        elif when is not None:
            try:
                at = version_at(lake, name, when)
            except Exception as exc:  # noqa: BLE001 - a broken table is reported, not fatal
                left_out.append(Skipped(name, f"cannot read its history: {_first_line(exc)}"))
                continue
            if at is not None:  # a table created after ``as_of`` is left out
                resolved[name] = at
        else:
            resolved[name] = None
    registered: dict[str, str] = {}
    datasets: dict[str, ds.Dataset | pa.Table] = {}
    for view, name in sorted(views.items()):
        if name not in resolved:
            continue
        if name not in datasets:
            try:
                datasets[name] = scannable(lake.dataset(name, version=resolved[name]))
            except Exception as exc:  # delta-rs raises its own errors for a missing version or a broken log
                if name in pins:
                    raise LakeError(f"table {name}: cannot read version {resolved[name]}: {_first_line(exc)}") from None
                left_out.append(Skipped(name, f"cannot be read: {_first_line(exc)}"))
                resolved.pop(name)
                continue
        con.register(view, datasets[name])
        registered[view] = name
    if skipped is not None:
        skipped.extend(left_out)
    return registered


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


VIEW_TYPES = (pa.types.is_string_view, pa.types.is_binary_view, pa.types.is_list_view)
MAX_FOOTERS = 200


def _plain_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_list_view(t):
        return pa.list_(_plain_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain_type(f.type)) for f in t])
    return t


def _has_view(t: pa.DataType) -> bool:
    if any(check(t) for check in VIEW_TYPES):
        return True
    return pa.types.is_struct(t) and any(_has_view(f.type) for f in t)


def scannable(dataset: ds.Dataset) -> ds.Dataset | pa.Table:
    """``dataset``, or its rows in memory when its files store Arrow view types.

    pyarrow cannot evaluate filters on ``string_view`` columns, so a DuckDB filter pushed
    into such a dataset fails ("no kernel matching input types (string_view, ...)"). Files
    written from Polars frames carry those types; their tables are read whole instead (up
    to ``MAX_FOOTERS`` file footers are checked, the newest and oldest first).
    """
    files = list(getattr(dataset, "files", []))
    sample = files if len(files) <= MAX_FOOTERS else files[: MAX_FOOTERS // 2] + files[-MAX_FOOTERS // 2 :]
    if not any(any(_has_view(f.type) for f in pq.read_schema(path, filesystem=dataset.filesystem)) for path in sample):
        return dataset
    schema = pa.schema([f.with_type(_plain_type(f.type)) for f in dataset.schema])
    return dataset.to_table().cast(schema)


def statements(sql: str) -> list[str]:
    """Split ``sql`` into statements the way DuckDB's parser does (``;`` inside strings is kept)."""
    con = duckdb.connect()
    try:
        return [str(s.query).strip().rstrip(";").strip() for s in con.extract_statements(sql)]
    finally:
        con.close()


def run(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[pa.Table]:
    """Run the statements of ``sql`` one by one, yielding the result of each that produces rows.

    A failing statement raises after the results before it were yielded (and shown).
    """
    for stmt in statements(sql):
        rel = con.sql(stmt)
        if rel is not None:
            yield rel.to_arrow_table()


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def render(result: pa.Table, fmt: Format, out: TextIO, *, max_rows: int = 1000, console=None) -> None:
    """Print ``result`` as a rich table, CSV (with header) or a JSON array of objects."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.column_names)
        for row in result.to_pylist():
            writer.writerow(["" if v is None else _plain(v) for v in row.values()])
    elif fmt == "json":
        out.write(json.dumps([{k: _plain(v) for k, v in row.items()} for row in result.to_pylist()], default=str) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        shown = result.slice(0, max_rows)
        table = Table(*(f"{f.name}\n[dim]{f.type}[/dim]" for f in result.schema), show_lines=False)
        for row in shown.to_pylist():
            table.add_row(*("NULL" if v is None else str(_plain(v)) for v in row.values()))
        note = f"{result.num_rows:,} row" + ("" if result.num_rows == 1 else "s") + (f" (showing {max_rows:,})" if result.num_rows > max_rows else "")
        (console or Console(file=out)).print(table, note)


class Shell:
    """A tiny DuckDB REPL over a connection with the lake registered."""

    def __init__(self, con: duckdb.DuckDBPyConnection, views: Mapping[str, str], *, fmt: Format = "table",
                 out: TextIO | None = None, err: TextIO | None = None, skipped: Iterable[Skipped] = ()):
        self.con, self.views, self.fmt = con, dict(views), fmt
        self.skipped = list(skipped)
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.failures = 0

    def command(self, line: str) -> bool:
        """Run a dot command; return False when the shell should stop."""
        word, _, arg = line.strip().partition(" ")
        if word in (".quit", ".exit"):
            return False
        if word == ".tables":
            width = max((len(v) for v in self.views), default=0)
            for view, name in sorted(self.views.items()):
                self.out.write(f"{view:<{width}}  {name}\n")
            for s in self.skipped:
                self.out.write(f"skipped {s.path}: {s.reason}\n")
        elif word == ".mode" and arg.strip() in FORMATS:
            self.fmt = arg.strip()  # type: ignore[assignment]
        elif word == ".help":
            self.out.write(HELP + "\n")
        else:
            self.err.write(f"unknown command {line.strip()!r}: expected .tables, .mode table|csv|json, .help, .quit\n")
        return True

    def execute(self, sql: str) -> None:
        try:
            for result in run(self.con, sql):
                render(result, self.fmt, self.out)
        except (duckdb.Error, LakeError) as exc:
            self.failures += 1
            self.err.write(f"error: {exc}\n")
        except KeyboardInterrupt:
            self.failures += 1
            self.err.write("interrupted\n")
        self.out.flush()

    def loop(self, read_line: Callable[[str], str], *, interactive: bool) -> int:
        """Read lines with ``read_line(prompt)`` (EOFError ends) until ``.quit``; return the failures."""
        buffer: list[str] = []
        while True:
            try:
                line = read_line(CONTINUE if buffer else PROMPT)
            except EOFError:
                break
            except KeyboardInterrupt:
                buffer = []
                self.out.write("\n")
                continue
            if not buffer and line.strip().startswith("."):
                if not self.command(line):
                    return self.failures
                continue
            if not buffer and not line.strip():
                continue
            buffer.append(line)
            text = "\n".join(buffer)
            if text.rstrip().endswith(";") and _complete(text):
                self.execute(text)
                buffer = []
        if buffer and "\n".join(buffer).strip():
            self.execute("\n".join(buffer))
        if interactive:
            self.out.write("\n")
        return self.failures


def _complete(text: str) -> bool:
    """True when ``text`` parses into statements (a ``;`` inside an open string is not an end)."""
    try:
        statements(text)
        return True
    except duckdb.ParserException as exc:
        return "unterminated" not in str(exc).lower()


def interactive_reader(history_file: str | None) -> Callable[[str], str]:
    """``input`` with readline editing and history when the platform has readline."""
    try:
        import readline

        if history_file:
            try:
                readline.read_history_file(history_file)
            except OSError:
                pass
            import atexit

            atexit.register(lambda: _save_history(readline, history_file))
    except ImportError:
        pass
    return input


def _save_history(readline, path: str) -> None:
    try:
        readline.set_history_length(2000)
        readline.write_history_file(path)
    except OSError:
        pass


def stream_reader(stream: TextIO) -> Callable[[str], str]:
    """Lines of a non-interactive ``stream`` (no prompts)."""
    lines = iter(stream)

    def read(_prompt: str) -> str:
        try:
            return next(lines).rstrip("\n")
        except StopIteration:
            raise EOFError from None

    return read


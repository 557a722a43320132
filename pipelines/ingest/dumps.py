"""Legacy dumps (CSV, Parquet, JSON lines): found, checked per file, read as raw values, and a Bytewax source.

Each file is a segment whose positions are row numbers; its id is its content hash, stored
with the last landed row in the Delta log, so a file lands exactly once however often it is
backfilled (and a re-run after a crash resumes mid-file).

Files are judged one by one: a bad *row* is quarantined by the decoder with its reason; a bad
*file* (binary or wrongly encoded text, empty, truncated Parquet, a CSV header without the
contract's required columns ...) is refused with a :class:`Refusal` and the next file goes on.
Nothing that is not a regular file is ever opened for reading (a FIFO would block): the
entry is ``lstat``-ed first, opened non-blocking, and checked again on the open descriptor.
"""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import io
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
from bytewax.inputs import DynamicSource, StatelessSourcePartition

from pipelines.core.contracts import CONTRACTS, TS, Contract
from pipelines.core.errors import ConfigError, TelcolakeError
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import RawBatch
from pipelines.ingest.landing import app_id, bronze_table

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
TEXT_FORMATS = ("csv", "jsonl")
CHUNK = 1 << 20
KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


class BadDump(TelcolakeError):
    """A dump file refused as a whole; the message is the reason."""


@dataclass(frozen=True)
class LegacyFile:
    """A dump to backfill: its path, contract topic, format, identity and text encoding."""

    path: Path
    topic: str
    fmt: str
    sha256: str
    size: int
    encoding: str = "utf-8"

    @property
    def segment(self) -> str:
        return f"file:{self.sha256}"

    @property
    def source(self) -> str:
        return f"file:{self.path.parent.name}/{self.path.name}"

    @property
    def delivered_ms(self) -> int | None:
        """When the file was delivered, from a name that is its date (``2026-07-14.csv``): the end of
        that day (UTC), in epoch ms; None for any other name."""
        return delivered_ms(self.path.name)


def delivered_ms(name: str) -> int | None:
    """The end (next midnight, UTC) of the date a dump's name starts with, in epoch ms; None when it names none."""
    m = re.match(r"(\d{4}-\d{2}-\d{2})\.", name)
    if not m:
        return None
    try:
        day = date.fromisoformat(m.group(1))
    except ValueError:
        return None
    return int(datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Refusal:
    """A file refused (``refused``: its content is bad) or skipped (``skipped``: not a regular dump file)."""

    path: str
    reason: str
    status: str = "refused"
    sha256: str | None = None
    size: int | None = None
    topic: str | None = None
    fmt: str | None = None
    encoding: str | None = None

    @classmethod
    def of(cls, f: LegacyFile, reason: str) -> Refusal:
        return cls(str(f.path), reason, "refused", f.sha256, f.size, f.topic, f.fmt, f.encoding)


@dataclass
class Plan:
    """What :func:`find_dumps` found: files to land, files refused or skipped, and repeated content."""

    files: list[LegacyFile] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    same_content: dict[str, str] = field(default_factory=dict)  # path -> path of the first file with that content


def check_encoding(encoding: str) -> str:
    """The codec's canonical name.

    Raises:
        ConfigError: Python has no such text codec.
    """
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        raise ConfigError(f"--encoding {encoding!r}: unknown text encoding; e.g. utf-8, latin-1, cp1252") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"--encoding {encoding!r}: not a text encoding; e.g. utf-8, latin-1, cp1252")
    return info.name


def _shown(path: str | Path) -> str:
    text = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _topic_of(path: Path, topic: str | None) -> str | None:
    if topic is not None:
        return topic if topic in CONTRACTS else None
    return next((p.removesuffix(path.suffix) for p in reversed(path.parts) if p.removesuffix(path.suffix) in CONTRACTS), None)


def _open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, opened without blocking and checked to be a regular file.

    Raises:
        BadDump: the file is gone, unreadable, or (raced in after the stat) not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BadDump(f"cannot be opened: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BadDump(f"{KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file")
    return fd


def _read_all(path: Path) -> bytes:
    fd = _open_regular(path)
    try:
        chunks = []
        while chunk := os.read(fd, CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise BadDump(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _hash(path: Path) -> tuple[str, int]:
    fd = _open_regular(path)
    digest, size = hashlib.sha256(), 0
    try:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            size += len(chunk)
    except OSError as exc:
        raise BadDump(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def describe(path: str | Path, topic: str | None = None, encoding: str = "utf-8") -> LegacyFile:
    """Identify one dump file: format from the suffix, topic from ``topic`` or a path part, content hash.

    Raises:
        BadDump: unknown format, no topic, not a regular file, or unreadable (the reason).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadDump(f"unknown format {path.suffix!r}; allowed: {', '.join(sorted(FORMATS))}")
    found = _topic_of(path, topic)
    if found is None:
        raise BadDump(f"cannot tell its topic; name a folder or the file after one, or pass --topic ({', '.join(CONTRACTS)})")
    try:
        st = path.stat()  # follows a symlink to its target; a loop raises ELOOP
    except OSError as exc:
        raise BadDump("a symlink loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadDump(f"{KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}, not a regular file: never opened")
    sha, size = _hash(path)
    return LegacyFile(path=path, topic=found, fmt=fmt, sha256=sha, size=size, encoding=encoding)


def find_dumps(paths: Iterable[str | Path], topic: str | None = None, encoding: str = "utf-8") -> Plan:
    """Every dump file under ``paths`` (files or directories), each judged on its own.

    Directories are walked (symlinked ones too, each directory once, so a link loop ends);
    files with a dump suffix become :class:`LegacyFile` s, or :class:`Refusal` s with the reason
    when they are not regular files, symlink loops, unreadable or empty. A path named directly
    is judged whatever its suffix.

    Raises:
        TelcolakeError: a path named directly does not exist.
    """
    plan, seen_dirs, seen_content = Plan(), set(), {}

    def consider(path: Path, explicit: bool) -> None:
        try:
            lst = path.lstat()
        except OSError as exc:
            if explicit:
                raise TelcolakeError(f"{_shown(path)}: {exc.strerror}") from None
            return
        try:
            st = path.stat() if stat.S_ISLNK(lst.st_mode) else lst
        except OSError as exc:
            if explicit or path.suffix.lower() in FORMATS:
                why = "a symlink loop" if exc.errno == errno.ELOOP else "a broken symlink" if exc.errno == errno.ENOENT else exc.strerror
                plan.refusals.append(Refusal(_shown(path), f"{why}: skipped", "skipped"))
            return
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                return  # reached again through a link: already scanned
            seen_dirs.add(key)
            if path.suffix.lower() in FORMATS:
                plan.refusals.append(Refusal(_shown(path), "a directory named like a dump file, not a file: its contents are scanned", "skipped"))
            try:
                with os.scandir(path) as it:
                    children = sorted((Path(e.path) for e in it), key=lambda p: p.name)
            except OSError as exc:
                plan.refusals.append(Refusal(_shown(path), f"directory cannot be listed: {exc.strerror}", "skipped"))
                return
            for child in children:
                consider(child, False)
            return
        if path.suffix.lower() not in FORMATS and not explicit:
            return
        if not stat.S_ISREG(st.st_mode):
            kind = KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            plan.refusals.append(Refusal(_shown(path), f"{kind}, not a regular file: never opened", "skipped"))
            return
        try:
            f = describe(path, topic, encoding)
        except BadDump as exc:
            plan.refusals.append(Refusal(_shown(path), str(exc)))
            return
        if f.size == 0:
            plan.refusals.append(Refusal.of(f, "empty file (0 bytes)"))
        elif f.sha256 in seen_content:
            plan.same_content[_shown(path)] = seen_content[f.sha256]
        else:
            seen_content[f.sha256] = _shown(path)
            plan.files.append(f)

    for p in paths:
        consider(Path(p), True)
    return plan


def _jsonl_values(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.rstrip(b"\r") for line in lines]


_POLARS = {pa.int64(): pl.Int64, pa.float64(): pl.Float64, pa.bool_(): pl.Boolean, pa.string(): pl.String}


def _columnar_values(contract: Contract, frame: pl.DataFrame) -> list[bytes]:
    """Rows of a CSV/Parquet dump as JSON values for the decoder.

    A cell that cannot be read as its column's type is kept as its text, so the decoder
    rejects that row with ``bad_type:<column>`` like any other wrongly typed record.
    """
    encoder = msgspec.json.Encoder()
    columns = []
    uncast: dict[str, dict[int, str]] = {}  # column -> row -> original text of a cell that did not cast
    for field_ in contract.schema:
        if field_.name not in frame.columns:
            continue
        col = frame[field_.name]
        target = pl.String if field_.type == TS or field_.name in contract.json_fields else _POLARS.get(field_.type)
        if field_.type == TS and col.dtype != pl.String:
            col = col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ") if col.dtype == pl.Datetime else col.cast(pl.String)
        if target is not None and col.dtype != target and target != pl.String:
            if target == pl.Boolean and col.dtype == pl.String:  # polars cannot cast text to bool
                cast = col.str.to_lowercase().replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
            else:
                cast = col.cast(target, strict=False)
            failed = (cast.is_null() & col.is_not_null() & (col.cast(pl.String) != "")).arg_true()
            if len(failed):
                text = col.cast(pl.String)
                uncast[field_.name] = {int(i): text[int(i)] for i in failed}
            col = cast
        elif target is None:  # decimals: pass their text, the decoder parses them exactly
            col = col.cast(pl.String)
        columns.append(col.alias(field_.name))
    rows = pl.DataFrame(columns).to_dicts() if columns else [{} for _ in range(frame.height)]
    for name, cells in uncast.items():  # the decoder rejects these rows as bad_type:<name>
        for i, text in cells.items():
            rows[i][name] = text
    for row in rows:  # empty CSV cells mean "no value"
        for k in [k for k, v in row.items() if v is None or v == ""]:
            del row[k]
    if contract.json_fields:
        for row in rows:
            for name in contract.json_fields:
                if isinstance(row.get(name), str):
                    row[name] = msgspec.Raw(row[name].encode())
    return [encoder.encode(r) for r in rows]


def _text(data: bytes, f: LegacyFile) -> bytes:
    """The file's text as UTF-8, or the reason it is refused (binary, compressed, wrongly encoded)."""
    if data[:2] == b"\x1f\x8b":
        raise BadDump("gzip-compressed; decompress it first")
    if data[:4] == b"PAR1":
        raise BadDump(f"a Parquet file named {f.path.suffix}; rename it to .parquet")
    if f.encoding == "utf-8":
        if b"\x00" in data:
            raise BadDump(f"binary content (NUL bytes), not a {f.fmt} text file")
        if f.fmt == "jsonl":
            return data  # line by line: a line that is not UTF-8 JSON is quarantined as malformed_json
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadDump(f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "for a legacy export pass --encoding, e.g. --encoding latin-1") from None
        return data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode(f.encoding)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadDump(f"not valid {f.encoding}: {str(exc)[:200]}") from None
    if "\x00" in text:
        raise BadDump(f"binary content (NUL characters), not a {f.fmt} text file")
    return text.removeprefix("\ufeff").encode("utf-8")


def _check_columns(contract: Contract, columns: list[str], what: str) -> None:
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise BadDump(f"{what} names {', '.join(duplicated)} more than once")
    missing = [c for c in contract.required if c not in columns]
    if missing:
        shown = ", ".join(c[:40] for c in columns[:12]) + (" ..." if len(columns) > 12 else "")
        raise BadDump(f"{what} lacks required column(s) {', '.join(missing)} of {contract.topic}; found: {shown or 'none'}")


def _csv_frame(contract: Contract, text: bytes) -> pl.DataFrame:
    first = text.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")
    header = next(csv.reader([first]), [])
    _check_columns(contract, header, "CSV header")
    return pl.read_csv(io.BytesIO(text), infer_schema=False)


def _parquet_frame(contract: Contract, data: bytes) -> pl.DataFrame:
    if data[:4] != b"PAR1":
        raise BadDump("not a Parquet file (no PAR1 magic at the start)")
    if len(data) < 12 or data[-4:] != b"PAR1":
        raise BadDump("truncated Parquet file (no footer)")
    import pyarrow.parquet as pq

    schema = pq.read_schema(io.BytesIO(data))
    _check_columns(contract, list(schema.names), "Parquet schema")
    return pl.read_parquet(io.BytesIO(data))


def read_values(f: LegacyFile) -> list[bytes]:
    """Every record of a dump as a raw value, in file order.

    Raises:
        BadDump: the file as a whole cannot be read as its format (the reason); it changed since
            it was described (its content hash differs); or it is not a regular file any more.
    """
    data = _read_all(f.path)
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise BadDump("changed while backfilling (content hash differs); run backfill again")
    if not data:
        raise BadDump("empty file (0 bytes)")
    contract = CONTRACTS[f.topic]
    if f.fmt in TEXT_FORMATS:
        data = _text(data, f)
    if f.fmt == "jsonl":
        if f.path.suffix.lower() == ".json" and data.lstrip()[:1] == b"[":
            raise BadDump("a JSON array, not JSON lines (one object per line)")
        return _jsonl_values(data)
    try:
        frame = _csv_frame(contract, data) if f.fmt == "csv" else _parquet_frame(contract, data)
        return _columnar_values(contract, frame)
    except BadDump:
        raise
    except Exception as exc:  # noqa: BLE001 - polars/arrow raise many types for a malformed file; its reason is kept
        lines = str(exc).strip().splitlines()
        raise BadDump(f"not a readable {f.fmt} file: {type(exc).__name__}: {(lines[0] if lines else '')[:300]}") from None


OnRefused = Callable[[Refusal], None]


class _FilePartition(StatelessSourcePartition[RawBatch]):
    def __init__(self, files: list[LegacyFile], lake: Lake, chunk_rows: int, on_refused: OnRefused | None) -> None:
        self._files = list(files)
        self._lake = lake
        self._chunk = chunk_rows
        self._on_refused = on_refused
        self._pending: list[RawBatch] = []

    def next_batch(self) -> list[RawBatch]:
        if self._pending:
            return [self._pending.pop(0)]
        if not self._files:
            raise StopIteration
        f = self._files.pop(0)
        try:
            values = read_values(f)
        except BadDump as exc:  # refuse this file, go on with the next
            if self._on_refused is not None:
                self._on_refused(Refusal.of(f, str(exc)))
            return []
        stored = self._lake.txn_version(bronze_table(f.topic), app_id(f.segment))
        start = 0 if stored is None else stored + 1
        for lo in range(start, len(values), self._chunk):
            chunk = values[lo : lo + self._chunk]
            self._pending.append(
                RawBatch(
                    topic=f.topic,
                    source=f.source,
                    values=chunk,
                    keys=[None] * len(chunk),
                    segments=[f.segment],
                    seg=np.zeros(len(chunk), dtype=np.int32),
                    pos=np.arange(lo, lo + len(chunk), dtype=np.int64),
                    nbytes=sum(len(v) for v in chunk),
                    delivered_ms=f.delivered_ms,
                )
            )
        return [self._pending.pop(0)] if self._pending else []


class LegacyFileSource(DynamicSource[RawBatch]):
    """Reads dump files, each worker a round-robin share, in chunks of ``chunk_rows``; a bad file
    is handed to ``on_refused`` and skipped."""

    def __init__(self, files: list[LegacyFile], lake: Lake, chunk_rows: int = 200_000, on_refused: OnRefused | None = None) -> None:
        self.files = files
        self.lake = lake
        self.chunk_rows = chunk_rows
        self.on_refused = on_refused

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FilePartition:
        mine = [f for i, f in enumerate(self.files) if i % worker_count == worker_index]
        return _FilePartition(mine, self.lake, self.chunk_rows, self.on_refused)

"""Legacy dumps (CSV, Parquet, JSON lines): identified, read as raw values, and a Bytewax source.

Each file is a segment whose positions are row numbers; its id is its content hash, stored
with the last landed row in the Delta log, so a file lands exactly once however often it is
backfilled (and a re-run after a crash resumes mid-file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
from bytewax.inputs import DynamicSource, StatelessSourcePartition

from pipelines.core.contracts import CONTRACTS, TS, Contract
from pipelines.core.errors import TelcolakeError
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import RawBatch
from pipelines.ingest.landing import app_id, bronze_table

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class LegacyFile:
    """A dump to backfill: its path, contract topic, format and identity."""

    path: Path
    topic: str
    fmt: str
    sha256: str
    size: int

    @property
    def segment(self) -> str:
        return f"file:{self.sha256}"

    @property
    def source(self) -> str:
        return f"file:{self.path.parent.name}/{self.path.name}"


def describe(path: str | Path, topic: str | None = None) -> LegacyFile:
    """Identify a dump file: format from the suffix, topic from ``topic`` or a path part.

    Raises:
        TelcolakeError: unknown format, or no topic given and none in the path.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TelcolakeError(f"{path}: unknown format {path.suffix!r}; allowed: {', '.join(sorted(FORMATS))}")
    if topic is None:
        topic = next((p.removesuffix(path.suffix) for p in reversed(path.parts) if p.removesuffix(path.suffix) in CONTRACTS), None)
    if topic not in CONTRACTS:
        raise TelcolakeError(f"{path}: cannot tell its topic; pass --topic ({', '.join(CONTRACTS)})")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return LegacyFile(path=path, topic=topic, fmt=fmt, sha256=digest.hexdigest(), size=path.stat().st_size)


def _jsonl_values(path: Path) -> list[bytes]:
    data = path.read_bytes()
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
    for field in contract.schema:
        if field.name not in frame.columns:
            continue
        col = frame[field.name]
        target = pl.String if field.type == TS or field.name in contract.json_fields else _POLARS.get(field.type)
        if field.type == TS and col.dtype != pl.String:
            col = col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ") if col.dtype == pl.Datetime else col.cast(pl.String)
        if target is not None and col.dtype != target and target != pl.String:
            if target == pl.Boolean and col.dtype == pl.String:  # polars cannot cast text to bool
                cast = col.str.to_lowercase().replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
            else:
                cast = col.cast(target, strict=False)
            failed = (cast.is_null() & col.is_not_null() & (col.cast(pl.String) != "")).arg_true()
            if len(failed):
                text = col.cast(pl.String)
                uncast[field.name] = {int(i): text[int(i)] for i in failed}
            col = cast
        elif target is None:  # decimals: pass their text, the decoder parses them exactly
            col = col.cast(pl.String)
        columns.append(col.alias(field.name))
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


def read_values(f: LegacyFile) -> list[bytes]:
    """Every record of a dump as a raw value, in file order."""
    contract = CONTRACTS[f.topic]
    if f.fmt == "jsonl":
        return _jsonl_values(f.path)
    if f.fmt == "csv":
        frame = pl.read_csv(f.path, infer_schema=False)
    else:
        frame = pl.read_parquet(f.path)
    return _columnar_values(contract, frame)


class _FilePartition(StatelessSourcePartition[RawBatch]):
    def __init__(self, files: list[LegacyFile], lake: Lake, chunk_rows: int) -> None:
        self._files = list(files)
        self._lake = lake
        self._chunk = chunk_rows
        self._pending: list[RawBatch] = []

    def next_batch(self) -> list[RawBatch]:
        if self._pending:
            return [self._pending.pop(0)]
        if not self._files:
            raise StopIteration
        f = self._files.pop(0)
        stored = self._lake.txn_version(bronze_table(f.topic), app_id(f.segment))
        values = read_values(f)
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
                )
            )
        return [self._pending.pop(0)] if self._pending else []


class LegacyFileSource(DynamicSource[RawBatch]):
    """Reads dump files, each worker a round-robin share, in chunks of ``chunk_rows``."""

    def __init__(self, files: list[LegacyFile], lake: Lake, chunk_rows: int = 200_000) -> None:
        self.files = files
        self.lake = lake
        self.chunk_rows = chunk_rows

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FilePartition:
        mine = [f for i, f in enumerate(self.files) if i % worker_count == worker_index]
        return _FilePartition(mine, self.lake, self.chunk_rows)

"""Simulator: JSON wire values from column batches, and the mediation defects planted in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import polars as pl

from pipelines.core.contracts import Contract

# non_json: a legacy pipe-separated line; binary: bytes that are not UTF-8.
MALFORMED_KINDS = ("non_json", "binary", "truncated", "wrong_type", "missing_field", "unknown_enum")
UNKEYED = ("non_json", "binary", "truncated")
# Per topic: (field made the wrong type, its wrong value), the required field dropped, and an
# enum field with a value the contract does not allow.
_WRONG = {"usage.events": ("duration_s", "93s"), "network.events": ("cell_id", 4711), "bss.events": ("occurred_at", 1790000000)}
_MISSING = {"usage.events": ("subscriber_id", "started_at"), "network.events": ("site_id", "observed_at"),
            "bss.events": ("account_id", "occurred_at")}
_ENUM = {"usage.events": ("event_type", "mms"), "network.events": ("kind", "trace"), "bss.events": ("kind", "migrated")}


def wire_frame(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """The contract's columns in order, epoch-second time columns as RFC 3339 text with ``Z``."""
    times = set(contract.time_columns)
    return frame.select(
        [
            pl.from_epoch(pl.col(f.name), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias(f.name) if f.name in times else pl.col(f.name)
            for f in contract.schema
        ]
    )


def encode(wire: pl.DataFrame, contract: Contract) -> np.ndarray:
    """One JSON object per row (object array of bytes); absent optional values are left out.

    Rows are grouped by which optional fields are null and each group is written by polars'
    NDJSON writer; JSON-object fields (``attributes``) are spliced in as raw JSON text.
    """
    raw = [c for c in contract.json_fields if c in wire.columns]
    plain = [c for c in wire.columns if c not in raw]
    optional = [c for c in wire.columns if c not in contract.required and wire[c].null_count() > 0]
    out = np.empty(wire.height, dtype=object)
    if wire.height == 0:
        return out
    pattern = np.zeros(wire.height, np.int64)
    for bit, c in enumerate(optional):
        pattern |= wire[c].is_null().to_numpy().astype(np.int64) << bit
    for pat in np.unique(pattern):
        rows = np.nonzero(pattern == pat)[0]
        absent = {c for bit, c in enumerate(optional) if pat >> bit & 1}
        part = wire[rows]
        text = part.select([c for c in plain if c not in absent]).write_ndjson()
        present = [c for c in raw if c not in absent]
        if present:
            lines = pl.Series(text.split("\n")[:-1])
            spliced = pl.select(
                pl.concat_str([lines.str.head(-1), *[pl.concat_str([pl.lit(f',"{c}":'), part[c]]) for c in present], pl.lit("}")])
            ).to_series()
            text = "\n".join(spliced.to_list()) + "\n"
        values = text.encode().split(b"\n")[:-1]
        out[rows] = values
    return out


@dataclass
class Malformed:
    """One planted malformed record: its value, kind, and the typed row it stands for (if any)."""

    value: bytes
    kind: str
    row: dict[str, Any] | None


def malformed(rng: np.random.Generator, contract: Contract, source: bytes, kind: str, new_id: str) -> Malformed:
    """A malformed record of ``kind`` made from a good wire value (with a fresh id)."""
    record = msgspec.json.decode(source)
    record[contract.id_field] = new_id
    good = msgspec.json.encode(record)
    topic = contract.topic
    if kind == "non_json":
        fields = [str(v) for v in record.values() if isinstance(v, str | int) and not isinstance(v, bool)][:6]
        return Malformed(("|".join(["LEGACY", *fields])).encode(), kind, None)
    if kind == "binary":
        return Malformed(bytes(rng.integers(0x80, 0x100, int(rng.integers(8, 40))).astype(np.uint8).tolist()), kind, None)
    if kind == "truncated":
        return Malformed(good[: int(rng.integers(8, len(good) - 1))], kind, None)
    if kind == "wrong_type":
        name, value = _WRONG[topic]
        record[name] = value
        return Malformed(msgspec.json.encode(record), kind, None)
    if kind == "missing_field":
        options = _MISSING[topic]
        record.pop(options[int(rng.integers(0, len(options)))], None)
        return Malformed(msgspec.json.encode(record), kind, dict(record))
    name, value = _ENUM[topic]
    record[name] = value
    return Malformed(msgspec.json.encode(record), kind, dict(record))


def row_frame(rows: list[dict[str, Any]], contract: Contract, *, as_text: bool) -> pl.DataFrame:
    """Rows of malformed-but-representable records as a frame with the contract's columns."""
    names = contract.schema.names
    if as_text:
        data = {n: [_text(r.get(n)) for r in rows] for n in names}
        return pl.DataFrame(data, schema=dict.fromkeys(names, pl.String))
    data = {n: [r.get(n) if n not in contract.json_fields else _text(r.get(n)) for r in rows] for n in names}
    return pl.DataFrame(data, strict=False)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return str(value)

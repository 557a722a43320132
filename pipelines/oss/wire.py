"""Fulfilment messages as JSON on the wire, encoded column-wise (Polars), with RFC 3339 UTC times."""

from __future__ import annotations

import polars as pl

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


def _texts(df: pl.DataFrame) -> pl.DataFrame:
    """Datetimes as RFC 3339 text (what the contracts' decoder reads back)."""
    return df.with_columns([pl.col(n).dt.strftime(TIME_FORMAT) for n, t in df.schema.items() if isinstance(t, pl.Datetime)])


def encode(df: pl.DataFrame, *, raw: tuple[str, ...] = ()) -> list[bytes]:
    """One JSON object per row; ``raw`` columns hold JSON text spliced in as values (objects), not strings."""
    if not df.height:
        return []
    body = pl.struct([c for c in df.columns if c not in raw]).struct.json_encode()
    if raw:
        head = body.str.head(-1)
        parts = [head]
        for name in raw:
            parts += [pl.lit(f',"{name}":'), pl.col(name).fill_null("null")]
        body = pl.concat_str([*parts, pl.lit("}")])
    return [s.encode() for s in _texts(df).select(body.alias("_json"))["_json"].to_list()]


def keyed(df: pl.DataFrame, key: str, *, raw: tuple[str, ...] = ()) -> list[tuple[bytes, bytes]]:
    """(key, JSON value) per row."""
    if not df.height:
        return []
    return list(zip([k.encode() for k in df[key].to_list()], encode(df, raw=raw), strict=True))

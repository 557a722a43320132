"""Keyed event-time windows with a per-key watermark, computed on Polars frames (no per-row Python).

Each key (a site, a subscriber) has its own watermark: the largest event time seen for it.
A window ``[end - size, end)`` on the hop grid closes when the key's watermark reaches
``end + lateness``. A record is *too late* when every window it belongs to had already closed
when it arrived; it is returned separately (the flows quarantine it with reason ``too_late``).

The verdict for a record depends only on the records of its key that arrived before it, and
the content of a closed window only on those verdicts. So when a key's records arrive in the
same order (Kafka keeps order within a partition; producers key by site / subscriber), the
results do not depend on batch boundaries, worker count or restarts: a replay from a
checkpoint recomputes exactly the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl
import pyarrow as pa

NEG = -(2**62)
"""Watermark of a key never seen (microseconds)."""


def _us(delta: timedelta) -> int:
    return int(delta / timedelta(microseconds=1))


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry.

    Attributes:
        size: window length (1 minute for cell KPIs, 1 hour for fraud).
        hop: distance between window ends; ``size`` must be a multiple of it.
        lateness: how long after a window's end its records are still accepted.
    """

    size: timedelta
    hop: timedelta
    lateness: timedelta

    def __post_init__(self) -> None:
        if self.hop <= timedelta(0) or _us(self.size) % _us(self.hop):
            raise ValueError(f"window size {self.size} must be a positive multiple of hop {self.hop}")


@dataclass
class Added:
    """What one batch did.

    Attributes:
        late: records too late for every window they belong to, with ``watermark_at``.
        members: one row per (record, newly closed window it belongs to), window end in ``_end``.
    """

    late: pl.DataFrame
    members: pl.DataFrame


class KeyedWindows:
    """Open windows of many keys; holds only records of windows not yet closed."""

    def __init__(self, spec: WindowSpec, *, key: str, time: str) -> None:
        self.spec, self.key, self.time = spec, key, time
        self.size, self.hop, self.lateness = _us(spec.size), _us(spec.hop), _us(spec.lateness)
        self.events: pl.DataFrame | None = None  # stored records + _t, _open_after (µs)
        self.marks = pl.DataFrame(schema={key: pl.String, "_wm": pl.Int64})

    def add(self, df: pl.DataFrame, *, store: pl.Expr | None = None) -> Added:
        """Add records (in arrival order) and close the windows their watermarks pass.

        Args:
            df: records with the key and time columns.
            store: which records to keep for windows (all do move the watermark).
        """
        k, L = self.key, self.lateness
        df = df.with_columns(pl.col(self.time).dt.epoch("us").alias("_t"))
        df = df.join(self.marks, on=k, how="left", maintain_order="left")
        before = pl.max_horizontal(pl.col("_wm").fill_null(NEG), pl.col("_t").cum_max().shift(1).over(k).fill_null(NEG))
        df = df.with_columns((before - L).alias("_open_after"))
        last_end = (pl.col("_t") // self.hop) * self.hop + self.size
        too_late = last_end <= pl.col("_open_after")
        late = df.filter(too_late).with_columns(
            pl.when(pl.col("_open_after") > NEG).then(pl.col("_open_after") + L).otherwise(None)
            .cast(pl.Datetime("us", "UTC")).alias("watermark_at")
        ).drop("_wm", "_t", "_open_after")
        ok = df.filter(~too_late).drop("_wm")
        if store is not None:
            ok = ok.filter(store)

        batch_marks = df.group_by(k).agg(pl.col("_t").max().alias("_new"))
        marks = self.marks.join(batch_marks, on=k, how="full", coalesce=True)
        marks = marks.with_columns(pl.max_horizontal(pl.col("_wm").fill_null(NEG), "_new").alias("_new"))
        old_new = marks.select(k, (pl.col("_wm").fill_null(NEG) - L).alias("_ct_old"), (pl.col("_new") - L).alias("_ct_new"))
        self.marks = marks.select(k, pl.col("_new").alias("_wm"))

        if self.events is None:
            self.events = ok.clear()
        events = pl.concat([self.events, ok], how="vertical_relaxed") if ok.height else self.events
        members = self._closing(events, old_new)
        ct = events.join(old_new, on=k, how="left").get_column("_ct_new")
        keep = ((pl.col("_t") // self.hop) * self.hop + self.size) > ct
        self.events = events.filter(keep)
        return Added(late=late, members=members)

    def _closing(self, events: pl.DataFrame, old_new: pl.DataFrame) -> pl.DataFrame:
        changed = old_new.filter(pl.col("_ct_new") > pl.col("_ct_old"))
        if not changed.height or not events.height:
            return events.drop("_t", "_open_after").with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias("_end")).clear()
        steps = self.size // self.hop
        e = events.join(changed, on=self.key, how="inner")
        e = e.with_columns(pl.int_ranges(1, steps + 1).alias("_j")).explode("_j")
        e = e.with_columns(((pl.col("_t") // self.hop) * self.hop + pl.col("_j") * self.hop).alias("_e"))
        e = e.filter((pl.col("_e") > pl.col("_open_after")) & (pl.col("_e") > pl.col("_ct_old")) & (pl.col("_e") <= pl.col("_ct_new")))
        return e.with_columns(pl.col("_e").cast(pl.Datetime("us", "UTC")).alias("_end")).drop(
            "_t", "_open_after", "_ct_old", "_ct_new", "_j", "_e"
        )

    def snapshot(self) -> dict[str, pa.Table]:
        out = {"marks": self.marks.to_arrow()}
        if self.events is not None:
            out["events"] = self.events.to_arrow()
        return out

    def restore(self, parts: dict[str, pa.Table]) -> None:
        if "marks" in parts:
            self.marks = pl.from_arrow(parts["marks"])
        if "events" in parts:
            self.events = pl.from_arrow(parts["events"])

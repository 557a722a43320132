"""Alert lifecycle over consecutive closed windows: raised once, updated while it lasts, cleared once.

An :class:`Episodes` tracker follows one rule for many entities (cells, sites, subscribers).
An entity's streak grows with each consecutive window whose flag is set (the next window
must start at most ``max_gap`` after the previous one ended: KPI samples may be minutes
apart); the alert is raised when the streak reaches
``need`` windows, updated while the flag stays set, and cleared by the ``clear_after``-th
consecutive window without it (hysteresis against flapping) or by a gap. Only entities with
a flagged row or an open streak reach the Python loop; quiet ones cost one vectorised filter.

The gold table keeps one row per alert (its current state); the Kafka topic gets one message
per lifecycle event (``raised``, ``updated`` every ``update_every`` windows, ``cleared``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import polars as pl
import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("entity_id", pa.string()),
        ("site_id", pa.string()),
        ("status", pa.string()),  # open | cleared
        ("raised_at", TS),
        ("last_seen_at", TS),
        ("cleared_at", TS),
        ("windows", pa.int64()),
        ("peak_value", pa.float64()),
        ("last_value", pa.float64()),
    ]
)
ALERT_KEYS = ("alert_id",)
# Fields some rules add to their messages (not table columns): predicted_degradation's horizon and top features.
MESSAGE_EXTRAS = ("horizon_minutes", "top_features")
_ENC = msgspec.json.Encoder()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_table(rows: list[dict]) -> pa.Table:
    """Alert rows (dicts with ALERT_SCHEMA fields) as Arrow, last state per alert."""
    last = {r["alert_id"]: r for r in rows}
    return pa.Table.from_pylist([{f: r.get(f) for f in ALERT_SCHEMA.names} for r in last.values()], schema=ALERT_SCHEMA)


def alert_message(event: str, row: dict) -> tuple[bytes, bytes]:
    """(key, value) of a lifecycle event on the alerts topic; ``event_id`` is stable across replays."""
    body = {f: (_iso(v) if isinstance(v, datetime) else v) for f, v in row.items() if f in ALERT_SCHEMA.names or f in MESSAGE_EXTRAS}
    at = row["cleared_at"] if event == "cleared" else row["last_seen_at"]
    body.update(event=event, event_id=f"{row['alert_id']}:{event}:{_iso(at)}")
    return row["entity_id"].encode(), _ENC.encode(body)


class Episodes:
    """One rule's open streaks and alerts, per entity."""

    def __init__(self, rule: str, *, severity: str, need: int, update_every: int = 5, max_gap: timedelta = timedelta(0),
                 clear_after: int = 1) -> None:
        self.rule, self.severity, self.need, self.update_every = rule, severity, need, max(update_every, 1)
        self.max_gap, self.clear_after = max_gap, max(clear_after, 1)
        self.state: dict[str, dict] = {}

    def step(self, rows: pl.DataFrame) -> list[tuple[str, dict]]:
        """Feed closed windows: columns ``entity_id, site_id, start, end, flag, value``.

        Returns:
            (event, alert row) per lifecycle event, in window order per entity.
        """
        if not rows.height:
            return []
        rows = rows.sort("entity_id", "end")
        busy = rows.filter(pl.col("flag")).get_column("entity_id").unique().to_list()
        kept = rows.filter(pl.col("entity_id").is_in(busy + list(self.state)))
        events: list[tuple[str, dict]] = []
        for r in kept.iter_rows(named=True):
            e = r["entity_id"]
            st = self.state.get(e) or {"streak": 0, "quiet": 0, "last_end": None, "alert": None}
            if st["last_end"] is None or not timedelta(0) <= r["start"] - st["last_end"] <= self.max_gap:
                if st["alert"] is not None:  # a gap ends the episode where the data stopped
                    events.append(("cleared", dict(st["alert"], status="cleared", cleared_at=st["last_end"])))
                    st["alert"] = None
                st["streak"] = st["quiet"] = 0
            if r["flag"]:
                st["streak"] += 1
                st["quiet"] = 0
                value = r["value"]
                if st["alert"] is None and st["streak"] >= self.need:
                    st["alert"] = {
                        "alert_id": f"{self.rule}:{e}:{_iso(r['end'])}",
                        "rule": self.rule,
                        "severity": self.severity,
                        "entity_id": e,
                        "site_id": r["site_id"],
                        "status": "open",
                        "raised_at": r["end"],
                        "last_seen_at": r["end"],
                        "cleared_at": None,
                        "windows": st["streak"],
                        "peak_value": value,
                        "last_value": value,
                    }
                    events.append(("raised", dict(st["alert"])))
                elif st["alert"] is not None:
                    a = st["alert"]
                    peak = a["peak_value"] if value is None else max(a["peak_value"] or value, value)
                    a.update(last_seen_at=r["end"], windows=a["windows"] + 1, peak_value=peak, last_value=value)
                    events.append(("updated" if (a["windows"] - self.need) % self.update_every == 0 else "state", dict(a)))
            else:
                st["streak"] = 0
                if st["alert"] is not None:
                    st["quiet"] += 1
                    if st["quiet"] >= self.clear_after:
                        events.append(("cleared", dict(st["alert"], status="cleared", cleared_at=r["end"])))
                        st["alert"] = None
                        st["quiet"] = 0
            st["last_end"] = r["end"]
            if st["streak"] or st["alert"] is not None:
                self.state[e] = st
            else:
                self.state.pop(e, None)
        return events

    def snapshot(self) -> pa.Table:
        return dump_state(self.state)

    def restore(self, table: pa.Table) -> None:
        self.state = load_state(table)


def _enc(v):
    if isinstance(v, datetime):
        return {"$t": v.isoformat()}
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    return v


def _dec(v):
    if isinstance(v, dict):
        return datetime.fromisoformat(v["$t"]) if set(v) == {"$t"} else {k: _dec(x) for k, x in v.items()}
    return v


def dump_state(state: dict) -> pa.Table:
    """Small nested state (dicts, datetimes) as a one-cell table for the checkpoint."""
    return pa.table({"json": [json.dumps(_enc(state))]})


def load_state(table: pa.Table) -> dict:
    return _dec(json.loads(table["json"][0].as_py()))

"""Cell KPIs per minute on event time, and network alerts, from ``network.events``.

Steps: Kafka batches -> decode -> shard by ``site_id`` -> per-cell watermark and 1-minute
windows (:mod:`pipelines.streams.windows`) -> KPI rows, alarm bookkeeping and alert rules ->
MERGE into ``gold/network/cell_kpi_1m`` (key ``cell_id, window_start``) and
``gold/network/alerts`` (key ``alert_id``), lifecycle events to ``network.alerts``.

Exactly once: the MERGE keys make a recomputed window a no-op, and the shard checkpoints
(state + offsets in the Delta log, :mod:`pipelines.streams.state`) make the recomputation
identical. The watermark is per cell; producers key ``network.events`` by ``site_id``, so a
site's cells share a partition and arrive in order together, and shards are picked by
``site_id`` so a site's cells share one state for the site rule and the site features. A cell
first seen after its site's minutes were judged (a topic keyed otherwise, read partition by
partition) is counted as ``cells_late_for_site`` with one warning line.

The dataflow is ``dataflows/cell_kpi.py`` (``telcolake stream --only kpi``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import polars as pl
import pyarrow as pa

from pipelines.assurance.scoring import (
    PREDICTION_KEYS,
    PREDICTION_SCHEMA,
    PREDICTIONS_TABLE,
    Scorer,
    make_scorer,
)
from pipelines.core.config import Settings
from pipelines.core.contracts import NETWORK
from pipelines.streams.alerts import (
    ALERT_KEYS,
    ALERT_SCHEMA,
    Episodes,
    alert_message,
    alert_table,
    dump_state,
    load_state,
)
from pipelines.streams.config import ALERTS_TABLE, KPI_TABLE, StreamConfig, stream_config
from pipelines.streams.state import FlowSpec, Output, Result, too_late_rows
from pipelines.streams.windows import KeyedWindows, WindowSpec

TS = pa.timestamp("us", tz="UTC")
MINUTE = timedelta(minutes=1)
KPI_SCHEMA = pa.schema(
    [
        ("cell_id", pa.string()),
        ("site_id", pa.string()),
        ("window_start", TS),
        ("window_end", TS),
        ("call_attempts", pa.int64()),
        ("dropped_calls", pa.int64()),
        ("drop_rate", pa.float64()),
        ("latency_ms_mean", pa.float64()),
        ("prb_utilization_mean", pa.float64()),
        ("kpi_samples", pa.int64()),
        ("alarm_events", pa.int64()),
        ("active_alarms", pa.int64()),
    ]
)
KPI_KEYS = ("cell_id", "window_start")
log = logging.getLogger("telcolake.streams")


def kpi_rows(members: pl.DataFrame) -> pl.DataFrame:
    """One row per (cell, closed minute) from the records of the windows that closed.

    The means add their samples in one fixed order (observed time, then event id), not in
    arrival order: a float sum depends on its order, and a recomputed window must be the same.
    """
    is_kpi = pl.col("kind") == "kpi"
    members = members.sort("cell_id", "_end", "observed_at", "event_id")
    k = members.group_by("cell_id", "site_id", "_end", maintain_order=True).agg(
        pl.col("call_attempts").filter(is_kpi).sum().alias("call_attempts"),
        pl.col("dropped_calls").filter(is_kpi).sum().alias("dropped_calls"),
        pl.col("latency_ms").filter(is_kpi).mean().alias("latency_ms_mean"),
        pl.col("prb_utilization").filter(is_kpi).mean().alias("prb_utilization_mean"),
        is_kpi.sum().cast(pl.Int64).alias("kpi_samples"),
        (pl.col("kind") == "alarm").sum().cast(pl.Int64).alias("alarm_events"),
    )
    rate = pl.when(pl.col("call_attempts") > 0).then(pl.col("dropped_calls") / pl.col("call_attempts"))
    return k.with_columns(
        (pl.col("_end") - pl.duration(minutes=1)).alias("window_start"),
        pl.col("_end").alias("window_end"),
        rate.otherwise(None).alias("drop_rate"),
    ).sort("cell_id", "window_start")


class KpiLogic:
    """One shard's sites: per-cell windows, active alarms and the three alert rules."""

    def __init__(self, cfg: StreamConfig, topic: str) -> None:
        a = cfg.alerts
        self.cfg, self.topic = cfg, topic
        self.windows = KeyedWindows(WindowSpec(MINUTE, MINUTE, cfg.kpi_lateness), key="cell_id", time="observed_at")
        gap = timedelta(minutes=a.window_gap_minutes)
        self.drop = Episodes("drop_rate", severity="major", need=a.consecutive_windows, update_every=a.update_every_windows, max_gap=gap)
        self.site = Episodes("site_degraded", severity="critical", need=a.site_consecutive_windows, update_every=a.update_every_windows, max_gap=gap)
        self.alarms: dict[str, dict] = {}  # cell -> code -> {severity, raised_at, alert}
        self.cells = pl.DataFrame(schema={"cell_id": pl.String, "site_id": pl.String})  # every cell seen, and its site
        self.pending = pl.DataFrame(schema={"site_id": pl.String, "_end": pl.Datetime("us", "UTC"), "flag": pl.Boolean})
        self.spec: FlowSpec | None = None
        self.scorer: Scorer | None = None  # predicted_degradation alerts (pipelines/assurance), when a model is trained

    def process(self, df: pl.DataFrame) -> Result:
        seen = df.select("cell_id", "site_id").unique(subset=["cell_id"], keep="first", maintain_order=True)
        new = seen.join(self.cells, on="cell_id", how="anti")
        late_cells = self._late_for_site(df, new) if new.height and self.cells.height else 0
        added = self.windows.add(df)
        result = Result(counts={"events": df.height, "too_late": added.late.height})
        if late_cells:
            result.counts["cells_late_for_site"] = late_cells
        if added.late.height:
            result.rows["quarantine"] = too_late_rows(self.spec, self.topic, added.late, event_id="event_id", time="observed_at", entity="cell_id")
        self.cells = pl.concat([self.cells, new])
        events: list[tuple[str, dict]] = []
        prior = self._open_alerts() if self.scorer is not None else []
        kpi = None
        if added.members.height:
            kpi = kpi_rows(added.members)
            active = self._alarms(added.members, kpi, events)
            kpi = kpi.join(active, on=["cell_id", "_end"], how="left").with_columns(pl.col("active_alarms").fill_null(0).cast(pl.Int64),
                                                                                   pl.col("critical_alarms").fill_null(0).cast(pl.Int64))
            a = self.cfg.alerts
            flag = (pl.col("call_attempts") >= a.min_attempts) & (pl.col("drop_rate").fill_null(0) > a.drop_rate_above)
            kpi = kpi.with_columns(flag.alias("flag"))
            cells = kpi.select(pl.col("cell_id").alias("entity_id"), "site_id", pl.col("window_start").alias("start"),
                               pl.col("_end").alias("end"), "flag", pl.col("drop_rate").alias("value"))
            events += self.drop.step(cells)
            self.pending = pl.concat([self.pending, kpi.select("site_id", "_end", "flag")])
            result.rows["kpi"] = kpi.select(KPI_SCHEMA.names).to_arrow()
            result.counts["kpi_rows"] = kpi.height
        events += self.site.step(self._ready_sites(self._site_ready(self.cfg.alerts.site_cell_timeout_minutes)))
        if self.scorer is not None:
            events += self._predict(kpi, prior, events, self._site_ready(self.scorer.cfg.site_wait_minutes), result)
        if events:
            result.rows["alerts"] = alert_table([row for _, row in events])
            result.messages = [alert_message(ev, row) for ev, row in events if ev != "state"]
            result.counts["alerts_raised"] = sum(ev == "raised" for ev, _ in events)
            result.counts["alerts_cleared"] = sum(ev == "cleared" for ev, _ in events)
        return result

    def _site_ready(self, timeout_minutes: float) -> pl.DataFrame:
        """``site_id, ready``: every cell of the site less than ``timeout_minutes`` behind its most advanced one closed its minutes up to ``ready``."""
        lateness = int(self.cfg.kpi_lateness / timedelta(microseconds=1))
        timeout = int(timedelta(minutes=timeout_minutes) / timedelta(microseconds=1))
        ct = self.cells.join(self.windows.marks, on="cell_id", how="inner").with_columns((pl.col("_wm") - lateness).alias("ct"))
        ct = ct.with_columns(pl.col("ct").max().over("site_id").alias("lead"))
        ready = ct.filter(pl.col("ct") >= pl.col("lead") - timeout).group_by("site_id").agg(pl.col("ct").min().alias("ready"))
        return ready.with_columns(pl.col("ready").cast(pl.Datetime("us", "UTC")))

    def _late_for_site(self, df: pl.DataFrame, new: pl.DataFrame) -> int:
        """New cells whose first minute their site has already judged without them (one warning line)."""
        first = df.join(new, on="cell_id", how="semi").group_by("cell_id", "site_id").agg(
            (pl.col("observed_at").min().dt.truncate("1m") + pl.duration(minutes=1)).alias("_end"))
        ready = self._site_ready(self.cfg.alerts.site_cell_timeout_minutes)
        late = first.join(ready, on="site_id", how="inner").filter(pl.col("_end") <= pl.col("ready"))
        if late.height:
            log.warning("%d new cell(s) (%s) arrived after their site's minutes up to %s were judged without them: the site rule "
                        "and site features of those minutes left them out; key network.events by site_id", late.height,
                        ", ".join(late["cell_id"].head(3).to_list()), late["ready"].max().isoformat())
        return late.height

    def _ready_sites(self, ready: pl.DataFrame) -> pl.DataFrame:
        """Site minutes every (live) cell of the site has closed: judged once, then forgotten."""
        a = self.cfg.alerts
        pending = self.pending.join(ready, on="site_id", how="left")
        done = pending.filter(pl.col("_end") <= pl.col("ready"))
        self.pending = pending.filter(pl.col("ready").is_null() | (pl.col("_end") > pl.col("ready"))).drop("ready")
        sites = done.group_by("site_id", "_end").agg(pl.len().alias("n"), pl.col("flag").sum().alias("bad"))
        return sites.select(
            pl.col("site_id").alias("entity_id"), "site_id", (pl.col("_end") - pl.duration(minutes=1)).alias("start"),
            pl.col("_end").alias("end"),
            ((pl.col("bad") >= a.site_min_cells) & (pl.col("bad") / pl.col("n") >= a.site_degraded_fraction)).alias("flag"),
            (pl.col("bad") / pl.col("n")).cast(pl.Float64).alias("value"),
        )

    def _open_alerts(self) -> list[dict]:
        """The cell alerts open before this batch (drop-rate and uncleared alarms): what the prediction step knows of incidents."""
        out = [dict(st["alert"]) for st in self.drop.state.values() if st.get("alert") is not None]
        out += [dict(a["alert"]) for codes in self.alarms.values() for a in codes.values() if a.get("alert") is not None]
        return out

    def _predict(self, kpi: pl.DataFrame | None, prior: list[dict], events: list, ready: pl.DataFrame, result: Result) -> list:
        """Score the windows the batch closed (see :mod:`pipelines.assurance.scoring`); its alerts join the flow's."""
        rows = {r["alert_id"]: r for r in prior}
        rows.update({r["alert_id"]: r for _, r in events if r["rule"] in ("drop_rate", "alarm_uncleared")})
        alerts = pl.DataFrame([{k: r[k] for k in ("alert_id", "rule", "entity_id", "raised_at", "cleared_at")} for r in rows.values()],
                              schema={"alert_id": pl.String, "rule": pl.String, "entity_id": pl.String,
                                      "raised_at": pl.Datetime("us", "UTC"), "cleared_at": pl.Datetime("us", "UTC")})
        empty = pl.DataFrame(schema={**dict(pl.from_arrow(KPI_SCHEMA.empty_table()).schema), "_end": pl.Datetime("us", "UTC"),
                                     "critical_alarms": pl.Int64})
        kpi = empty if kpi is None else kpi.select(*KPI_SCHEMA.names, "_end", "critical_alarms")
        new, predictions, counts = self.scorer.step(kpi, alerts, ready)
        for k, v in counts.items():
            result.counts[k] = result.counts.get(k, 0) + v
        if predictions is not None:
            result.rows["predictions"] = predictions
        return new

    def _alarms(self, members: pl.DataFrame, kpi: pl.DataFrame, events: list) -> pl.DataFrame:
        """Apply alarm raises/clears in event-time order; active count per (cell, minute); uncleared-critical rule."""
        alarms = members.filter(pl.col("kind") == "alarm").sort("cell_id", "observed_at", "event_id")
        cells = set(self.alarms) | set(alarms["cell_id"].to_list())
        out: dict[str, list] = {"cell_id": [], "_end": [], "active_alarms": [], "critical_alarms": []}
        schema = {"cell_id": pl.String, "_end": pl.Datetime("us", "UTC"), "active_alarms": pl.Int64, "critical_alarms": pl.Int64}
        if not cells:
            return pl.DataFrame(out, schema=schema)
        by_window: dict[tuple, list[dict]] = {}
        for r in alarms.iter_rows(named=True):
            by_window.setdefault((r["cell_id"], r["_end"]), []).append(r)
        limit = timedelta(minutes=self.cfg.alerts.critical_alarm_minutes)
        every = self.cfg.alerts.update_every_windows
        windows = kpi.filter(pl.col("cell_id").is_in(list(cells))).select("cell_id", "site_id", "_end")
        for cell, site, end in windows.iter_rows():
            active = self.alarms.setdefault(cell, {})
            for r in by_window.get((cell, end), []):
                code = r["code"] or "unknown"
                if not r["cleared"]:
                    active.setdefault(code, {"severity": r["severity"], "raised_at": r["observed_at"], "alert": None})
                elif code in active:
                    alert = active.pop(code)["alert"]
                    if alert is not None:
                        events.append(("cleared", dict(alert, status="cleared", cleared_at=r["observed_at"])))
            for code, a in active.items():
                age = end - a["raised_at"]
                if a["severity"] != "critical" or age < limit:
                    continue
                minutes = age / MINUTE
                if a["alert"] is None:
                    a["alert"] = {"alert_id": f"alarm_uncleared:{cell}:{code}:{a['raised_at'].isoformat()}", "rule": "alarm_uncleared",
                                  "severity": "critical", "entity_id": cell, "site_id": site, "status": "open", "raised_at": end,
                                  "last_seen_at": end, "cleared_at": None, "windows": 1, "peak_value": minutes, "last_value": minutes}
                    events.append(("raised", dict(a["alert"])))
                else:
                    a["alert"].update(last_seen_at=end, windows=a["alert"]["windows"] + 1, peak_value=minutes, last_value=minutes)
                    events.append(("updated" if (a["alert"]["windows"] - 1) % every == 0 else "state", dict(a["alert"])))
            out["cell_id"].append(cell)
            out["_end"].append(end)
            out["active_alarms"].append(len(active))
            out["critical_alarms"].append(sum(a["severity"] == "critical" for a in active.values()))
            if not active:
                self.alarms.pop(cell, None)
        return pl.DataFrame(out, schema=schema)

    def snapshot(self) -> dict[str, pa.Table]:
        out = {f"w_{k}": v for k, v in self.windows.snapshot().items()}
        out.update(drop=self.drop.snapshot(), site=self.site.snapshot(), alarms=dump_state(self.alarms),
                   cells=self.cells.to_arrow(), pending=self.pending.to_arrow())
        if self.scorer is not None:
            out.update(self.scorer.snapshot())
        return out

    def restore(self, parts: dict[str, pa.Table]) -> None:
        self.windows.restore({k[2:]: v for k, v in parts.items() if k.startswith("w_")})
        self.drop.restore(parts["drop"])
        self.site.restore(parts["site"])
        self.alarms = load_state(parts["alarms"])
        self.cells = pl.from_arrow(parts["cells"])
        self.pending = pl.from_arrow(parts["pending"])
        if self.scorer is not None:
            self.scorer.restore(parts)


def spec(settings: Settings) -> FlowSpec:
    """The KPI flow's spec for ``settings``."""
    cfg = stream_config(settings)
    topic = settings.topic(NETWORK.topic)
    scorer = make_scorer(settings, cfg.alerts)

    def make() -> KpiLogic:
        logic = KpiLogic(cfg, topic)
        logic.spec = flow_spec
        logic.scorer = scorer.fresh() if scorer is not None else None
        return logic

    outputs = {"kpi": Output(KPI_TABLE, KPI_SCHEMA, KPI_KEYS), "alerts": Output(ALERTS_TABLE, ALERT_SCHEMA, ALERT_KEYS)}
    if scorer is not None:
        outputs["predictions"] = Output(PREDICTIONS_TABLE, PREDICTION_SCHEMA, PREDICTION_KEYS)

    flow_spec = FlowSpec(
        name="kpi",
        contract=NETWORK,
        key="site_id",
        shards=cfg.streams.shards,
        outputs=outputs,
        make_logic=make,
        alerts_topic="network.alerts",
    )
    return flow_spec


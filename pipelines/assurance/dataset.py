"""Training and evaluation rows from the lake: closed KPI windows, what was known at each, and the label.

From ``gold/network/cell_kpi_1m`` (one row per cell and closed minute) and ``gold/network/alerts``:

- ``flag``: the window is over the drop-rate rule (``[alerts]`` ``drop_rate_above`` with at
  least ``min_attempts``), as the KPI flow judges it;
- ``drop_open``: a ``drop_rate`` alert of the cell was raised at or before the window's end and
  not cleared before it;
- ``critical``: critical alarms active at the window's end. The stream counts them as it applies
  the alarms (``critical_alarms``); from the lake they are the ``alarm_uncleared`` alerts, from
  the alarm's raise time (in the alert's id) to its clear — the same windows for every critical
  alarm that lasts ``critical_alarm_minutes`` (a shorter one never becomes an alert, so training
  does not see it);
- incident onsets: a ``drop_rate`` alert's ``raised_at`` and a critical alarm's raise time (the
  ``alarm_uncleared`` alert's id carries it); the label of a window is "an onset of its cell
  within the next ``horizon_hours``".

Everything a window's features use is known at its end (tested: the features of a window do not
change when later rows are cut off); only the label looks ahead.
"""

from __future__ import annotations

import polars as pl

from pipelines.assurance.features import INPUT, TS
from pipelines.core.config import Settings
from pipelines.core.errors import PredictError
from pipelines.core.lake import Lake
from pipelines.streams.config import ALERTS_TABLE, KPI_TABLE, AlertRules, stream_config

FAR = pl.datetime(9999, 1, 1, time_zone="UTC")


def load_history(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(closed windows with :data:`~pipelines.assurance.features.INPUT` columns, incident onsets ``cell_id, onset_at``).

    Raises:
        PredictError: no KPI history in the lake.
    """
    lake = Lake.from_settings(settings)
    if not lake.exists(KPI_TABLE):
        raise PredictError(f"{KPI_TABLE} does not exist: run the KPI flow (`telcolake stream --only kpi`) or the demo first")
    kpi = pl.from_arrow(lake.read(KPI_TABLE))
    alerts = pl.from_arrow(lake.read(ALERTS_TABLE)) if lake.exists(ALERTS_TABLE) else pl.DataFrame(schema={
        "alert_id": pl.String, "rule": pl.String, "entity_id": pl.String, "raised_at": TS, "cleared_at": TS})
    return windows(stream_config(settings).alerts, kpi, alerts), onsets(alerts)


def _intervals(alerts: pl.DataFrame, *, alarm_time: bool) -> pl.DataFrame:
    """``cell_id, kind, from_at, to_at``: drop-rate and uncleared-alarm alerts open (from the alarm's raise when ``alarm_time``)."""
    drop = alerts.filter(pl.col("rule") == "drop_rate").select(
        pl.col("entity_id").alias("cell_id"), pl.lit("drop").alias("kind"), pl.col("raised_at").alias("from_at"),
        pl.col("cleared_at").fill_null(FAR).alias("to_at"))
    critical = alerts.filter(pl.col("rule") == "alarm_uncleared").select(
        pl.col("entity_id").alias("cell_id"), pl.lit("critical").alias("kind"),
        (pl.col("alert_id").str.split(":").list.slice(3).list.join(":").str.to_datetime(time_zone="UTC", time_unit="us") if alarm_time
         else pl.col("raised_at")).alias("from_at"),
        pl.col("cleared_at").fill_null(FAR).alias("to_at"))
    return pl.concat([drop, critical]).with_columns(pl.col("from_at").cast(TS), pl.col("to_at").cast(TS))


def onsets(alerts: pl.DataFrame) -> pl.DataFrame:
    """Incident onsets per cell (``cell_id, onset_at``), sorted."""
    return _intervals(alerts, alarm_time=True).select("cell_id", pl.col("from_at").alias("onset_at")).unique().sort("cell_id", "onset_at")


def windows(a: AlertRules, kpi: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """The KPI rows (``cell_kpi_1m`` columns, and the stream's ``critical_alarms``) as :data:`~pipelines.assurance.features.INPUT`."""
    rows = kpi.with_columns(
        pl.col("window_end").alias("_end"),
        ((pl.col("call_attempts") >= a.min_attempts) & (pl.col("drop_rate").fill_null(0) > a.drop_rate_above)).alias("flag"),
    ).sort("cell_id", "_end")
    spans = _intervals(alerts, alarm_time=True)
    known = "critical_alarms" in rows.columns  # the stream's own count
    if known:
        rows = rows.with_columns(pl.col("critical_alarms").alias("critical"))
    for kind, col in (("drop", "drop_open"), ("critical", "critical"))[: 1 if known else 2]:
        iv = spans.filter(pl.col("kind") == kind).sort("from_at")
        # a cell's intervals of one kind do not overlap: the last one started at or before the end decides
        hit = rows.select("cell_id", "_end").sort("_end").join_asof(iv.select("cell_id", "from_at", "to_at"), left_on="_end",
                                                                     right_on="from_at", by="cell_id", strategy="backward",
                                                                     check_sortedness=False)
        hit = hit.select("cell_id", "_end", (pl.col("to_at").is_not_null() & (pl.col("to_at") >= pl.col("_end"))).alias(col))
        rows = rows.join(hit, on=["cell_id", "_end"], how="left")
    rows = rows.with_columns(pl.col("critical").cast(pl.Int64))
    return rows.select([pl.col(c).cast(t) for c, t in INPUT.items()]).sort("cell_id", "_end")


def label(rows: pl.DataFrame, onset: pl.DataFrame, horizon_minutes: int) -> pl.Series:
    """``incident_within_h``: an onset of the row's cell in (window end, window end + horizon]."""
    nxt = rows.select("cell_id", "_end", pl.int_range(pl.len()).alias("_i")).sort("_end").join_asof(
        onset.sort("onset_at"), left_on="_end", right_on="onset_at", by="cell_id", strategy="forward", allow_exact_matches=False,
        check_sortedness=False)
    y = nxt.sort("_i").select(pl.col("onset_at").is_not_null()
                              & (pl.col("onset_at") - pl.col("_end") <= pl.duration(minutes=horizon_minutes)))
    return y.to_series().alias("incident_within_h")

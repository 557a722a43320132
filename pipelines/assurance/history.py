"""KPI history without Kafka: the simulator's network events through the KPI flow's own logic into the lake.

Months of ``gold/network/cell_kpi_1m`` and ``gold/network/alerts`` to learn from and to evaluate
on, in minutes instead of a stream replay: the same :class:`~pipelines.streams.kpi.KpiLogic` the
KPI flow runs (windows, alarms, alert rules), fed one arrival day at a time in arrival order, so
the rows are the ones the flow would write for that input. It writes into a lake that holds
neither table yet (a replay is a fresh history, not an update of a live one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.contracts import NETWORK, decode_batch
from pipelines.core.errors import PredictError
from pipelines.core.lake import Lake
from pipelines.simulate import SimConfig, SimResult, planted_summary, simulate_days
from pipelines.streams.alerts import ALERT_SCHEMA
from pipelines.streams.kpi import ALERTS_TABLE, KPI_SCHEMA, KPI_TABLE, spec


@dataclass
class Replayed:
    """What a replay wrote: counts, and the simulator's planted summary (incidents, precursors, drifts)."""

    days: int
    events: int
    rejected: int
    too_late: int
    kpi_rows: int
    alerts: int
    planted: dict


def network_frames(days: Iterable[SimResult], counter: dict[str, int] | None = None) -> Iterator[pl.DataFrame]:
    """Each arrival day's network events, decoded as the KPI flow gets them (partition 0, offset = position in the input).

    ``counter`` (``events``, ``rejected``) is updated as the days go.
    """
    counter = counter if counter is not None else {"events": 0, "rejected": 0}
    for day in days:
        values = day.values.get("network.events", [])
        if not values:
            continue
        now = datetime.fromtimestamp(max(day.timestamps["network.events"]) / 1000, UTC) + timedelta(hours=1)
        decoded = decode_batch(NETWORK, values, now=now)
        first = counter["events"] + counter["rejected"]
        counter["rejected"] += len(values) - decoded.table.num_rows
        counter["events"] += decoded.table.num_rows
        yield pl.from_arrow(decoded.table).with_columns(pl.lit(0, pl.Int32).alias("_kafka_partition"),
                                                        (pl.int_range(pl.len(), dtype=pl.Int64) + first).alias("_kafka_offset"))


def replay_network(settings: Settings, cfg: SimConfig, *, progress: Callable[[int], None] | None = None) -> Replayed:
    """Simulate ``cfg``'s window and write its KPI windows and alerts to the lake.

    Raises:
        PredictError: the lake already holds ``gold/network/cell_kpi_1m`` or ``gold/network/alerts``.
    """
    lake = Lake.from_settings(settings)
    for name in (KPI_TABLE, ALERTS_TABLE):
        if lake.exists(name):
            raise PredictError(f"{name} already exists in {lake.root}: a replay writes a fresh history; use an empty lake")
    # the KPI flow's logic without its prediction step: a replay builds the history models learn from
    quiet = replace(settings, raw=dict(settings.raw, predict={**settings.section("predict"), "enabled": False}))
    logic = spec(quiet).make_logic()
    alerts: dict[str, dict] = {}
    rejected = too_late = kpi_rows = days = 0
    counter = {"events": 0, "rejected": 0}
    with simulate_days(cfg) as sim:
        planted = planted_summary(sim)
        for frame in network_frames(sim, counter):
            result = logic.process(frame)
            days += 1
            too_late += result.counts.get("too_late", 0)
            if "kpi" in result.rows and result.rows["kpi"].num_rows:
                lake.write(KPI_TABLE, result.rows["kpi"].cast(KPI_SCHEMA))
                kpi_rows += result.rows["kpi"].num_rows
            if "alerts" in result.rows:
                alerts.update({r["alert_id"]: r for r in result.rows["alerts"].to_pylist()})
            if progress is not None:
                progress(1)
    events, rejected = counter["events"], counter["rejected"]
    lake.write(ALERTS_TABLE, pa.Table.from_pylist(list(alerts.values()), schema=ALERT_SCHEMA))
    return Replayed(days=days, events=events, rejected=rejected, too_late=too_late, kpi_rows=kpi_rows, alerts=len(alerts), planted=planted)

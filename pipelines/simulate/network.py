"""Simulator: cell KPI samples and alarms (network.events), with planted incidents."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.simulate.usage import SHAPE, WEEKDAY
from pipelines.simulate.world import Clock, Population, ids

HOUR = 3600
INCIDENT_CODES = ("RADIO_UNIT_FAULT", "S1_LINK_DOWN", "HIGH_VSWR")
BACKGROUND_ALARMS = (("HIGH_TEMPERATURE", "minor"), ("POWER_SUPPLY_WARNING", "warning"), ("LICENSE_LIMIT", "warning"),
                     ("BACKHAUL_DEGRADED", "major"))
DROP_P, INCIDENT_DROP_P = 0.008, 0.3


def pick_incidents(rng: np.random.Generator, pop: Population, clock: Clock) -> list[tuple[int, int, int]]:
    """A few busy cells that degrade for a few hours: (cell index, start s, end s)."""
    n = max(1, round(clock.days * 0.5))
    busy, weight = np.unique(pop.home_cell, return_counts=True)
    cells = rng.choice(busy, size=min(n, len(busy)), replace=False, p=weight / weight.sum())
    window = clock.days * 86400
    out = []
    for c in cells:
        length = int(rng.integers(2 * HOUR, 6 * HOUR))
        t0 = clock.start_s + int(rng.integers(HOUR, max(HOUR + 1, window - length - HOUR))) // 60 * 60
        out.append((int(c), t0, t0 + length))
    return sorted(out, key=lambda x: x[1])


@dataclass
class KpiArrays:
    """The KPI counters of every cell and interval of the window, (cell, interval) arrays kept small.

    ``prb10`` and ``latency10`` hold the values times ten: both are rounded to one decimal, and
    ``prb10 / 10.0`` is exactly the rounded float.
    """

    start_s: int
    interval_s: int
    attempts: np.ndarray
    dropped: np.ndarray
    prb10: np.ndarray
    latency10: np.ndarray

    @property
    def n_int(self) -> int:
        return self.attempts.shape[1]


def intervals(clock: Clock, interval_s: int) -> int:
    return clock.days * 86400 // interval_s


def call_counts(voice: np.ndarray, cell: np.ndarray, t: np.ndarray, dropped: np.ndarray, clock: Clock, interval_s: int,
                n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The simulated subscribers' voice calls and drops per (cell, interval), flat (cell-major)."""
    n_int = intervals(clock, interval_s)
    on_cell = voice & (cell >= 0)
    b = ((t[on_cell] - clock.start_s) // interval_s).clip(0, n_int - 1)
    at = cell[on_cell] * n_int + b
    calls = np.bincount(at, minlength=n_cells * n_int)
    drops = np.bincount(at[dropped[on_cell]], minlength=n_cells * n_int)
    return calls, drops


def kpi_arrays(rng: np.random.Generator, clock: Clock, n_cells: int, sim_calls: np.ndarray, sim_drops: np.ndarray,
               incidents: list[tuple[int, int, int]], interval_s: int, *, chunk: int = 8) -> KpiArrays:
    """KPI counters for every cell every ``interval_s``, drawn ``chunk`` cells at a time.

    Call attempts include the simulated subscribers' calls on the cell (``sim_calls``; the rest of
    the cell's traffic is background), so KPIs and usage agree during incidents.
    """
    n_int = intervals(clock, interval_s)
    bucket_t = clock.start_s + interval_s * np.arange(n_int)
    lh, wd = clock.local()
    hour = (bucket_t - clock.start_s) // HOUR
    voice_shape = SHAPE[0, lh[hour]] * WEEKDAY[0, wd[hour]]
    data_shape = SHAPE[2, lh[hour]] * WEEKDAY[2, wd[hour]]
    scale = interval_s / 300
    in_incident = np.zeros((n_cells, n_int), bool)
    for cell, t0, t1 in incidents:
        in_incident[cell] |= (bucket_t + interval_s > t0) & (bucket_t < t1)
    blocks = [slice(lo, min(n_cells, lo + chunk)) for lo in range(0, n_cells, chunk)]

    attempts = np.empty((n_cells, n_int), np.int32)  # background first
    rate = rng.uniform(15, 60, n_cells)
    for c in blocks:
        attempts[c] = rng.poisson(rate[c, None] * voice_shape[None, :] * scale)
    dropped = np.empty((n_cells, n_int), np.int32)
    for c in blocks:
        dropped[c] = rng.binomial(attempts[c], np.where(in_incident[c], INCIDENT_DROP_P, DROP_P))
    attempts += sim_calls.reshape(n_cells, n_int).astype(np.int32)
    dropped += sim_drops.reshape(n_cells, n_int).astype(np.int32)
    load = rng.uniform(0.25, 0.62, n_cells)
    prb10 = np.empty((n_cells, n_int), np.int16)
    for c in blocks:
        prb = np.clip(100 * (load[c, None] * data_shape[None, :]) * (1 + rng.normal(0, 0.08, (c.stop - c.start, n_int))), 0.5, 99.5)
        prb10[c] = np.rint(prb * 10)
    latency10 = np.empty((n_cells, n_int), np.int32)
    for c in blocks:
        latency = 15 + 35 * (prb10[c] / 10.0 / 100) ** 3 + rng.gamma(2.0, 2.0, (c.stop - c.start, n_int))
        latency10[c] = np.rint(np.where(in_incident[c], latency * 4 + 80, latency) * 10)
    return KpiArrays(start_s=clock.start_s, interval_s=interval_s, attempts=attempts, dropped=dropped, prb10=prb10, latency10=latency10)


def network_rows(k: KpiArrays, alarms: pl.DataFrame, cells: pl.DataFrame, tag: str, lo: int, hi: int, first: int) -> pl.DataFrame:
    """KPI samples of intervals ``lo``..``hi`` (all cells) and the alarms raised or cleared then, in observed-time order.

    ``first`` is the number of the first row (its position in the window's order).
    """
    n_cells, n = k.attempts.shape[0], hi - lo
    bucket_t = k.start_s + k.interval_s * np.arange(lo, hi)
    total = n_cells * n
    kpi = pl.DataFrame(
        {
            "cell": np.repeat(np.arange(n_cells), n),
            "observed_at": np.tile(bucket_t, n_cells),
            "kind": pl.repeat("kpi", total, eager=True),
            "call_attempts": k.attempts[:, lo:hi].ravel().astype(np.int64),
            "dropped_calls": k.dropped[:, lo:hi].ravel().astype(np.int64),
            "prb_utilization": k.prb10[:, lo:hi].ravel() / 10.0,
            "latency_ms": k.latency10[:, lo:hi].ravel() / 10.0,
            "severity": pl.repeat(None, total, dtype=pl.String, eager=True),
            "code": pl.repeat(None, total, dtype=pl.String, eager=True),
            "cleared": pl.repeat(None, total, dtype=pl.Boolean, eager=True),
            "_end": np.tile(bucket_t + k.interval_s, n_cells),
        }
    )
    t0, t1 = k.start_s + lo * k.interval_s, k.start_s + hi * k.interval_s
    raised = alarms.filter(pl.col("observed_at").is_between(t0, t1, closed="left"))
    frame = pl.concat([kpi, raised], how="vertical_relaxed").sort("observed_at", "cell", maintain_order=True)
    return frame.select(
        ids(f"N{tag}", np.arange(first, first + frame.height), 9).alias("event_id"),
        cells["cell_id"].gather(frame["cell"]).alias("cell_id"),
        cells["site_id"].gather(frame["cell"]).alias("site_id"),
        pl.exclude("cell", "_end"),
        "_end",
    )


def make_network(rng: np.random.Generator, clock: Clock, cells: pl.DataFrame, usage: pl.DataFrame,
                 incidents: list[tuple[int, int, int]], interval_s: int, tag: str) -> pl.DataFrame:
    """KPI samples for every cell every ``interval_s`` plus alarms, in observed-time order."""
    n_cells = cells.height
    calls, drops = call_counts(usage["_is_voice"].to_numpy(), usage["_cell"].to_numpy(), usage["started_at"].to_numpy(),
                               usage["is_dropped"].fill_null(False).to_numpy(), clock, interval_s, n_cells)
    k = kpi_arrays(rng, clock, n_cells, calls, drops, incidents, interval_s)
    return network_rows(k, alarms(rng, clock, n_cells, incidents), cells, tag, 0, k.n_int, 0)


def alarms(rng: np.random.Generator, clock: Clock, n_cells: int, incidents: list[tuple[int, int, int]]) -> pl.DataFrame:
    """Critical alarms raised and cleared around each incident, plus background alarms."""
    cell, t, severity, code, cleared = [], [], [], [], []
    for c, t0, t1 in incidents:
        alarm = INCIDENT_CODES[int(rng.integers(0, len(INCIDENT_CODES)))]
        raised_at, cleared_at = t0 + int(rng.integers(30, 180)), t1 + int(rng.integers(60, 600))
        cell += [c, c]
        t += [raised_at, cleared_at]
        severity += ["critical", "critical"]
        code += [alarm, alarm]
        cleared += [False, True]
    k = rng.binomial(clock.days, 0.06, n_cells)
    bc = np.repeat(np.arange(n_cells), k)
    bt = clock.start_s + rng.integers(0, clock.days * 86400, len(bc))
    which = rng.integers(0, len(BACKGROUND_ALARMS), len(bc))
    bclear = bt + rng.integers(600, 3 * HOUR, len(bc))
    for ci, ti, wi, ei in zip(bc.tolist(), bt.tolist(), which.tolist(), bclear.tolist(), strict=True):
        name, sev = BACKGROUND_ALARMS[wi]
        cell.append(ci)
        t.append(ti)
        severity.append(sev)
        code.append(name)
        cleared.append(False)
        if ei < clock.end_s:
            cell.append(ci)
            t.append(ei)
            severity.append(sev)
            code.append(name)
            cleared.append(True)
    n = len(cell)
    return pl.DataFrame(
        {
            "cell": pl.Series(cell, dtype=pl.Int64),
            "observed_at": pl.Series(t, dtype=pl.Int64),
            "kind": pl.repeat("alarm", n, eager=True),
            "call_attempts": pl.repeat(None, n, dtype=pl.Int64, eager=True),
            "dropped_calls": pl.repeat(None, n, dtype=pl.Int64, eager=True),
            "prb_utilization": pl.repeat(None, n, dtype=pl.Float64, eager=True),
            "latency_ms": pl.repeat(None, n, dtype=pl.Float64, eager=True),
            "severity": pl.Series(severity, dtype=pl.String),
            "code": pl.Series(code, dtype=pl.String),
            "cleared": pl.Series(cleared, dtype=pl.Boolean),
            "_end": pl.Series(t, dtype=pl.Int64),
        }
    )

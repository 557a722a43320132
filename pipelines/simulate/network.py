"""Simulator: cell KPI samples and alarms (network.events), with planted incidents."""

from __future__ import annotations

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


def make_network(rng: np.random.Generator, clock: Clock, cells: pl.DataFrame, usage: pl.DataFrame,
                 incidents: list[tuple[int, int, int]], interval_s: int, tag: str) -> pl.DataFrame:
    """KPI samples for every cell every ``interval_s`` plus alarms, in observed-time order.

    Call attempts include the simulated subscribers' calls on the cell (the rest of the
    cell's traffic is background), so KPIs and usage agree during incidents.
    """
    n_cells = cells.height
    n_int = clock.days * 86400 // interval_s
    bucket_t = clock.start_s + interval_s * np.arange(n_int)
    lh, wd = clock.local()
    hour = (bucket_t - clock.start_s) // HOUR
    voice_shape = SHAPE[0, lh[hour]] * WEEKDAY[0, wd[hour]]
    data_shape = SHAPE[2, lh[hour]] * WEEKDAY[2, wd[hour]]
    scale = interval_s / 300

    calls = usage.filter(pl.col("_is_voice") & (pl.col("_cell") >= 0))
    b = ((calls["started_at"].to_numpy() - clock.start_s) // interval_s).clip(0, n_int - 1)
    c = calls["_cell"].to_numpy()
    sim_calls = np.bincount(c * n_int + b, minlength=n_cells * n_int).reshape(n_cells, n_int)
    sim_drops = np.bincount(c * n_int + b, weights=calls["is_dropped"].to_numpy().astype(float), minlength=n_cells * n_int)
    sim_drops = sim_drops.reshape(n_cells, n_int).astype(np.int64)

    background = rng.uniform(15, 60, n_cells)[:, None] * voice_shape[None, :] * scale
    attempts_bg = rng.poisson(background)
    p_drop = np.full((n_cells, n_int), DROP_P)
    in_incident = np.zeros((n_cells, n_int), bool)
    for cell, t0, t1 in incidents:
        in_incident[cell] |= (bucket_t + interval_s > t0) & (bucket_t < t1)
    p_drop[in_incident] = INCIDENT_DROP_P
    attempts = attempts_bg + sim_calls
    dropped = rng.binomial(attempts_bg, p_drop) + sim_drops
    load = rng.uniform(0.25, 0.62, n_cells)[:, None] * data_shape[None, :]
    prb = np.clip(100 * load * (1 + rng.normal(0, 0.08, (n_cells, n_int))), 0.5, 99.5).round(1)
    latency = 15 + 35 * (prb / 100) ** 3 + rng.gamma(2.0, 2.0, (n_cells, n_int))
    latency = np.where(in_incident, latency * 4 + 80, latency).round(1)

    cell_ids, site_ids = cells["cell_id"], cells["site_id"]
    ci = np.repeat(np.arange(n_cells), n_int)
    kpi = pl.DataFrame(
        {
            "cell": ci,
            "observed_at": np.tile(bucket_t, n_cells),
            "kind": pl.repeat("kpi", n_cells * n_int, eager=True),
            "call_attempts": attempts.ravel(),
            "dropped_calls": dropped.ravel(),
            "prb_utilization": prb.ravel(),
            "latency_ms": latency.ravel(),
            "severity": pl.repeat(None, n_cells * n_int, dtype=pl.String, eager=True),
            "code": pl.repeat(None, n_cells * n_int, dtype=pl.String, eager=True),
            "cleared": pl.repeat(None, n_cells * n_int, dtype=pl.Boolean, eager=True),
            "_end": np.tile(bucket_t + interval_s, n_cells),
        }
    )
    frame = pl.concat([kpi, _alarms(rng, clock, n_cells, incidents)], how="vertical_relaxed").sort("observed_at", "cell", maintain_order=True)
    return frame.select(
        ids(f"N{tag}", np.arange(frame.height), 9).alias("event_id"),
        cell_ids.gather(frame["cell"]).alias("cell_id"),
        site_ids.gather(frame["cell"]).alias("site_id"),
        pl.exclude("cell", "_end"),
        "_end",
    )


def _alarms(rng: np.random.Generator, clock: Clock, n_cells: int, incidents: list[tuple[int, int, int]]) -> pl.DataFrame:
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

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
# Drifts (precursors before incidents, and false-alarm drifts that recover): minor alarms they raise,
# and at full strength, the PRB points and latency ms added at the peak and the extra drop probability.
DRIFT_ALARMS = ("HIGH_TEMPERATURE", "VSWR_WARNING", "RSSI_INTERFERENCE")
DRIFT_PRB, DRIFT_LATENCY_MS, DRIFT_DROP_P = 25.0, 35.0, 0.015


def pick_incidents(rng: np.random.Generator, pop: Population, clock: Clock, per_day: float = 0.5) -> list[tuple[int, int, int]]:
    """Busy cells that degrade for a few hours, ``per_day`` on average: (cell index, start s, end s)."""
    if per_day <= 0:
        return []
    n = max(1, round(clock.days * per_day))
    busy, weight = np.unique(pop.home_cell, return_counts=True)
    cells = rng.choice(busy, size=min(n, len(busy)), replace=False, p=weight / weight.sum())
    window = clock.days * 86400
    out = []
    for c in cells:
        length = int(rng.integers(2 * HOUR, 6 * HOUR))
        t0 = clock.start_s + int(rng.integers(HOUR, max(HOUR + 1, window - length - HOUR))) // 60 * 60
        out.append((int(c), t0, t0 + length))
    # More incidents than busy cells: the rest go to cells picked again, at least 12 h from the
    # cell's other incidents (drawn after the first round, so smaller windows keep their bytes).
    for _ in range(n - len(cells)):
        for _try in range(50):
            c = int(rng.choice(busy, p=weight / weight.sum()))
            length = int(rng.integers(2 * HOUR, 6 * HOUR))
            t0 = clock.start_s + int(rng.integers(HOUR, max(HOUR + 1, window - length - HOUR))) // 60 * 60
            if all(b != c or t0 + length + 12 * HOUR <= s or t0 >= e + 12 * HOUR for b, s, e in out):
                out.append((c, t0, t0 + length))
                break
    return sorted(out, key=lambda x: x[1])


@dataclass(frozen=True)
class Drift:
    """A cell creeping towards trouble: PRB utilisation and latency rising, a few drops, minor alarms.

    A *precursor* rises from ``start`` to ``peak`` = the start of its incident (the incident takes
    over); a *false alarm* rises to ``peak`` and falls back to normal at ``end`` with no incident.

    Attributes:
        cell: cell index.
        start, peak, end: epoch seconds (``end == peak`` for a precursor).
        strength: share of the full amplitude reached at the peak.
        incident: True for a precursor.
        alarms: (raised s, cleared s or None, code) of its minor alarms.
    """

    cell: int
    start: int
    peak: int
    end: int
    strength: float
    incident: bool
    alarms: tuple[tuple[int, int | None, str], ...] = ()

    def level(self, t: np.ndarray) -> np.ndarray:
        """Share of the full amplitude at times ``t`` (0 outside the drift)."""
        rise = np.clip((t - self.start) / max(1, self.peak - self.start), 0, 1) ** 1.5
        fall = np.clip((self.end - t) / max(1, self.end - self.peak), 0, 1) if self.end > self.peak else np.ones(len(t))
        on = (t >= self.start) & (t < max(self.end, self.peak))
        return np.where(on, self.strength * np.where(t < self.peak, rise, fall), 0.0)


def pick_drifts(rng: np.random.Generator, clock: Clock, n_cells: int, incidents: list[tuple[int, int, int]], *,
                precursor_share: float, per_day: float) -> list[Drift]:
    """Precursors before a ``precursor_share`` of the incidents, and false-alarm drifts (``per_day``) on quiet cells.

    A precursor starts 1.5-4 h before its incident; a false alarm rises for 1-3 h and recovers
    within 0.5-2 h, never within 6 h of an incident or another drift on the same cell.
    """
    out: list[Drift] = []
    for c, t0, _t1 in incidents:
        if rng.random() >= precursor_share:
            continue  # a sudden failure: no warning
        start = max(clock.start_s, t0 - int(rng.integers(90 * 60, 4 * HOUR)) // 60 * 60)
        out.append(Drift(c, start, t0, t0, float(rng.uniform(0.7, 1.0)), True, _drift_alarms(rng, start, t0, clock)))
    busy = [(c, t0, t1) for c, t0, t1 in incidents]
    for _ in range(round(clock.days * per_day)):
        for _try in range(20):
            c = int(rng.integers(0, n_cells))
            rise, fall = int(rng.integers(HOUR, 3 * HOUR)) // 60 * 60, int(rng.integers(HOUR // 2, 2 * HOUR)) // 60 * 60
            start = clock.start_s + int(rng.integers(0, max(1, clock.days * 86400 - rise - fall))) // 60 * 60
            end = start + rise + fall
            if any(b == c and start < e + 6 * HOUR and end > s - 6 * HOUR for b, s, e in busy):
                continue
            out.append(Drift(c, start, start + rise, end, float(rng.uniform(0.35, 0.85)), False,
                             _drift_alarms(rng, start, start + rise, clock)))
            busy.append((c, start, end))
            break
    return out


def _drift_alarms(rng: np.random.Generator, start: int, peak: int, clock: Clock) -> tuple[tuple[int, int | None, str], ...]:
    """One to a few minor alarms in the second half of the rise, each cleared 10-60 minutes later."""
    k = 1 + int(rng.poisson(1.0))
    at = np.sort(rng.integers(start + (peak - start) // 2, max(peak, start + (peak - start) // 2 + 1), k))
    codes = rng.integers(0, len(DRIFT_ALARMS), k)
    clear = at + rng.integers(600, HOUR, k)
    return tuple((int(a), int(e) if e < clock.end_s else None, DRIFT_ALARMS[int(i)]) for a, e, i in zip(at, clear, codes, strict=True))


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
               incidents: list[tuple[int, int, int]], interval_s: int, *, chunk: int = 8, drifts: list[Drift] = (),
               drift_rng: np.random.Generator | None = None) -> KpiArrays:
    """KPI counters for every cell every ``interval_s``, drawn ``chunk`` cells at a time.

    Call attempts include the simulated subscribers' calls on the cell (``sim_calls``; the rest of
    the cell's traffic is background), so KPIs and usage agree during incidents. ``drifts`` are
    added last, their extra drops drawn from ``drift_rng`` (so the rest is drawn as without them).
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
    for d in drifts:
        level = d.level(bucket_t + interval_s // 2)
        on = np.nonzero(level > 0)[0]
        if not len(on):
            continue
        row = d.cell
        prb10[row, on] = np.clip(prb10[row, on] + np.rint(level[on] * DRIFT_PRB * 10), 5, 995).astype(np.int16)
        latency10[row, on] += np.rint(level[on] * DRIFT_LATENCY_MS * 10).astype(np.int32)
        dropped[row, on] += drift_rng.binomial(attempts[row, on] - dropped[row, on], level[on] * DRIFT_DROP_P).astype(np.int32)
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
                 incidents: list[tuple[int, int, int]], interval_s: int, tag: str, *, drifts: list[Drift] = (),
                 drift_rng: np.random.Generator | None = None) -> pl.DataFrame:
    """KPI samples for every cell every ``interval_s`` plus alarms, in observed-time order."""
    n_cells = cells.height
    calls, drops = call_counts(usage["_is_voice"].to_numpy(), usage["_cell"].to_numpy(), usage["started_at"].to_numpy(),
                               usage["is_dropped"].fill_null(False).to_numpy(), clock, interval_s, n_cells)
    k = kpi_arrays(rng, clock, n_cells, calls, drops, incidents, interval_s, drifts=drifts, drift_rng=drift_rng)
    return network_rows(k, alarms(rng, clock, n_cells, incidents, drifts=drifts), cells, tag, 0, k.n_int, 0)


def alarms(rng: np.random.Generator, clock: Clock, n_cells: int, incidents: list[tuple[int, int, int]], *,
           drifts: list[Drift] = ()) -> pl.DataFrame:
    """Critical alarms raised and cleared around each incident, background alarms, then the drifts' minor alarms."""
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
    for d in drifts:
        for raised_at, cleared_at, name in d.alarms:
            for at, done in ((raised_at, False), (cleared_at, True)):
                if at is not None:
                    cell.append(d.cell)
                    t.append(at)
                    severity.append("minor")
                    code.append(name)
                    cleared.append(done)
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

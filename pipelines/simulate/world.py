"""Simulator world: the fixed cell table, shared identifiers and the subscriber population."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pipelines.core.config import REPO_ROOT

CELLS_CSV = REPO_ROOT / "reference" / "cells.csv"
PLANS = ("lite", "plus", "max")
PLAN_P = (0.45, 0.40, 0.15)
# Monthly fees as in reference/catalog.toml (what a payment pays).
PLAN_FEES = ("9.99", "19.99", "39.99")
COUNTRIES = ("DE", "AT", "NL")
COUNTRY_P = (0.82, 0.11, 0.07)
SEGMENTS = ("consumer", "business")
ROAMING_PLMNS = ("208-01", "214-07", "234-15", "310-260")
ROAMING_P = (0.35, 0.30, 0.20, 0.15)
OTT_PARTNERS = ("ott-streamflix", "ott-musicbox", "ott-gamecloud")
OTT_P = (0.5, 0.3, 0.2)
TZ = ZoneInfo("Europe/Berlin")

# Area centres (lat, lon): the cells of an area's sites scatter around one city.
_AREA_CENTRES = (
    (52.520, 13.405),  # Berlin
    (53.551, 9.994),  # Hamburg
    (48.137, 11.575),  # Munich
    (50.938, 6.960),  # Cologne
    (50.110, 8.682),  # Frankfurt
    (48.776, 9.183),  # Stuttgart
    (51.227, 6.773),  # Düsseldorf
)
SITES = 40
CELLS_PER_SITE = 3
SITES_PER_AREA = 6


def cell_table() -> pl.DataFrame:
    """The fixed cell table (same for every seed), as in ``reference/cells.csv``.

    40 sites of 3 cells (sectors) each, grouped into areas of 6 sites around German cities.
    """
    rng = np.random.Generator(np.random.PCG64(20261001))
    site = np.arange(SITES)
    area = site // SITES_PER_AREA
    centre = np.array(_AREA_CENTRES)[area]
    site_lat = centre[:, 0] + rng.normal(0, 0.03, SITES)
    site_lon = centre[:, 1] + rng.normal(0, 0.045, SITES)
    cell_site = np.repeat(site, CELLS_PER_SITE)
    sector = np.tile(np.arange(CELLS_PER_SITE), SITES)
    angle = sector * 2 * np.pi / CELLS_PER_SITE
    return pl.DataFrame(
        {
            "cell_id": [f"C{i + 1:04d}" for i in range(SITES * CELLS_PER_SITE)],
            "site_id": [f"S{s + 1:03d}" for s in cell_site],
            "area_id": [f"A{a + 1:02d}" for a in area[cell_site]],
            "lat": np.round(site_lat[cell_site] + 0.001 * np.sin(angle), 5),
            "lon": np.round(site_lon[cell_site] + 0.0015 * np.cos(angle), 5),
        }
    )


def write_cells_csv(path: str | Path = CELLS_CSV) -> Path:
    """Write the cell table as CSV (the checked-in ``reference/cells.csv`` is this output)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cell_table().write_csv(path)
    return path


@dataclass
class Clock:
    """The simulated window: UTC epoch seconds and a per-hour local (Europe/Berlin) calendar."""

    start_s: int
    days: int

    @property
    def hours(self) -> int:
        return self.days * 24

    @property
    def end_s(self) -> int:
        return self.start_s + self.days * 86400

    def local(self) -> tuple[np.ndarray, np.ndarray]:
        """Local hour of day and weekday (0 = Monday) of each simulated UTC hour."""
        hour, weekday = np.empty(self.hours, np.int64), np.empty(self.hours, np.int64)
        for h in range(self.hours):  # one call per hour, not per record
            t = datetime.fromtimestamp(self.start_s + h * 3600, UTC).astimezone(TZ)
            hour[h], weekday[h] = t.hour, t.weekday()
        return hour, weekday


def epoch_s(day: date) -> int:
    """Epoch seconds of a date (midnight UTC) or of an aware datetime."""
    if isinstance(day, datetime):
        return int(day.timestamp())
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """``prefix`` + zero-padded ``numbers``, vectorised."""
    return prefix + pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width) if len(numbers) else pl.Series([], dtype=pl.String)


def pick(names: tuple[str, ...], index: np.ndarray, null: np.ndarray | None = None) -> pl.Series:
    """``names[index]`` as a string column (null where ``null`` is true), without numpy strings."""
    index = np.asarray(index, np.int64)
    out = pl.Series(names, dtype=pl.String).gather(np.where(index < 0, 0, index)) if len(index) else pl.Series([], dtype=pl.String)
    return out.set(pl.Series(null), None) if null is not None and len(index) else out


@dataclass
class Population:
    """The subscribers, one array entry per subscriber (index ``i``).

    Attributes:
        subscriber_id, msisdn, imsi, account_id: identifiers (strings).
        plan: index into PLANS (the plan at the window start).
        country, segment: of the subscriber's account.
        activated_s: activation time (epoch s), at or before the window start; most are
            months or years before it.
        home_area, home_cell, work_cell: where the subscriber is usually served (cell indexes).
        activity: usage multiplier (mean 1).
        fraud: 0 = none, 1 = SIM box, 2 = international call velocity.
        churn_s: the ``terminated`` time (epoch s) or -1.
    """

    subscriber_id: pl.Series
    msisdn: pl.Series
    imsi: pl.Series
    account_id: pl.Series
    plan: np.ndarray
    country: np.ndarray
    segment: np.ndarray
    activated_s: np.ndarray
    home_area: np.ndarray
    home_cell: np.ndarray
    work_cell: np.ndarray
    activity: np.ndarray
    fraud: np.ndarray
    churn_s: np.ndarray

    @property
    def n(self) -> int:
        return len(self.plan)


def _distinct(rng: np.random.Generator, n: int, space: int) -> np.ndarray:
    return np.sort(rng.choice(space, size=n, replace=False))


def make_population(rng: np.random.Generator, n: int, clock: Clock, *, fraudsters: int, churn_rate: float, cells: pl.DataFrame) -> Population:
    """Draw ``n`` subscribers: accounts of 1-3, plans, tenure, home cells, fraudsters, churners."""
    sub_no = _distinct(rng, n, 10**7)
    msisdn_no = rng.permutation(_distinct(rng, n, 10**7))
    imsi_no = rng.permutation(_distinct(rng, n, 10**10))
    sizes = rng.choice([1, 2, 3], size=n, p=[0.78, 0.16, 0.06])
    account_of = np.repeat(np.arange(n), sizes)[:n]
    n_acc = int(account_of[-1]) + 1 if n else 0
    acc_no = _distinct(rng, n_acc, 10**7)
    acc_country = rng.choice(len(COUNTRIES), size=n_acc, p=COUNTRY_P)
    acc_segment = (rng.random(n_acc) < 0.12) | (np.bincount(account_of, minlength=n_acc) == 3) & (rng.random(n_acc) < 0.5)

    plan = rng.choice(3, size=n, p=PLAN_P)
    start = clock.start_s
    tenure_days = np.clip(rng.gamma(1.4, 420, n), 1, 3650)
    activated = start - (tenure_days * 86400).astype(np.int64) - rng.integers(0, 86400, n)
    new = rng.random(n) < 0.06  # new customers: activated in the two weeks before the window
    activated[new] = start - rng.integers(0, 14 * 86400, int(new.sum()))

    fraud = np.zeros(n, np.int8)
    k = min(fraudsters, n // 4)
    if k:
        who = rng.choice(n, size=k, replace=False)
        velocity = min(2, k // 3)
        fraud[who] = 1
        fraud[who[:velocity]] = 2
        # Fraud SIMs are fresh: activated days before the window.
        activated[who] = start - rng.integers(2, 25, k) * 86400 - rng.integers(0, 86400, k)
        plan[who] = rng.choice(2, size=k)

    churn_s = np.full(n, -1, np.int64)
    eligible = np.nonzero((fraud == 0) & (activated < start - 90 * 86400))[0]
    n_churn = min(len(eligible), int(round(churn_rate * n)))
    if n_churn:
        churners = rng.choice(eligible, size=n_churn, replace=False)
        window = clock.days * 86400
        earliest = start + int(min(21 * 86400, 0.6 * window))
        churn_s[churners] = rng.integers(earliest, max(earliest + 1, clock.end_s - 2 * 3600), n_churn)

    n_cells = cells.height
    area_codes = cells["area_id"].to_numpy()
    areas, area_of_cell = np.unique(area_codes, return_inverse=True)
    area_weight = np.bincount(area_of_cell).astype(float) * np.linspace(1.6, 0.7, len(areas))
    home_area = rng.choice(len(areas), size=n, p=area_weight / area_weight.sum())
    first = np.searchsorted(area_of_cell, np.arange(len(areas)))
    count = np.bincount(area_of_cell)
    home_cell = first[home_area] + (rng.random(n) * count[home_area]).astype(np.int64)
    commuter = rng.random(n) < 0.25
    work_area = np.where(commuter, rng.choice(len(areas), size=n), home_area)
    work_cell = first[work_area] + (rng.random(n) * count[work_area]).astype(np.int64)
    work_cell = np.minimum(work_cell, n_cells - 1)
    box = fraud == 1  # a SIM box sits at one site: its cells are sectors of that site
    work_cell[box] = home_cell[box] - home_cell[box] % CELLS_PER_SITE + rng.integers(0, CELLS_PER_SITE, int(box.sum()))

    return Population(
        subscriber_id=ids("SUB", sub_no, 7),
        msisdn=ids("49151", msisdn_no, 7),
        imsi=ids("26201", imsi_no, 10),
        account_id=ids("ACC", acc_no, 7).gather(account_of),
        plan=plan,
        country=np.array(COUNTRIES)[acc_country][account_of],
        segment=np.array(SEGMENTS)[acc_segment.astype(np.int64)][account_of],
        activated_s=activated,
        home_area=home_area,
        home_cell=home_cell,
        work_cell=work_cell,
        activity=rng.gamma(2.5, 1 / 2.5, n),
        fraud=fraud,
        churn_s=churn_s,
    )


def fmt_times(seconds: np.ndarray | pl.Series) -> pl.Series:
    """Epoch seconds as RFC 3339 UTC strings with ``Z`` (``2026-10-01T08:15:00Z``)."""
    s = pl.Series(np.asarray(seconds, dtype=np.int64))
    return pl.from_epoch(s, time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


"""Simulator: usage records (usage.events), drawn per subscriber-hour from Poisson rates.

The records of a block of events are made by :func:`usage_block` from named random streams
(:mod:`pipelines.simulate.draws`): the whole window is one block drawing every stream from one
generator (:func:`make_usage`); the day-by-day path (:mod:`pipelines.simulate.days`) draws blocks
of subscribers from streams of their own and gets the same records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.simulate.bss import BssOut
from pipelines.simulate.draws import Draws, one_stream
from pipelines.simulate.world import (
    OTT_PARTNERS,
    ROAMING_P,
    ROAMING_PLMNS,
    Clock,
    Population,
    ids,
    pick,
)

# Events per day by plan (lite, plus, max) for voice, sms, data.
PER_DAY = np.array([[5.0, 3.0, 22.0], [8.0, 4.0, 34.0], [12.0, 5.0, 45.0]])
# Local hour-of-day shapes (normalised to mean 1 below) and weekday factors (Mon..Sun).
_SHAPE = np.array([
    [0.1, 0.05, 0.03, 0.03, 0.05, 0.15, 0.4, 0.9, 1.4, 1.7, 1.8, 1.7, 1.5, 1.5, 1.6, 1.6, 1.7, 1.8, 1.7, 1.4, 1.1, 0.8, 0.5, 0.25],
    [0.2, 0.1, 0.05, 0.05, 0.05, 0.2, 0.5, 1.0, 1.3, 1.4, 1.4, 1.4, 1.5, 1.4, 1.3, 1.3, 1.4, 1.5, 1.6, 1.6, 1.5, 1.3, 0.9, 0.5],
    [0.5, 0.3, 0.2, 0.15, 0.15, 0.3, 0.6, 1.0, 1.1, 1.0, 1.0, 1.0, 1.2, 1.1, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 1.9, 1.6, 1.0],
])
SHAPE = _SHAPE / _SHAPE.mean(axis=1, keepdims=True)
WEEKDAY = np.array([
    [1.0, 1.0, 1.0, 1.0, 1.05, 0.75, 0.6],
    [1.0, 1.0, 1.0, 1.0, 1.05, 1.0, 0.9],
    [0.95, 0.95, 0.95, 0.95, 1.0, 1.15, 1.2],
])
ROAMING_FACTOR = np.array([0.5, 1.0, 0.6])
DATA_MB = np.array([1.5, 4.0, 9.0])  # median MB down per data session by plan
ROAMING_RATE = 0.04
CONTACTS = 20
CHUNK = 2000  # subscribers per Poisson draw (bounds the rate array's memory)
DROP_P, INCIDENT_DROP_P = 0.012, 0.3
# A voice call dropped on a cell during its incident is dialled again (REDIAL_P; by whoever
# placed it) within two minutes, up to MAX_REDIALS times while it keeps dropping; on the degraded
# cell a redial drops with REDIAL_DROP_P. Three drops in an hour are what the offers flow reacts to.
REDIAL_P, REDIAL_DROP_P, MAX_REDIALS = 0.8, 0.6, 3

# Called-number plans: (prefix, digits after it).
FIXED = (("4930", 8), ("4940", 8))
MOBILE = (("49151", 7), ("49152", 7), ("49157", 7), ("49160", 7), ("49162", 7), ("49170", 7), ("49176", 7))
INTERNATIONAL = (("33", 9), ("34", 9), ("44", 10), ("1", 10), ("90", 10))


@dataclass
class UsageOut:
    """Usage records (contract columns; times in epoch seconds) plus helper columns.

    ``_end`` is started_at + duration_s, ``_cell`` the serving cell index (-1 when roaming),
    ``_is_voice`` marks voice calls, ``_sub`` is the subscriber index; ``roamers`` counts subscribers abroad in the window.
    """

    frame: pl.DataFrame
    roamers: int
    redial_subs: np.ndarray


@dataclass
class UsageWorld:
    """What every block of usage records needs: population, calendar, cells, lifecycle, trips.

    Attributes:
        roaming: (subscriber, hour) mask of time abroad; ``plmn_of`` the visited network of each.
        lh, wd: local hour and weekday of each simulated hour.
        area_first, area_count: first cell index and number of cells of each area.
        ott_has, ott_since: per subscriber, the OTT partner index (-1: none) and since when;
            None when nobody has an OTT service.
    """

    pop: Population
    clock: Clock
    cells: pl.DataFrame
    bss: BssOut
    incidents: list[tuple[int, int, int]]
    roaming: np.ndarray
    plmn_of: np.ndarray
    lh: np.ndarray
    wd: np.ndarray
    area_first: np.ndarray
    area_count: np.ndarray
    ott_has: np.ndarray | None
    ott_since: np.ndarray | None


def usage_world(rng: np.random.Generator, pop: Population, clock: Clock, cells: pl.DataFrame, bss: BssOut,
                incidents: list[tuple[int, int, int]]) -> UsageWorld:
    """Draw the trips abroad (the first draws of the usage stream) and gather the rest."""
    roaming, plmn_of = _trips(rng, pop, clock)
    lh, wd = clock.local()
    _, area_of_cell = np.unique(cells["area_id"].to_numpy(), return_inverse=True)
    first = np.searchsorted(area_of_cell, np.arange(area_of_cell.max() + 1))
    has = since = None
    if len(bss.ott_sub):
        has = np.full(pop.n, -1, np.int64)
        since = np.full(pop.n, np.iinfo(np.int64).max)
        has[bss.ott_sub], since[bss.ott_sub] = bss.ott_partner, bss.ott_since
    return UsageWorld(pop=pop, clock=clock, cells=cells, bss=bss, incidents=incidents, roaming=roaming, plmn_of=plmn_of,
                      lh=lh, wd=wd, area_first=first, area_count=np.bincount(area_of_cell), ott_has=has, ott_since=since)


def numbers(d: Draws, plan: tuple[tuple[str, int], ...], n: int, name: str = "numbers") -> pl.Series:
    """``n`` random E.164 numbers (no ``+``) from a numbering plan of (prefix, digits)."""
    if n == 0:
        return pl.Series([], dtype=pl.String)
    which = d(f"{name}.which").integers(0, len(plan), n)
    prefix = np.array([p for p, _ in plan])[which]
    width = np.array([w for _, w in plan])[which]
    digits = pl.Series(10**width + (d(f"{name}.digits").random(n) * 10.0**width).astype(np.int64)).cast(pl.String).str.slice(1)
    return pl.select(pl.concat_str([pl.lit(pl.Series(prefix)), pl.lit(digits)])).to_series()


def national_or_intl(d: Draws, n: int, p_fixed: float, p_mobile: float, name: str = "numbers") -> pl.Series:
    """Random called numbers: national fixed, national mobile or international."""
    kind = d(f"{name}.kind").choice(3, size=n, p=[p_fixed, p_mobile, max(0.0, 1 - p_fixed - p_mobile)])
    out = pl.Series([""] * n, dtype=pl.String)
    for k, plan in enumerate((FIXED, MOBILE, INTERNATIONAL)):
        idx = np.nonzero(kind == k)[0]
        if len(idx):
            out = out.scatter(idx, numbers(d, plan, len(idx), f"{name}{k}"))
    return out


def contacts(rng: np.random.Generator, pop: Population) -> pl.Series:
    """Each subscriber's circle of CONTACTS numbers (flat, subscriber-major); some on-net."""
    n = pop.n * CONTACTS
    numbers_ = national_or_intl(one_stream(rng), n, 0.32, 0.58)
    onnet = np.nonzero(rng.random(n) < 0.18)[0]
    return numbers_.scatter(onnet, pop.msisdn.gather(rng.integers(0, pop.n, len(onnet))))


def fraud_numbers(rng: np.random.Generator, sim_box: int, velocity: int) -> tuple[pl.Series, pl.Series]:
    """Numbers called by SIM boxes (fresh national ones) and by velocity fraudsters (international)."""
    d = one_stream(rng)
    box = national_or_intl(d, sim_box, 0.4, 0.6) if sim_box else pl.Series([], dtype=pl.String)
    intl = numbers(d, (("44", 10), ("90", 10), ("1", 10), ("34", 9)), velocity) if velocity else pl.Series([], dtype=pl.String)
    return box, intl


def _rates(w: UsageWorld, subs: slice) -> np.ndarray:
    """Expected events per subscriber, hour and type for ``subs``: shape (len(subs), hours, 3)."""
    pop, clock, bss = w.pop, w.clock, w.bss
    hour_t = clock.start_s + 3600 * np.arange(clock.hours) + 1800
    shape = SHAPE[:, w.lh] * WEEKDAY[:, w.wd]  # (3, H)
    base = PER_DAY[pop.plan[subs]] / 24 * pop.activity[subs, None]  # (n, 3)
    active = (hour_t[None, :] >= pop.activated_s[subs, None]).astype(np.float32)
    churn = pop.churn_s[subs]
    left = np.where((churn >= 0)[:, None], (churn[:, None] - hour_t[None, :]) / (21 * 86400), 1.0)
    mod = active * np.where(left < 0, 0.0, 0.12 + 0.88 * np.clip(left, 0, 1))
    first = subs.start
    for sub, t0, t1 in bss.suspended:
        if first <= sub < subs.stop:
            mod[sub - first, (hour_t >= t0) & (hour_t < t1)] = 0.0
    mod[pop.fraud[subs] == 1] *= 0.03
    rates = base[:, None, :] * shape.T[None, :, :] * mod[:, :, None]
    return np.where(w.roaming[subs, :, None], rates * ROAMING_FACTOR[None, None, :], rates)


def event_counts(d: Draws, w: UsageWorld, subs: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson draws per subscriber-hour-type of ``subs``, CHUNK subscribers at a time (bounds the rates' memory).

    Returns:
        (subscriber, hour, type) of every event, subscriber-major.
    """
    hours, parts = w.clock.hours, []
    for lo in range(subs.start, subs.stop, CHUNK):
        part = slice(lo, min(subs.stop, lo + CHUNK))
        counts = d("counts").poisson(_rates(w, part)).ravel()
        idx = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        parts.append((lo + idx // (hours * 3), (idx // 3) % hours, idx % 3))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    sub, h, typ = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return sub, h, typ


def normal_events(d: Draws, w: UsageWorld, subs: slice) -> tuple[np.ndarray, ...]:
    """The events of ``subs`` with their start times, those the subscriber can make.

    Returns:
        (subscriber, type, start s, roaming) of each kept event.
    """
    sub, h, typ = event_counts(d, w, subs)
    t = w.clock.start_s + h * 3600 + d("t").integers(0, 3600, len(sub))
    roam = w.roaming[sub, h]
    keep = _active(w.pop, w.bss, sub, t)
    return sub[keep], typ[keep], t[keep], roam[keep]


def _trips(rng: np.random.Generator, pop: Population, clock: Clock) -> tuple[np.ndarray, np.ndarray]:
    """Outbound roaming: a few % of subscribers abroad for some days; (N, H) mask and PLMN index."""
    n, hours = pop.n, clock.hours
    travels = (rng.random(n) < ROAMING_RATE) & (pop.fraud == 0)
    begin = rng.integers(-48, hours, n)
    length = rng.integers(48, 121, n)
    h = np.arange(hours)
    mask = travels[:, None] & (h[None, :] >= begin[:, None]) & (h[None, :] < (begin + length)[:, None])
    return mask, rng.choice(len(ROAMING_PLMNS), size=n, p=ROAMING_P)


def fraud_calls(rng: np.random.Generator, pop: Population, clock: Clock) -> dict[str, np.ndarray]:
    """SIM-box traffic (many short mo calls, 1-2 cells, all day) and international bursts."""
    subs, ts, cell, intl = [], [], [], []
    hours = clock.hours
    for s in np.nonzero(pop.fraud == 1)[0]:
        per_hour = rng.poisson(rng.uniform(10, 16), hours)
        k = int(per_hour.sum())
        t = clock.start_s + np.repeat(np.arange(hours), per_hour) * 3600 + rng.integers(0, 3600, k)
        t = t[t >= pop.activated_s[s]]
        box = np.unique([pop.home_cell[s], pop.work_cell[s]])
        subs.append(np.full(len(t), s))
        ts.append(t)
        cell.append(rng.choice(box, len(t)))
        intl.append(np.zeros(len(t), bool))
    for s in np.nonzero(pop.fraud == 2)[0]:
        for _ in range(max(1, clock.days // 3)):
            h0 = rng.integers(0, max(1, hours - 6))
            per_hour = rng.poisson(rng.uniform(25, 45), rng.integers(3, 6))
            k = int(per_hour.sum())
            t = clock.start_s + (h0 + np.repeat(np.arange(len(per_hour)), per_hour)) * 3600 + rng.integers(0, 3600, k)
            subs.append(np.full(k, s))
            ts.append(t)
            cell.append(np.full(k, pop.home_cell[s]))
            intl.append(np.ones(k, bool))
    if not subs:
        return NO_FRAUD
    return {"sub": np.concatenate(subs), "t": np.concatenate(ts), "cell": np.concatenate(cell), "intl": np.concatenate(intl)}


NO_FRAUD = {"sub": np.zeros(0, np.int64), "t": np.zeros(0, np.int64), "cell": np.zeros(0, np.int64), "intl": np.zeros(0, bool)}
NO_EVENTS = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
# The columns of a block of records (numpy arrays, plus ``called`` as a string Series), in event order.
ROW_COLUMNS = ("sub", "typ", "t", "duration", "bytes_up", "bytes_down", "cell", "plmn", "roam", "direction", "ott", "dropped")


@dataclass
class UsageBlock:
    """The records of a block of events, in event order.

    Attributes:
        rows: ROW_COLUMNS -> numpy array, and ``called`` -> string Series.
        candidate: calls dropped on a cell during its incident, not by a fraudster (they are redialled).
        hit: calls dropped on a cell during its incident (what complaints react to).
    """

    rows: dict[str, np.ndarray | pl.Series]
    candidate: np.ndarray
    hit: np.ndarray

    @property
    def n(self) -> int:
        return len(self.rows["sub"])


def usage_block(d: Draws, w: UsageWorld, normal: tuple[np.ndarray, ...], fraud: dict[str, np.ndarray],
                book: Callable[[], pl.Series], fraud_book: Callable[[int, int], tuple[pl.Series, pl.Series]]) -> UsageBlock:
    """Every attribute of a block of events: cells, called numbers, durations, volumes, drops.

    Args:
        d: the draws (one generator for the whole window, or each stream its own).
        normal: (subscriber, type, start s, roaming) of the block's ordinary events.
        fraud: the block's fraud calls (``fraud_calls``), after the ordinary events.
        book: the subscribers' contacts (``contacts``), asked for after the cells are drawn.
        fraud_book: (k SIM-box, k velocity) -> the fraudsters' called numbers (``fraud_numbers``).
    """
    pop, clock = w.pop, w.clock
    sub, typ, t, roam = normal
    nf = len(fraud["sub"])
    n_normal = len(sub)
    sub = np.concatenate([sub, fraud["sub"]])
    t = np.concatenate([t, fraud["t"]])
    typ = np.concatenate([typ, np.zeros(nf, np.int64)])
    roam = np.concatenate([roam, np.zeros(nf, bool)])
    n = len(sub)

    # Serving cell: home, work (weekday office hours) or elsewhere in the home area; none abroad.
    hh = np.clip((t - clock.start_s) // 3600, 0, clock.hours - 1)
    office = (w.wd[hh] < 5) & (w.lh[hh] >= 9) & (w.lh[hh] < 18)
    u = d("cell").random(n)
    p_work = np.where(office, 0.55, 0.08)
    ha = pop.home_area[sub]
    nearby = w.area_first[ha] + (d("nearby").random(n) * w.area_count[ha]).astype(np.int64)
    cell = np.where(u < p_work, pop.work_cell[sub], np.where(u < p_work + 0.15, nearby, pop.home_cell[sub]))
    cell[n_normal:] = fraud["cell"]
    boxed = pop.fraud[sub] == 1  # a SIM box never moves: its SIMs only ever see its 1-2 cells
    cell[boxed] = np.where(d("boxed").random(int(boxed.sum())) < 0.5, pop.home_cell[sub[boxed]], pop.work_cell[sub[boxed]])
    cell[roam] = -1
    plmn = np.where(roam, w.plmn_of[sub], -1)

    voice, sms, data = typ == 0, typ == 1, typ == 2
    is_fraud = np.zeros(n, bool)
    is_fraud[n_normal:] = True
    # Voice and SMS: mostly the subscriber's contacts; SIM boxes call fresh national numbers.
    circle = book()
    k = np.minimum((d("contact").pareto(1.2, n)).astype(np.int64), CONTACTS - 1)
    called = circle.gather(sub * CONTACTS + k)
    fresh = np.nonzero((voice | sms) & ((d("fresh").random(n) < 0.15) | is_fraud))[0]
    fresh_numbers = national_or_intl(d, len(fresh), 0.35, 0.6, name="fresh")
    velocity = _velocity_mask(n, n_normal, fraud["intl"])
    box_at = np.searchsorted(fresh, np.nonzero(is_fraud & ~velocity)[0])
    intl_at = np.searchsorted(fresh, np.nonzero(velocity)[0])
    if len(box_at) or len(intl_at):
        box_numbers, intl_numbers = fraud_book(len(box_at), len(intl_at))
        for at, new in ((box_at, box_numbers), (intl_at, intl_numbers)):
            if len(at):
                fresh_numbers = fresh_numbers.scatter(at, new)
    called = called.scatter(fresh, fresh_numbers).set(pl.Series(data), None)
    direction = np.where(is_fraud, 0, (d("direction").random(n) < np.where(voice, 0.45, 0.5)).astype(np.int64))

    # Durations and volumes.
    duration = np.zeros(n, np.int64)
    dur_voice = np.clip(d("voice_s").lognormal(np.log(75), 1.0, n), 1, 7200)
    dur_voice = np.where(is_fraud, np.clip(d("box_s").lognormal(np.log(45), 0.6, n), 3, 900), dur_voice)
    dur_voice = np.where(velocity, np.clip(d("intl_s").lognormal(np.log(150), 0.5, n), 10, 1800), dur_voice)
    duration[voice] = dur_voice[voice].astype(np.int64)
    duration[data] = np.clip(d("data_s").lognormal(np.log(200), 1.3, int(data.sum())), 1, 7200).astype(np.int64)
    ott = np.full(n, -1, np.int64)
    if w.ott_has is not None:
        carried = data & (w.ott_has[sub] >= 0) & (t >= w.ott_since[sub]) & (d("ott").random(n) < 0.35)
        ott[carried] = w.ott_has[sub][carried]
    down = d("down").lognormal(np.log(DATA_MB[pop.plan[sub]] * 1e6), 1.2) * np.where(ott >= 0, 4.0, 1.0) * np.where(roam, 0.5, 1.0)
    bytes_down = np.where(data, np.minimum(down, 5e9), 0).astype(np.int64)
    bytes_up = (bytes_down * d("up").uniform(0.04, 0.2, n)).astype(np.int64)

    # Dropped calls: a little always, a lot on a cell during its incident.
    in_incident = incident_mask(w.incidents, cell, t)
    dropped = voice & (d("drop").random(n) < np.where(in_incident, INCIDENT_DROP_P, DROP_P))
    duration = np.where(dropped, np.maximum(1, (duration * d("drop_s").uniform(0.05, 0.8, n)).astype(np.int64)), duration)
    rows: dict[str, np.ndarray | pl.Series] = {
        "sub": sub, "typ": typ, "t": t, "duration": duration, "bytes_up": bytes_up, "bytes_down": bytes_down, "cell": cell,
        "plmn": plmn, "roam": roam, "direction": direction, "ott": ott, "dropped": dropped, "called": called,
    }
    return UsageBlock(rows=rows, candidate=dropped & in_incident & ~is_fraud, hit=dropped & in_incident)


def incident_mask(incidents: list[tuple[int, int, int]], cell: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Which (cell, start) pairs fall on a cell during its incident."""
    out = np.zeros(len(cell), bool)
    for c, t0, t1 in incidents:
        out |= (cell == c) & (t >= t0) & (t < t1)
    return out


def redials(rng: np.random.Generator, t: np.ndarray, duration: np.ndarray, cell: np.ndarray,
            incidents: list[tuple[int, int, int]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Calls dialled again after calls dropped on a cell in its incident (``t``, ``duration``, ``cell`` of each).

    Returns:
        per redial its source (index of the dropped call it repeats), start, duration and whether
        it dropped; and the indexes of the first calls of chains with at least three drops (that
        call included).
    """
    first = np.arange(len(t))
    first = first[rng.random(len(first)) < REDIAL_P]
    src: list[int] = []
    starts: list[int] = []
    lengths: list[int] = []
    drops: list[bool] = []
    chains: list[int] = []
    for i in first.tolist():
        at, dropped_in_chain = int(t[i] + duration[i]), 1
        for _ in range(MAX_REDIALS):
            at += int(rng.integers(15, 121))
            degraded = any(c == cell[i] and t0 <= at < t1 for c, t0, t1 in incidents)
            dropped = bool(rng.random() < (REDIAL_DROP_P if degraded else DROP_P))
            full = int(np.clip(rng.lognormal(np.log(75), 1.0), 1, 7200))
            length = max(1, int(full * rng.uniform(0.05, 0.8))) if dropped else full
            src.append(i)
            starts.append(at)
            lengths.append(length)
            drops.append(dropped)
            dropped_in_chain += dropped
            at += length
            if not dropped:
                break
        if dropped_in_chain >= 3:
            chains.append(i)
    out = {"src": np.array(src, np.int64), "t": np.array(starts, np.int64), "duration": np.array(lengths, np.int64), "dropped": np.array(drops, bool)}
    return out, np.array(chains, np.int64)


def redial_rows(rows: dict[str, np.ndarray | pl.Series], redial: dict[str, np.ndarray]) -> dict[str, np.ndarray | pl.Series]:
    """The redials as records: the dropped call's rows again (same two parties), with their own start, duration, drop."""
    src = redial["src"]
    out: dict[str, np.ndarray | pl.Series] = {k: (v.gather(src) if isinstance(v, pl.Series) else v[src]) for k, v in rows.items()}
    out.update(t=redial["t"], duration=redial["duration"], dropped=redial["dropped"])
    return out


def concat_rows(parts: list[dict[str, np.ndarray | pl.Series]]) -> dict[str, np.ndarray | pl.Series]:
    """Blocks of rows one after the other."""
    return {k: (pl.concat([p[k] for p in parts]) if isinstance(parts[0][k], pl.Series) else np.concatenate([p[k] for p in parts]))
            for k in parts[0]}


def take_rows(rows: dict[str, np.ndarray | pl.Series], idx: np.ndarray) -> dict[str, np.ndarray | pl.Series]:
    return {k: (v.gather(idx) if isinstance(v, pl.Series) else v[idx]) for k, v in rows.items()}


def usage_frame(rows: dict[str, np.ndarray | pl.Series], numbers_: np.ndarray, w: UsageWorld, tag: str) -> pl.DataFrame:
    """Records in their final order as the usage frame (contract columns + helper columns).

    Args:
        rows: the records' columns, already in record order.
        numbers_: each record's number (its position in the window's record order).
    """
    pop, cells = w.pop, w.cells
    typ, sub, cell, ott, plmn = rows["typ"], rows["sub"], rows["cell"], rows["ott"], rows["plmn"]
    voice, data, roam = typ == 0, typ == 2, rows["roam"]
    frame = pl.DataFrame(
        {
            "record_id": ids(f"U{tag}", numbers_, 9),
            "event_type": pick(("voice", "sms", "data"), typ),
            "subscriber_id": pop.subscriber_id.gather(sub),
            "msisdn": pop.msisdn.gather(sub),
            "started_at": pl.Series(rows["t"]),
            "duration_s": rows["duration"],
            "bytes_up": rows["bytes_up"],
            "bytes_down": rows["bytes_down"],
            "imsi": pop.imsi.gather(sub),
            "called_number": rows["called"],
            "direction": pick(("mo", "mt"), rows["direction"], null=data),
            "cell_id": cells["cell_id"].gather(np.maximum(cell, 0)).set(pl.Series(cell < 0), None),
            "visited_plmn": pick(ROAMING_PLMNS, plmn, null=~roam),
            "ott_partner_id": pick(OTT_PARTNERS, ott, null=ott < 0),
            "is_dropped": pl.Series(rows["dropped"]).set(pl.Series(~voice), None),
        }
    )
    return frame.with_columns(
        _end=pl.col("started_at") + pl.col("duration_s"),
        _cell=pl.Series(cell),
        _is_voice=pl.Series(voice),
        _sub=pl.Series(sub),
    )


def make_usage(rng: np.random.Generator, pop: Population, clock: Clock, cells: pl.DataFrame, bss: BssOut,
               incidents: list[tuple[int, int, int]], tag: str, *, redial_rng: np.random.Generator) -> UsageOut:
    """Every usage record of the window, in event-time order, with record ids.

    ``redial_rng`` (a stream of its own, so the other records stay what they were) draws the
    redials of calls dropped during incidents.
    """
    w = usage_world(rng, pop, clock, cells, bss, incidents)
    d = one_stream(rng)
    normal = normal_events(d, w, slice(0, pop.n))
    fraud = fraud_calls(rng, pop, clock)
    block = usage_block(d, w, normal, fraud, lambda: contacts(rng, pop), lambda a, b: fraud_numbers(rng, a, b))
    rows = block.rows
    cand = np.nonzero(block.candidate)[0]
    redial, chains = redials(redial_rng, rows["t"][cand], rows["duration"][cand], rows["cell"][cand], incidents)
    if len(redial["src"]):
        redial["src"] = cand[redial["src"]]
        rows = concat_rows([rows, redial_rows(rows, redial)])
    order = np.lexsort((rows["sub"], rows["t"]))
    frame = usage_frame(take_rows(rows, order), np.arange(len(order)), w, tag)
    return UsageOut(frame=frame, roamers=int(w.roaming.any(axis=1).sum()), redial_subs=block.rows["sub"][cand[chains]])


def _active(pop: Population, bss: BssOut, sub: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Events at times the subscriber can use the network: activated, not suspended or gone."""
    ok = t >= pop.activated_s[sub]
    churn = pop.churn_s[sub]
    ok &= (churn < 0) | (t < churn)
    for s, t0, t1 in bss.suspended:
        ok &= ~((sub == s) & (t >= t0) & (t < t1))
    return ok


def _velocity_mask(n: int, n_normal: int, intl: np.ndarray) -> np.ndarray:
    """Which of ``n`` events are international-velocity fraud calls."""
    mask = np.zeros(n, bool)
    mask[n_normal:] = intl
    return mask

"""Simulator: usage records (usage.events), drawn per subscriber-hour from Poisson rates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.simulate.bss import BssOut
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


def numbers(rng: np.random.Generator, plan: tuple[tuple[str, int], ...], n: int) -> pl.Series:
    """``n`` random E.164 numbers (no ``+``) from a numbering plan of (prefix, digits)."""
    if n == 0:
        return pl.Series([], dtype=pl.String)
    which = rng.integers(0, len(plan), n)
    prefix = np.array([p for p, _ in plan])[which]
    width = np.array([w for _, w in plan])[which]
    digits = pl.Series(10**width + (rng.random(n) * 10.0**width).astype(np.int64)).cast(pl.String).str.slice(1)
    return pl.select(pl.concat_str([pl.lit(pl.Series(prefix)), pl.lit(digits)])).to_series()


def national_or_intl(rng: np.random.Generator, n: int, p_fixed: float, p_mobile: float) -> pl.Series:
    """Random called numbers: national fixed, national mobile or international."""
    kind = rng.choice(3, size=n, p=[p_fixed, p_mobile, max(0.0, 1 - p_fixed - p_mobile)])
    out = pl.Series([""] * n, dtype=pl.String)
    for k, plan in enumerate((FIXED, MOBILE, INTERNATIONAL)):
        idx = np.nonzero(kind == k)[0]
        if len(idx):
            out = out.scatter(idx, numbers(rng, plan, len(idx)))
    return out


def _contacts(rng: np.random.Generator, pop: Population) -> pl.Series:
    """Each subscriber's circle of CONTACTS numbers (flat, subscriber-major); some on-net."""
    n = pop.n * CONTACTS
    numbers_ = national_or_intl(rng, n, 0.32, 0.58)
    onnet = np.nonzero(rng.random(n) < 0.18)[0]
    return numbers_.scatter(onnet, pop.msisdn.gather(rng.integers(0, pop.n, len(onnet))))


def _rates(pop: Population, clock: Clock, bss: BssOut, roaming: np.ndarray, subs: slice) -> np.ndarray:
    """Expected events per subscriber, hour and type for ``subs``: shape (len(subs), hours, 3)."""
    lh, wd = clock.local()
    hour_t = clock.start_s + 3600 * np.arange(clock.hours) + 1800
    shape = SHAPE[:, lh] * WEEKDAY[:, wd]  # (3, H)
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
    return np.where(roaming[subs, :, None], rates * ROAMING_FACTOR[None, None, :], rates)


def _counts(rng: np.random.Generator, pop: Population, clock: Clock, bss: BssOut, roaming: np.ndarray) -> tuple[np.ndarray, ...]:
    """Poisson draws per subscriber-hour-type, in chunks of subscribers to bound memory.

    Returns:
        (subscriber, hour, type) of every event.
    """
    hours, parts = clock.hours, []
    for lo in range(0, pop.n, CHUNK):
        subs = slice(lo, min(pop.n, lo + CHUNK))
        counts = rng.poisson(_rates(pop, clock, bss, roaming, subs)).ravel()
        idx = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        parts.append((lo + idx // (hours * 3), (idx // 3) % hours, idx % 3))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def _trips(rng: np.random.Generator, pop: Population, clock: Clock) -> tuple[np.ndarray, np.ndarray]:
    """Outbound roaming: a few % of subscribers abroad for some days; (N, H) mask and PLMN index."""
    n, hours = pop.n, clock.hours
    travels = (rng.random(n) < ROAMING_RATE) & (pop.fraud == 0)
    begin = rng.integers(-48, hours, n)
    length = rng.integers(48, 121, n)
    h = np.arange(hours)
    mask = travels[:, None] & (h[None, :] >= begin[:, None]) & (h[None, :] < (begin + length)[:, None])
    return mask, rng.choice(len(ROAMING_PLMNS), size=n, p=ROAMING_P)


def _fraud_calls(rng: np.random.Generator, pop: Population, clock: Clock) -> dict[str, np.ndarray]:
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
        return {"sub": np.zeros(0, np.int64), "t": np.zeros(0, np.int64), "cell": np.zeros(0, np.int64), "intl": np.zeros(0, bool)}
    return {"sub": np.concatenate(subs), "t": np.concatenate(ts), "cell": np.concatenate(cell), "intl": np.concatenate(intl)}


def _redials(rng: np.random.Generator, t: np.ndarray, duration: np.ndarray, cell: np.ndarray, candidates: np.ndarray,
             incidents: list[tuple[int, int, int]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Calls dialled again after ``candidates`` (calls dropped on a cell in its incident).

    Returns:
        per redial its source row (the dropped call it repeats), start, duration and whether it
        dropped; and the rows of the first calls of chains with at least three drops (that call included).
    """
    first = np.nonzero(candidates)[0]
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


def make_usage(rng: np.random.Generator, pop: Population, clock: Clock, cells: pl.DataFrame, bss: BssOut,
               incidents: list[tuple[int, int, int]], tag: str, *, redial_rng: np.random.Generator) -> UsageOut:
    """Every usage record of the window, in event-time order, with record ids.

    ``redial_rng`` (a stream of its own, so the other records stay what they were) draws the
    redials of calls dropped during incidents.
    """
    roaming, plmn_of = _trips(rng, pop, clock)
    sub, h, typ = _counts(rng, pop, clock, bss, roaming)
    hours = clock.hours
    t = clock.start_s + h * 3600 + rng.integers(0, 3600, len(sub))
    roam = roaming[sub, h]
    keep = _active(pop, bss, sub, t)
    sub, h, typ, t, roam = sub[keep], h[keep], typ[keep], t[keep], roam[keep]
    fraud = _fraud_calls(rng, pop, clock)
    nf = len(fraud["sub"])
    n_normal = len(sub)
    sub = np.concatenate([sub, fraud["sub"]])
    t = np.concatenate([t, fraud["t"]])
    typ = np.concatenate([typ, np.zeros(nf, np.int64)])
    roam = np.concatenate([roam, np.zeros(nf, bool)])
    n = len(sub)

    # Serving cell: home, work (weekday office hours) or elsewhere in the home area; none abroad.
    lh, wd = clock.local()
    hh = np.clip((t - clock.start_s) // 3600, 0, hours - 1)
    office = (wd[hh] < 5) & (lh[hh] >= 9) & (lh[hh] < 18)
    u = rng.random(n)
    p_work = np.where(office, 0.55, 0.08)
    area = cells["area_id"].to_numpy()
    _, area_of_cell = np.unique(area, return_inverse=True)
    first = np.searchsorted(area_of_cell, np.arange(area_of_cell.max() + 1))
    count = np.bincount(area_of_cell)
    ha = pop.home_area[sub]
    nearby = first[ha] + (rng.random(n) * count[ha]).astype(np.int64)
    cell = np.where(u < p_work, pop.work_cell[sub], np.where(u < p_work + 0.15, nearby, pop.home_cell[sub]))
    cell[n_normal:] = fraud["cell"]
    boxed = pop.fraud[sub] == 1  # a SIM box never moves: its SIMs only ever see its 1-2 cells
    cell[boxed] = np.where(rng.random(int(boxed.sum())) < 0.5, pop.home_cell[sub[boxed]], pop.work_cell[sub[boxed]])
    cell[roam] = -1
    plmn = np.where(roam, plmn_of[sub], -1)

    voice, sms, data = typ == 0, typ == 1, typ == 2
    is_fraud = np.zeros(n, bool)
    is_fraud[n_normal:] = True
    # Voice and SMS: mostly the subscriber's contacts; SIM boxes call fresh national numbers.
    contacts = _contacts(rng, pop)
    k = np.minimum((rng.pareto(1.2, n)).astype(np.int64), CONTACTS - 1)
    called = contacts.gather(sub * CONTACTS + k)
    fresh = np.nonzero((voice | sms) & ((rng.random(n) < 0.15) | is_fraud))[0]
    fresh_numbers = national_or_intl(rng, len(fresh), 0.35, 0.6)
    velocity = _velocity_mask(n, n_normal, fraud["intl"])
    for mask, plan_numbers in ((is_fraud & ~velocity, lambda k: national_or_intl(rng, k, 0.4, 0.6)),
                               (velocity, lambda k: numbers(rng, (("44", 10), ("90", 10), ("1", 10), ("34", 9)), k))):
        at = np.searchsorted(fresh, np.nonzero(mask)[0])
        if len(at):
            fresh_numbers = fresh_numbers.scatter(at, plan_numbers(len(at)))
    called = called.scatter(fresh, fresh_numbers).set(pl.Series(data), None)
    direction = np.where(is_fraud, 0, (rng.random(n) < np.where(voice, 0.45, 0.5)).astype(np.int64))

    # Durations and volumes.
    duration = np.zeros(n, np.int64)
    dur_voice = np.clip(rng.lognormal(np.log(75), 1.0, n), 1, 7200)
    dur_voice = np.where(is_fraud, np.clip(rng.lognormal(np.log(45), 0.6, n), 3, 900), dur_voice)
    dur_voice = np.where(velocity, np.clip(rng.lognormal(np.log(150), 0.5, n), 10, 1800), dur_voice)
    duration[voice] = dur_voice[voice].astype(np.int64)
    duration[data] = np.clip(rng.lognormal(np.log(200), 1.3, int(data.sum())), 1, 7200).astype(np.int64)
    ott = np.full(n, -1, np.int64)
    if len(bss.ott_sub):
        has = np.full(pop.n, -1, np.int64)
        since = np.full(pop.n, np.iinfo(np.int64).max)
        has[bss.ott_sub], since[bss.ott_sub] = bss.ott_partner, bss.ott_since
        carried = data & (has[sub] >= 0) & (t >= since[sub]) & (rng.random(n) < 0.35)
        ott[carried] = has[sub][carried]
    down = rng.lognormal(np.log(DATA_MB[pop.plan[sub]] * 1e6), 1.2) * np.where(ott >= 0, 4.0, 1.0) * np.where(roam, 0.5, 1.0)
    bytes_down = np.where(data, np.minimum(down, 5e9), 0).astype(np.int64)
    bytes_up = (bytes_down * rng.uniform(0.04, 0.2, n)).astype(np.int64)

    # Dropped calls: a little always, a lot on a cell during its incident.
    in_incident = np.zeros(n, bool)
    for c, t0, t1 in incidents:
        in_incident |= (cell == c) & (t >= t0) & (t < t1)
    dropped = voice & (rng.random(n) < np.where(in_incident, INCIDENT_DROP_P, DROP_P))
    duration = np.where(dropped, np.maximum(1, (duration * rng.uniform(0.05, 0.8, n)).astype(np.int64)), duration)
    redial, chains = _redials(redial_rng, t, duration, cell, dropped & in_incident & ~is_fraud, incidents)
    src, chains_of = redial["src"], sub[chains]
    if len(src):
        def grow(a: np.ndarray, new: np.ndarray | None = None) -> np.ndarray:
            return np.concatenate([a, a[src] if new is None else new])

        sub, typ, cell, plmn, roam, direction, bytes_up, bytes_down, ott, voice, data = (
            grow(a) for a in (sub, typ, cell, plmn, roam, direction, bytes_up, bytes_down, ott, voice, data))
        t, duration, dropped = grow(t, redial["t"]), grow(duration, redial["duration"]), grow(dropped, redial["dropped"])
        called = pl.concat([called, called.gather(src)])  # the same two parties again
        n = len(sub)

    order = np.lexsort((sub, t))
    frame = pl.DataFrame(
        {
            "record_id": ids(f"U{tag}", np.arange(n), 9),
            "event_type": pick(("voice", "sms", "data"), typ[order]),
            "subscriber_id": pop.subscriber_id.gather(sub[order]),
            "msisdn": pop.msisdn.gather(sub[order]),
            "started_at": pl.Series(t[order]),
            "duration_s": duration[order],
            "bytes_up": bytes_up[order],
            "bytes_down": bytes_down[order],
            "imsi": pop.imsi.gather(sub[order]),
            "called_number": called.gather(order),
            "direction": pick(("mo", "mt"), direction[order], null=data[order]),
            "cell_id": cells["cell_id"].gather(np.maximum(cell[order], 0)).set(pl.Series(cell[order] < 0), None),
            "visited_plmn": pick(ROAMING_PLMNS, plmn[order], null=~roam[order]),
            "ott_partner_id": pick(OTT_PARTNERS, ott[order], null=ott[order] < 0),
            "is_dropped": pl.Series(dropped[order]).set(pl.Series(~voice[order]), None),
        }
    )
    frame = frame.with_columns(
        _end=pl.col("started_at") + pl.col("duration_s"),
        _cell=pl.Series(cell[order]),
        _is_voice=pl.Series(voice[order]),
        _sub=pl.Series(sub[order]),
    )
    return UsageOut(frame=frame, roamers=int(roaming.any(axis=1).sum()), redial_subs=chains_of)


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


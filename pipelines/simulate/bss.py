"""Simulator: customer lifecycle events (bss.events), history included, vectorised by kind."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.simulate.world import OTT_P, OTT_PARTNERS, PLAN_FEES, PLANS, Clock, Population, ids

DAY = 86400
HOUR = 3600
TICKET_CATEGORIES = ("network_quality", "billing", "device", "contract", "coverage")
CHURN_CATEGORIES = ("network_quality", "coverage", "billing", "billing", "contract")
TERMINATION_REASONS = ("moved_to_competitor", "customer_request", "price", "non_payment")
PAYMENT_METHODS = ("direct_debit", "card", "bank_transfer")
TOPUP_METHODS = ("card", "voucher", "paypal")


@dataclass
class BssOut:
    """The lifecycle events plus what usage generation must respect.

    Attributes:
        frame: one row per event: ``sub`` (index), ``t`` (epoch s), ``kind``, ``plan_id``,
            ``amount`` (decimal text), ``attributes`` (JSON object text).
        suspended: (sub, from_s, to_s) rows: no usage while suspended.
        ott_sub, ott_partner, ott_since: subscribers with an OTT service and since when.
    """

    frame: pl.DataFrame
    suspended: np.ndarray
    ott_sub: np.ndarray
    ott_partner: np.ndarray
    ott_since: np.ndarray


def _obj(**fields: pl.Series | str) -> pl.Expr:
    """A JSON object text from string columns/literals (our values never need escaping)."""
    parts: list[pl.Expr] = []
    for i, (name, value) in enumerate(fields.items()):
        parts.append(pl.lit(("{" if i == 0 else ",") + f'"{name}":"'))
        parts.append(pl.lit(value) if isinstance(value, str) else pl.lit(value).cast(pl.String))
        parts.append(pl.lit('"'))
    parts.append(pl.lit("}"))
    return pl.concat_str(parts)


class _Events:
    """Collects event chunks of one kind at a time."""

    def __init__(self) -> None:
        self.chunks: list[pl.DataFrame] = []

    def add(self, kind: str, sub: np.ndarray, t: np.ndarray, *, plan: np.ndarray | None = None,
            amount: np.ndarray | None = None, attrs: dict[str, pl.Series | str] | None = None) -> None:
        n = len(sub)
        if n == 0:
            return
        cols = {
            "sub": pl.Series(np.asarray(sub, np.int64)),
            "t": pl.Series(np.asarray(t, np.int64)),
            "kind": pl.repeat(kind, n, eager=True),
            "plan_id": pl.Series(np.array(PLANS)[plan]) if plan is not None else pl.repeat(None, n, dtype=pl.String, eager=True),
            "amount": pl.Series(np.asarray(amount).astype(str)) if amount is not None else pl.repeat(None, n, dtype=pl.String, eager=True),
        }
        frame = pl.DataFrame(cols)
        if attrs:
            frame = frame.with_columns(_obj(**attrs).alias("attributes"))
        else:
            frame = frame.with_columns(attributes=pl.lit(None, pl.String))
        self.chunks.append(frame)

    def frame(self) -> pl.DataFrame:
        return pl.concat(self.chunks)


def _uniform(rng: np.random.Generator, low: np.ndarray | int, high: np.ndarray | int, size: int) -> np.ndarray:
    low = np.broadcast_to(np.asarray(low, np.int64), (size,))
    high = np.maximum(np.broadcast_to(np.asarray(high, np.int64), (size,)), low + 1)
    return low + (rng.random(size) * (high - low)).astype(np.int64)


def make_bss(rng: np.random.Generator, pop: Population, clock: Clock, tag: str) -> BssOut:
    """History (activations, past plan changes, OTT) and window events for every subscriber."""
    n, start, end = pop.n, clock.start_s, clock.end_s
    ev = _Events()
    subs = np.arange(n)
    tenure = start - pop.activated_s
    fees = np.array([int(f.replace(".", "")) for f in PLAN_FEES])  # minor units

    # --- history: activation with the first plan, some past plan changes -------------------
    first_plan = pop.plan.copy()
    changed = (tenure > 60 * DAY) & (rng.random(n) < 0.18) & (pop.fraud == 0)
    first_plan[changed] = (pop.plan[changed] + rng.integers(1, 3, int(changed.sum()))) % 3
    ev.add("activated", subs, pop.activated_s, plan=first_plan, attrs={
        "msisdn": pop.msisdn, "imsi": pop.imsi, "country": pl.Series(pop.country),
        "currency": "EUR", "segment": pl.Series(pop.segment)})
    c = np.nonzero(changed)[0]
    ev.add("plan_changed", c, pop.activated_s[c] + (tenure[c] * rng.uniform(0.2, 0.95, len(c))).astype(np.int64),
           plan=pop.plan[c], attrs={"from_plan": pl.Series(np.array(PLANS)[first_plan[c]])})

    # --- OTT services: most active since before the window ---------------------------------
    ott_sub = np.nonzero((rng.random(n) < 0.16) & (pop.fraud == 0))[0]
    ott_partner = rng.choice(len(OTT_PARTNERS), size=len(ott_sub), p=OTT_P)
    in_window = (rng.random(len(ott_sub)) < 0.25) | (pop.activated_s[ott_sub] >= start)
    lo = np.where(in_window, np.maximum(start, pop.activated_s[ott_sub]), pop.activated_s[ott_sub])
    hi = np.where(in_window, end - 6 * HOUR, start)
    ott_since = _uniform(rng, lo + 600, hi, len(ott_sub))
    ev.add("ott_activated", ott_sub, ott_since, attrs={"ott_partner_id": pl.Series(np.array(OTT_PARTNERS)[ott_partner])})

    # --- monthly payments on a billing day; a few fail and are retried ---------------------
    day_starts = start + DAY * np.arange(clock.days)
    dom = np.array([int(s) for s in pl.from_epoch(pl.Series(day_starts), time_unit="s").dt.day()])
    billing_day = rng.integers(1, 29, n)
    ps, pd = np.nonzero(billing_day[:, None] == dom[None, :])
    pt = day_starts[pd] + 6 * HOUR + rng.integers(0, 12 * HOUR, len(ps))
    fails = rng.random(len(ps)) < 0.03
    due = fees[pop.plan[ps]]
    ok = ~fails
    ev.add("payment", ps[ok], pt[ok], amount=_money(due[ok]), attrs={"method": pl.Series(rng.choice(PAYMENT_METHODS, int(ok.sum())))})
    ev.add("payment_failed", ps[fails], pt[fails], amount=_money(due[fails]), attrs={"reason": "insufficient_funds"})
    retry = pt[fails] + rng.integers(2 * DAY, 4 * DAY, int(fails.sum()))
    ev.add("payment", ps[fails], retry, amount=_money(due[fails]), attrs={"method": "card"})

    # --- top-ups, background tickets and plan changes ---------------------------------------
    tu = np.nonzero(rng.random(n) < 0.05)[0]
    ev.add("topup", tu, _uniform(rng, start, end, len(tu)), amount=_money(rng.choice([1000, 1500, 2000, 3000], len(tu))),
           attrs={"method": pl.Series(rng.choice(TOPUP_METHODS, len(tu)))})
    k = rng.poisson(0.004 * clock.days, n)
    ts = np.repeat(subs, k)
    _tickets(ev, rng, ts, _uniform(rng, start, end, len(ts)), TICKET_CATEGORIES, tag, 0)
    pc = np.nonzero((rng.random(n) < 0.015 * clock.days / 7) & (pop.fraud == 0))[0]
    new_plan = (pop.plan[pc] + rng.integers(1, 3, len(pc))) % 3
    ev.add("plan_changed", pc, _uniform(rng, start, end, len(pc)), plan=new_plan,
           attrs={"from_plan": pl.Series(np.array(PLANS)[pop.plan[pc]])})

    # --- suspensions for non-payment: failed payment, suspend, pay, resume ------------------
    sp = np.nonzero((rng.random(n) < 0.01) & (pop.fraud == 0) & (pop.churn_s < 0) & (pop.activated_s < start))[0]
    t_fail = _uniform(rng, start, start + clock.days * DAY // 2, len(sp))
    t_susp = t_fail + rng.integers(12 * HOUR, 36 * HOUR, len(sp))
    t_pay = t_susp + rng.integers(6 * HOUR, 48 * HOUR, len(sp))
    t_res = t_pay + 600
    ev.add("payment_failed", sp, t_fail, amount=_money(fees[pop.plan[sp]]), attrs={"reason": "card_expired"})
    ev.add("suspended", sp, t_susp, attrs={"reason": "non_payment"})
    ev.add("payment", sp, t_pay, amount=_money(fees[pop.plan[sp]]), attrs={"method": "bank_transfer"})
    ev.add("resumed", sp, t_res, attrs={"reason": "payment_received"})
    suspended = np.stack([sp, t_susp, np.where(t_res < end, t_res, end + 30 * DAY)], axis=1) if len(sp) else np.zeros((0, 3), np.int64)

    _churn(ev, rng, pop, clock, tag)

    frame = ev.frame()
    # Nothing after termination, nothing before activation, nothing in the future.
    act = pl.Series(pop.activated_s)
    churn = pl.Series(np.where(pop.churn_s < 0, end + 365 * DAY, pop.churn_s))
    frame = frame.filter(
        ((pl.col("t") >= act.gather(frame["sub"])) | (pl.col("kind") == "activated"))
        & ((pl.col("t") < churn.gather(frame["sub"])) | (pl.col("kind") == "terminated"))
        & (pl.col("t") < end)
    )
    return BssOut(frame=frame, suspended=suspended, ott_sub=ott_sub, ott_partner=ott_partner, ott_since=ott_since)


def complaints(rng: np.random.Generator, hit_sub: np.ndarray, hit_t: np.ndarray, pop: Population, clock: Clock, tag: str) -> pl.DataFrame:
    """Tickets from subscribers whose calls dropped during an incident (hours after the first drop).

    Args:
        hit_sub, hit_t: subscriber index and start of every call dropped on a cell during its incident.

    Returns:
        events in the same columns as ``BssOut.frame``.
    """
    drops = pl.DataFrame({"_sub": np.asarray(hit_sub, np.int64), "started_at": np.asarray(hit_t, np.int64)}).group_by("_sub").agg(
        first=pl.col("started_at").min(), n=pl.len()).sort("_sub")
    sub, first, n = drops["_sub"].to_numpy(), drops["first"].to_numpy(), drops["n"].to_numpy()
    complain = rng.random(len(sub)) < np.where(n >= 2, 0.5, 0.15)
    sub, first = sub[complain], first[complain]
    t = first + rng.integers(HOUR // 2, 24 * HOUR, len(sub))
    ev = _Events()
    _tickets(ev, rng, sub, t, ("network_quality",), tag, 900_000)
    if not ev.chunks:
        return pl.DataFrame()
    limit = pl.Series(np.where(pop.churn_s < 0, clock.end_s, np.minimum(pop.churn_s, clock.end_s)))
    frame = ev.frame()
    return frame.filter(pl.col("t") < limit.gather(frame["sub"]))


def _money(minor: np.ndarray) -> np.ndarray:
    minor = np.asarray(minor, np.int64)
    return np.array([f"{m // 100}.{m % 100:02d}" for m in minor.tolist()], dtype=object) if len(minor) else np.array([], dtype=object)


def _tickets(ev: _Events, rng: np.random.Generator, sub: np.ndarray, t: np.ndarray, categories: tuple[str, ...], tag: str, base: int) -> int:
    """ticket_opened (and mostly ticket_resolved hours later); returns how many were opened."""
    n = len(sub)
    if n == 0:
        return 0
    ticket = ids(f"T{tag}", np.arange(base, base + n), 6)
    category = pl.Series(rng.choice(categories, n))
    ev.add("ticket_opened", sub, t, attrs={"ticket_id": ticket, "category": category})
    resolved = rng.random(n) < 0.8
    ev.add("ticket_resolved", sub[resolved], t[resolved] + rng.integers(HOUR, 48 * HOUR, int(resolved.sum())),
           attrs={"ticket_id": ticket.filter(resolved), "category": category.filter(resolved)})
    return n


def _churn(ev: _Events, rng: np.random.Generator, pop: Population, clock: Clock, tag: str) -> None:
    """Churners: tickets and payment failures rise, some downgrade, then ``terminated``."""
    ch = np.nonzero(pop.churn_s >= 0)[0]
    if len(ch) == 0:
        return
    T = pop.churn_s[ch]
    lo = np.maximum(clock.start_s, T - 21 * DAY)
    k = 1 + rng.poisson(1.5, len(ch))
    ts = np.repeat(ch, k)
    tt = _uniform(rng, np.repeat(lo, k), np.repeat(T - HOUR, k), len(ts))
    _tickets(ev, rng, ts, tt, CHURN_CATEGORIES, tag, 500_000)
    pf = rng.random(len(ch)) < 0.6
    m = np.where(pf, rng.integers(1, 3, len(ch)), 0)
    fs = np.repeat(ch, m)
    fees = np.array([int(f.replace(".", "")) for f in PLAN_FEES])
    ev.add("payment_failed", fs, _uniform(rng, np.repeat(lo, m), np.repeat(T - HOUR, m), len(fs)),
           amount=_money(fees[pop.plan[fs]]), attrs={"reason": pl.Series(rng.choice(["insufficient_funds", "card_declined"], len(fs)))})
    down = (rng.random(len(ch)) < 0.45) & (pop.plan[ch] > 0)
    ds = ch[down]
    ev.add("plan_changed", ds, _uniform(rng, lo[down], T[down] - 2 * HOUR, len(ds)), plan=pop.plan[ds] - 1,
           attrs={"from_plan": pl.Series(np.array(PLANS)[pop.plan[ds]])})
    ev.add("terminated", ch, T, attrs={"reason": pl.Series(rng.choice(TERMINATION_REASONS, len(ch), p=[0.45, 0.25, 0.2, 0.1]))})

"""A deliberately simple reference rater for the tests: per record, in Python, with Fractions.

It shares nothing with sql/billing but the parsed catalog, and is written to be obviously
right rather than fast: loop over events in time order, keep allowance and tier counters in
dicts, compute each charge as an exact fraction and round it once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from pipelines.billing.catalog import Rate, TariffVersion, version_for

ROUNDING = {"up": ROUND_CEILING, "half_up": ROUND_HALF_UP, "down": ROUND_FLOOR}


@dataclass
class Rated:
    record_id: str
    account_id: str
    event_type: str
    included: int
    charged: int
    charge: Decimal
    rate_id: str | None
    tariff_version: int


def round_fraction(value: Fraction, decimals: int, method: str) -> Decimal:
    """Round an exact fraction to ``decimals`` places (half_up: halves away from zero)."""
    scaled = value * 10**decimals
    if method == "up":
        q = -((-scaled.numerator) // scaled.denominator)
    elif method == "down":
        q = scaled.numerator // scaled.denominator
    else:
        sign = -1 if scaled < 0 else 1
        q = sign * int((abs(scaled) * 2 + 1) // 2)
    return (Decimal(q) / Decimal(10**decimals)).quantize(Decimal(1).scaleb(-4))


def band_of(v: TariffVersion, at: datetime) -> str:
    local = at.astimezone(ZoneInfo(v.time_bands.timezone))
    if local.isoweekday() in v.time_bands.weekend_days:
        return "weekend"
    minute = local.hour * 60 + local.minute
    return "peak" if v.time_bands.peak_start_min <= minute < v.time_bands.peak_end_min else "offpeak"


def zone_of(v: TariffVersion, number: str | None) -> str | None:
    best = None
    for prefix, zone in v.destinations.items():
        if number and number.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, zone)
    return best[1] if best else None


def rate_for(v: TariffVersion, event_type: str, zone: str, band: str, roaming: str) -> Rate | None:
    best, best_score = None, -1
    for r in v.rates.values():
        if r.event_type != event_type:
            continue
        if r.zone not in (zone, "any") or r.band not in (band, "any") or r.roaming not in (roaming, "any"):
            continue
        score = 4 * (r.zone != "any") + 2 * (r.roaming != "any") + (r.band != "any")
        if score > best_score:
            best, best_score = r, score
    return best


def ceil_to(q: int, inc: int) -> int:
    return -(-q // inc) * inc


def interval_at(intervals: list[dict], at: datetime) -> dict | None:
    for s in intervals:
        if s["valid_from"] <= at and (s["valid_to"] is None or at < s["valid_to"]):
            return s
    return None


def rate_usage(versions: list[TariffVersion], subscribers: list[dict], usage: list[dict]) -> tuple[dict[str, Rated], dict[str, str]]:
    """Rate ``usage`` (all records of one or more cycles, nothing rated before) from scratch."""
    by_sub = defaultdict(list)
    for s in subscribers:
        by_sub[s["subscriber_id"]].append(s)
    rated: dict[str, Rated] = {}
    unrated: dict[str, str] = {}
    pools: dict[tuple, int] = defaultdict(int)
    pending = []  # (record, version, rate, charged) for the pricing pass
    version_at: dict[datetime, TariffVersion | None] = {}  # versions start on whole minutes
    days_by_cycle: dict[str, dict[tuple[str, str, str], int]] = {}
    for u in sorted(usage, key=lambda u: (u["started_at"], u["record_id"])):
        at, kind = u["started_at"], u["event_type"]
        minute = at.replace(second=0, microsecond=0)
        if minute not in version_at:
            version_at[minute] = version_for(versions, minute)
        qty = {"voice": u["duration_s"], "sms": 1, "data": u["bytes_up"] + u["bytes_down"]}[kind]
        intervals = by_sub.get(u["subscriber_id"])
        if not intervals:
            unrated[u["record_id"]] = "unknown_subscriber"
            continue
        if at < min(s["valid_from"] for s in intervals):
            unrated[u["record_id"]] = "before_activation"
            continue
        state = interval_at(intervals, at)
        if state is None:
            unrated[u["record_id"]] = "no_subscriber_state"
            continue
        if state["status"] == "terminated":
            unrated[u["record_id"]] = "after_termination"
            continue
        v = version_at[minute]
        if v is None:
            unrated[u["record_id"]] = "no_tariff"
            continue
        plan = v.plans.get(state["plan_id"])
        if plan is None:
            unrated[u["record_id"]] = "unknown_plan"
            continue
        if (u.get("direction") or "mo") == "mt":
            rated[u["record_id"]] = Rated(u["record_id"], state["account_id"], kind, 0, 0, Decimal("0.0000"), None, v.version)
            continue
        zone = "any" if kind == "data" else zone_of(v, u.get("called_number"))
        roaming = "home" if not u.get("visited_plmn") else v.roaming_zones.get(u["visited_plmn"])
        rate = rate_for(v, kind, zone, band_of(v, at), roaming) if zone and roaming else None
        reason = ("unknown_destination" if zone is None
                  else "unknown_roaming_zone" if roaming is None else "no_tariff" if rate is None else None)
        if reason:
            unrated[u["record_id"]] = reason
            continue
        included = 0
        cycle = f"{at.year:04d}-{at.month:02d}"  # started_at is UTC
        for a in plan.allowances:
            if a.event_type == kind and (a.zones is None or zone in a.zones) and (a.roaming is None or roaming in a.roaming):
                key = (u["subscriber_id"], cycle, a.allowance_id)
                if cycle not in days_by_cycle:
                    days_by_cycle[cycle] = plan_days(subscribers, cycle)
                days, days_in = days_by_cycle[cycle].get((u["subscriber_id"], state["account_id"], state["plan_id"]), 0), cycle_days(cycle)
                allowance = round_fraction(Fraction(a.quantity_base * days, days_in), 0, "half_up")  # prorated by days at the plan
                included = max(0, min(qty, int(allowance) - pools[key]))
                pools[key] += qty
        pending.append((u, cycle, state, v, rate, included, qty - included))
    # tier totals per (subscriber, cycle, tiers) for volume pricing
    totals: dict[tuple, int] = defaultdict(int)
    for u, cycle, _s, _v, rate, _inc, charged in pending:
        if rate.tiers_id:
            totals[(u["subscriber_id"], cycle, rate.tiers_id)] += ceil_to(charged, rate.increment)
    running: dict[tuple, int] = defaultdict(int)
    for u, cycle, state, v, rate, included, charged in pending:
        charge = Decimal("0.0000")
        if charged > 0:
            cost = Fraction(rate.connect_fee)
            if rate.tiers_id:
                billed = ceil_to(charged, rate.increment)
                key = (u["subscriber_id"], cycle, rate.tiers_id)
                lo, hi = running[key], running[key] + billed
                running[key] = hi
                for t in v.tiers[rate.tiers_id]:
                    t_lo = t.from_units * rate.rate_unit
                    t_hi = None if t.upto_units is None else t.upto_units * rate.rate_unit
                    if t.mode == "graduated":
                        overlap = max(0, min(hi, t_hi if t_hi is not None else hi) - max(lo, t_lo))
                        cost += Fraction(t.price) * overlap / rate.rate_unit
                    elif (totals[key] > t_lo or t_lo == 0) and (t_hi is None or totals[key] <= t_hi):
                        cost += Fraction(t.price) * billed / rate.rate_unit
            else:
                part1 = charged if rate.group2_start is None else min(charged, rate.group2_start)
                billed1 = ceil_to(part1, rate.increment)
                cost += Fraction(rate.price) * billed1 / rate.rate_unit
                if charged > billed1:  # the second interval prices what the first's increments leave
                    cost += Fraction(rate.price2) * ceil_to(charged - billed1, rate.increment2) / rate.rate_unit2
            charge = max(round_fraction(cost, rate.decimals, rate.rounding), rate.min_charge)
            if rate.max_cost is not None:
                charge = min(charge, rate.max_cost)
            charge = charge.quantize(Decimal("0.0001"))
        rated[u["record_id"]] = Rated(u["record_id"], state["account_id"], u["event_type"], included, charged, charge, rate.rate_id, v.version)
    return rated, unrated


def cycle_bounds(cycle: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(cycle + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    return start, (start + timedelta(days=32)).replace(day=1)


def cycle_days(cycle: str) -> int:
    start, end = cycle_bounds(cycle)
    return (end - start).days


def plan_days(subscribers: list[dict], cycle: str) -> dict[tuple[str, str, str], int]:
    """(subscriber, account, plan) -> days of the cycle billed at that plan: each day at the plan
    held at the day's last instant (the end midnight), when active or suspended."""
    start, _end = cycle_bounds(cycle)
    days: dict[tuple, int] = defaultdict(int)
    by_sub = defaultdict(list)
    for s in subscribers:
        by_sub[s["subscriber_id"]].append(s)
    for intervals in by_sub.values():
        for d in range(cycle_days(cycle)):
            day_end = start + timedelta(days=d + 1)
            for s in intervals:  # the interval holding the last instant of the day
                if s["valid_from"] < day_end and (s["valid_to"] is None or s["valid_to"] >= day_end):
                    if s["status"] in ("active", "suspended"):
                        days[(s["subscriber_id"], s["account_id"], s["plan_id"])] += 1
                    break
    return dict(days)


def recurring(versions: list[TariffVersion], subscribers: list[dict], cycle: str) -> dict[tuple[str, str, str], Decimal]:
    """(account, subscriber, plan) -> prorated fee: each day at the plan held at the day's end."""
    _start, end = cycle_bounds(cycle)
    v = version_for(versions, end - timedelta(microseconds=1))
    return {(account, sub, plan): round_fraction(Fraction(v.plans[plan].monthly_fee) * n / cycle_days(cycle), 2, "half_up")
            for (sub, account, plan), n in plan_days(subscribers, cycle).items()}


def one_offs(versions: list[TariffVersion], subscribers: list[dict], events: list[dict], cycle: str) -> dict[str, tuple[str, Decimal]]:
    """event_id -> (account, one-time charge) for the cycle's lifecycle events (first copy of each
    event_id): the price valid at the event time whose event kind and plans match, rounded once."""
    start = datetime.strptime(cycle + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    by_sub = defaultdict(list)
    for s in subscribers:
        by_sub[s["subscriber_id"]].append(s)
    out: dict[str, tuple[str, Decimal]] = {}
    seen = set()
    for e in events:
        if e["event_id"] in seen or not start <= e["occurred_at"] < end:
            continue
        seen.add(e["event_id"])
        state = interval_at(by_sub.get(e["subscriber_id"], []), e["occurred_at"])
        v = version_for(versions, e["occurred_at"])
        if state is None or v is None:
            continue
        for o in v.one_time.values():
            if o.event == e["kind"] and (o.plans is None or e["plan_id"] in o.plans):
                amount = round_fraction(Fraction(o.price), o.decimals, o.rounding)
                if amount > 0:
                    out[e["event_id"]] = (state["account_id"], amount)
    return out


def invoices(versions: list[TariffVersion], subscribers: list[dict], rated: dict[str, Rated], cycle: str,
             events: list[dict] = ()) -> dict[str, dict[str, Decimal]]:
    """account -> {excl, tax, incl} for a cycle whose usage is all in ``rated`` and whose
    lifecycle events (for one-off charges) are ``events``."""
    lines: dict[str, list[Decimal]] = defaultdict(list)
    for account, amount in one_offs(versions, subscribers, list(events), cycle).values():
        lines[account].append(amount)
    for (account, _sub, _plan), amount in recurring(versions, subscribers, cycle).items():
        lines[account].append(amount)
    usage: dict[tuple, Fraction] = defaultdict(Fraction)
    for r in rated.values():
        usage[(r.account_id, r.event_type)] += Fraction(r.charge)
    for (account, _t), total in usage.items():
        lines[account].append(round_fraction(total, 2, "half_up"))
    start = datetime.strptime(cycle + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    v = version_for(versions, end - timedelta(microseconds=1))
    country = {}  # the account's intervals overlapping the cycle all name this one country
    for s in subscribers:
        if s["valid_from"] < end and (s["valid_to"] is None or s["valid_to"] > start):
            assert country.setdefault(s["account_id"], s["country"]) == s["country"], s["account_id"]
    out = {}
    for account, amounts in lines.items():
        excl = sum(amounts, Decimal(0))
        tax = round_fraction(Fraction(excl) * Fraction(v.vat[country[account]]), 2, "half_up")
        out[account] = {"excl": excl.quantize(Decimal("0.0001")), "tax": tax, "incl": (excl + tax).quantize(Decimal("0.0001"))}
    return out

"""The tariff catalog: parse and validate reference/catalog.toml, load versions into Delta."""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pipelines.core.config import REPO_ROOT
from pipelines.core.errors import CatalogError

DEFAULT_CATALOG = REPO_ROOT / "reference" / "catalog.toml"
EVENT_TYPES = ("voice", "sms", "data")
BANDS = ("peak", "offpeak", "weekend", "any")
ROUNDING = ("up", "half_up", "down")
TIER_MODES = ("graduated", "volume")
OTT_MODELS = ("share_of_value", "per_active_subscriber")
UNIT_BASE = {"s": 1, "min": 60, "msg": 1, "kb": 1000, "mb": 1_000_000, "gb": 1_000_000_000}
UNITS_FOR = {"voice": ("s", "min"), "sms": ("msg",), "data": ("kb", "mb", "gb")}
BASE_UNIT = {"voice": "s", "sms": "msg", "data": "byte"}
WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
ONE_TIME_EVENTS = ("activated", "plan_changed", "suspended", "resumed", "terminated")
ENTRY_SECTIONS = ("plans", "rates", "tiers", "roaming_wholesale", "ott_contracts", "one_time_prices")
FLAT_SECTIONS = ("destinations", "roaming_zones", "vat", "time_bands")


@dataclass(frozen=True)
class TimeBands:
    timezone: str
    peak_start_min: int
    peak_end_min: int
    weekend_days: tuple[int, ...]


@dataclass(frozen=True)
class Allowance:
    allowance_id: str
    plan_id: str
    event_type: str
    quantity_base: int
    zones: tuple[str, ...] | None
    roaming: tuple[str, ...] | None


@dataclass(frozen=True)
class Plan:
    plan_id: str
    name: str
    monthly_fee: Decimal
    allowances: tuple[Allowance, ...]


@dataclass(frozen=True)
class Tier:
    tiers_id: str
    mode: str
    seq: int
    from_units: int
    upto_units: int | None
    price: Decimal


@dataclass(frozen=True)
class Rate:
    """One rate; quantities (rate units, increments, group start) are in base units."""

    rate_id: str
    event_type: str
    zone: str
    band: str
    roaming: str
    unit: str
    connect_fee: Decimal
    price: Decimal | None
    rate_unit: int
    increment: int
    group2_start: int | None
    price2: Decimal | None
    rate_unit2: int | None
    increment2: int | None
    tiers_id: str | None
    min_charge: Decimal
    max_cost: Decimal | None
    rounding: str
    decimals: int


@dataclass(frozen=True)
class OneTimePrice:
    """A one-time charge (TMF620 ``priceType = oneTime``) triggered by a BSS lifecycle event."""

    price_id: str
    name: str
    event: str
    plans: tuple[str, ...] | None
    price: Decimal
    rounding: str
    decimals: int


@dataclass
class TariffVersion:
    """One catalog version, fully resolved (base plus the overlays of versions up to it)."""

    version: int
    valid_from: datetime
    description: str
    currency: str
    sha256: str
    time_bands: TimeBands
    destinations: dict[str, str]
    roaming_zones: dict[str, str]
    vat: dict[str, Decimal]
    plans: dict[str, Plan]
    rates: dict[str, Rate]
    tiers: dict[str, list[Tier]]
    wholesale: dict[str, dict[str, Any]]
    ott: dict[str, dict[str, Any]]
    one_time: dict[str, OneTimePrice] = field(default_factory=dict)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _fail(key: str, msg: str) -> CatalogError:
    return CatalogError(f"catalog {key} {msg}" if msg.startswith("= ") else f"catalog {key}: {msg}")


def _dec(d: dict, key: str, where: str, *, default: Any = ..., minimum: Decimal | None = Decimal(0)) -> Decimal | None:
    if key not in d:
        if default is ...:
            raise _fail(f"{where}.{key}", "is required (a decimal string such as \"0.09\")")
        return default
    value = d[key]
    if isinstance(value, float) or isinstance(value, bool):
        raise _fail(f"{where}.{key}", f"= {value!r}: write money and rates as quoted decimal strings, e.g. \"{value}\"")
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise _fail(f"{where}.{key}", f"= {value!r}: not a decimal number") from None
    if not dec.is_finite() or (minimum is not None and dec < minimum):
        raise _fail(f"{where}.{key}", f"= {value!r}: must be a number >= {minimum}")
    if dec.as_tuple().exponent < -6:
        raise _fail(f"{where}.{key}", f"= {value!r}: at most 6 decimals")
    return dec


def _int(d: dict, key: str, where: str, *, default: Any = ..., minimum: int = 1) -> int | None:
    if key not in d:
        if default is ...:
            raise _fail(f"{where}.{key}", f"is required (an integer >= {minimum})")
        return default
    value = d[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(f"{where}.{key}", f"= {value!r}: expected an integer >= {minimum}")
    return value


def _choice(d: dict, key: str, where: str, allowed: tuple[str, ...], *, default: Any = ...) -> str:
    value = d.get(key, default)
    if value is ...:
        raise _fail(f"{where}.{key}", f"is required, one of {', '.join(allowed)}")
    if value not in allowed:
        raise _fail(f"{where}.{key}", f"= {value!r}: expected one of {', '.join(allowed)}")
    return value


def _str(d: dict, key: str, where: str, default: Any = ...) -> str:
    value = d.get(key, default)
    if value is ... or not isinstance(value, str) or not value:
        raise _fail(f"{where}.{key}", f"= {value!r}: expected a non-empty string" if value is not ... else "is required")
    return value


def _hhmm(value: Any, key: str) -> int:
    try:
        hh, mm = str(value).split(":")
        minutes = int(hh) * 60 + int(mm)
    except ValueError:
        raise _fail(key, f"= {value!r}: expected HH:MM") from None
    if not 0 <= minutes <= 24 * 60:
        raise _fail(key, f"= {value!r}: expected HH:MM between 00:00 and 24:00")
    return minutes


def _time_bands(d: dict) -> TimeBands:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    tz = _str(d, "timezone", "time_bands")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail("time_bands.timezone", f"= {tz!r}: not an IANA time zone such as Europe/Berlin") from None
    days = d.get("weekend_days", ["sat", "sun"])
    if not isinstance(days, list) or any(x not in WEEKDAYS for x in days):
        raise _fail("time_bands.weekend_days", f"= {days!r}: expected a list of {', '.join(WEEKDAYS)}")
    start, end = _hhmm(d.get("peak_start", "08:00"), "time_bands.peak_start"), _hhmm(d.get("peak_end", "20:00"), "time_bands.peak_end")
    if start >= end:
        raise _fail("time_bands.peak_end", "must be later than peak_start")
    return TimeBands(tz, start, end, tuple(sorted(WEEKDAYS[x] for x in days)))


def _plan(plan_id: str, d: dict, zones: set[str], roaming_zones: set[str]) -> Plan:
    where = f"plans.{plan_id}"
    allowances = []
    for event_type, a in sorted(d.get("allowances", {}).items()):
        w = f"{where}.allowances.{event_type}"
        if event_type not in EVENT_TYPES:
            raise _fail(w, f"unknown event type; expected one of {', '.join(EVENT_TYPES)}")
        unit = _choice(a, "unit", w, UNITS_FOR[event_type])
        az = a.get("zones")
        ar = a.get("roaming")
        for key, values, known in (("zones", az, zones), ("roaming", ar, roaming_zones)):
            if values is not None and (not isinstance(values, list) or any(v not in known for v in values)):
                raise _fail(f"{w}.{key}", f"= {values!r}: expected a list of {', '.join(sorted(known))}")
        qty = _int(a, "quantity", w, minimum=0)
        allowances.append(Allowance(f"{plan_id}.{event_type}", plan_id, event_type, qty * UNIT_BASE[unit], tuple(az) if az is not None else None, tuple(ar) if ar is not None else None))
    return Plan(plan_id, _str(d, "name", where, plan_id), _dec(d, "monthly_fee", where), tuple(allowances))


def _rate(rate_id: str, d: dict, zones: set[str], roaming_zones: set[str], tiers: dict) -> Rate:
    w = f"rates.{rate_id}"
    event_type = _choice(d, "event_type", w, EVENT_TYPES)
    unit = _choice(d, "unit", w, UNITS_FOR[event_type])
    base = UNIT_BASE[unit]
    zone = _str(d, "zone", w, "any")
    if zone != "any" and (event_type == "data" or zone not in zones):
        allowed = "any" if event_type == "data" else ", ".join(["any", *sorted(zones)])
        raise _fail(f"{w}.zone", f"= {zone!r}: expected {allowed}")
    roaming = _str(d, "roaming", w, "any")
    if roaming not in roaming_zones | {"any"}:
        raise _fail(f"{w}.roaming", f"= {roaming!r}: expected one of any, {', '.join(sorted(roaming_zones))}")
    tiers_id = d.get("tiers")
    if tiers_id is not None and (event_type != "data" or tiers_id not in tiers):
        raise _fail(f"{w}.tiers", f"= {tiers_id!r}: tiers apply to data rates and must name a [tiers.<id>] table")
    price = None if tiers_id else _dec(d, "price", w)
    group2 = _int(d, "group2_start", w, default=None)
    decimals = _int(d, "decimals", w, minimum=0)
    if decimals > 4:
        raise _fail(f"{w}.decimals", f"= {decimals}: at most 4 (charges are stored with 4 decimals)")
    if tiers_id and group2 is not None:
        raise _fail(f"{w}.group2_start", "cannot be combined with tiers")
    return Rate(
        rate_id=rate_id, event_type=event_type, zone=zone, band=_choice(d, "band", w, BANDS, default="any"),
        roaming=roaming, unit=unit, connect_fee=_dec(d, "connect_fee", w, default=Decimal(0)), price=price,
        rate_unit=_int(d, "rate_unit", w) * base, increment=_int(d, "increment", w) * base,
        group2_start=None if group2 is None else group2 * base,
        price2=None if group2 is None else _dec(d, "price2", w),
        rate_unit2=None if group2 is None else _int(d, "rate_unit2", w) * base,
        increment2=None if group2 is None else _int(d, "increment2", w) * base,
        tiers_id=tiers_id, min_charge=_dec(d, "min_charge", w, default=Decimal(0)),
        max_cost=_dec(d, "max_cost", w, default=None), rounding=_choice(d, "rounding", w, ROUNDING), decimals=decimals,
    )


def _tiers(tiers_id: str, d: dict) -> list[Tier]:
    w = f"tiers.{tiers_id}"
    mode = _choice(d, "mode", w, TIER_MODES)
    bands = d.get("bands")
    if not isinstance(bands, list) or not bands:
        raise _fail(f"{w}.bands", "expected a non-empty list of { upto = N, price = \"x\" } (the last without upto)")
    out, lower = [], 0
    for i, b in enumerate(bands):
        upto = _int(b, "upto", f"{w}.bands[{i}]", default=None)
        last = i == len(bands) - 1
        if (upto is None) != last or (upto is not None and upto <= lower):
            raise _fail(f"{w}.bands[{i}].upto", "bounds must increase and only the last band has no upto")
        out.append(Tier(tiers_id, mode, i + 1, lower, upto, _dec(b, "price", f"{w}.bands[{i}]")))
        lower = upto or lower
    return out


def _one_time(price_id: str, d: dict, plans: dict[str, Plan]) -> OneTimePrice:
    w = f"one_time_prices.{price_id}"
    event = _choice(d, "event", w, ONE_TIME_EVENTS)
    only = d.get("plans")
    if only is not None and (not isinstance(only, list) or not only or any(p not in plans for p in only)):
        raise _fail(f"{w}.plans", f"= {only!r}: expected a non-empty list of {', '.join(sorted(plans))}")
    decimals = _int(d, "decimals", w, default=2, minimum=0)
    if decimals > 2:
        raise _fail(f"{w}.decimals", f"= {decimals}: at most 2 (one-off charges are invoice lines in cents)")
    return OneTimePrice(
        price_id=price_id, name=_str(d, "name", w, price_id), event=event, plans=None if only is None else tuple(sorted(only)),
        price=_dec(d, "price", w), rounding=_choice(d, "rounding", w, ROUNDING, default="half_up"), decimals=decimals,
    )


def _one_time_prices(content: dict, plans: dict[str, Plan]) -> dict[str, OneTimePrice]:
    """The one-time prices; at most one may apply to any (event, plan), so an event is charged once."""
    out = {p: _one_time(p, d, plans) for p, d in sorted(content.get("one_time_prices", {}).items())}
    seen: dict[tuple[str, str], str] = {}
    for o in out.values():
        for plan in o.plans or sorted(plans):
            if (o.event, plan) in seen:
                raise _fail(f"one_time_prices.{o.price_id}", f"applies to {o.event} on plan {plan} like one_time_prices.{seen[o.event, plan]}; "
                                                             "an event takes at most one one-time price (narrow `plans`)")
            seen[o.event, plan] = o.price_id
    return out


def _overlay(base: dict, changes: dict, where: str) -> dict:
    merged = copy.deepcopy(base)
    for section, value in changes.items():
        if section not in ENTRY_SECTIONS + FLAT_SECTIONS or not isinstance(value, dict):
            raise _fail(f"{where}.changes.{section}", f"cannot be changed; expected one of {', '.join(ENTRY_SECTIONS + FLAT_SECTIONS)}")
        target = merged.setdefault(section, {})
        for key, entry in value.items():
            if section in ENTRY_SECTIONS and isinstance(entry, dict):
                target.setdefault(key, {}).update(copy.deepcopy(entry))
            else:
                target[key] = copy.deepcopy(entry)
    return merged


def _resolve(meta: dict, content: dict, currency: str) -> TariffVersion:
    destinations = content.get("destinations", {})
    if not destinations or any(not str(p).isdigit() or not isinstance(z, str) for p, z in destinations.items()):
        raise _fail("destinations", "expected \"<digits>\" = \"<zone>\" entries")
    roaming_zones = {str(k): str(v) for k, v in content.get("roaming_zones", {}).items()}
    if "home" in roaming_zones.values() or any("-" not in k for k in roaming_zones):
        raise _fail("roaming_zones", "expected \"MCC-MNC\" = \"<zone>\" entries; \"home\" is reserved for not roaming")
    zones, rzones = set(destinations.values()), set(roaming_zones.values()) | {"home"}
    vat = {c: _dec(content.get("vat", {}), c, "vat") for c in content.get("vat", {})}
    tiers = {t: _tiers(t, d) for t, d in sorted(content.get("tiers", {}).items())}
    plans = {p: _plan(p, d, zones, rzones) for p, d in sorted(content.get("plans", {}).items())}
    rates = {r: _rate(r, d, zones, rzones, tiers) for r, d in sorted(content.get("rates", {}).items())}
    if not plans or not rates or not vat:
        raise _fail("plans/rates/vat", "each needs at least one entry")
    seen: dict[tuple, str] = {}
    for r in rates.values():
        key = (r.event_type, r.zone, r.band, r.roaming)
        if key in seen:
            raise _fail(f"rates.{r.rate_id}", f"matches exactly what rates.{seen[key]} matches ({'/'.join(key)}); one must be more specific")
        seen[key] = r.rate_id
    wholesale = {}
    for plmn, d in sorted(content.get("roaming_wholesale", {}).items()):
        w = f"roaming_wholesale.{plmn}"
        wholesale[plmn] = {"partner": _str(d, "partner", w, plmn), **{k: _dec(d, k, w) for k in ("per_minute", "per_sms", "per_mb")}}
    ott = {}
    for pid, d in sorted(content.get("ott_contracts", {}).items()):
        w = f"ott_contracts.{pid}"
        model = _choice(d, "model", w, OTT_MODELS)
        ott[pid] = {
            "model": model,
            "share_pct": _dec(d, "share_pct", w) if model == "share_of_value" else None,
            "value_per_mb": _dec(d, "value_per_mb", w) if model == "share_of_value" else None,
            "fixed_per_subscriber": _dec(d, "fixed_per_subscriber", w) if model == "per_active_subscriber" else None,
        }
    canonical = json.dumps({"meta": {k: str(v) for k, v in meta.items()}, "content": content, "currency": currency}, sort_keys=True, default=str)
    return TariffVersion(
        version=meta["version"], valid_from=meta["valid_from"], description=meta["description"], currency=currency,
        sha256=hashlib.sha256(canonical.encode()).hexdigest(), time_bands=_time_bands(content.get("time_bands", {})),
        destinations={str(k): v for k, v in destinations.items()}, roaming_zones=roaming_zones, vat=vat, plans=plans,
        rates=rates, tiers=tiers, wholesale=wholesale, ott=ott, one_time=_one_time_prices(content, plans), raw=content,
    )


def parse_catalog(text: str) -> list[TariffVersion]:
    """Parse and validate catalog TOML text into resolved versions, oldest first.

    Raises:
        CatalogError: one line naming the bad key and what is allowed.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog: not valid TOML: {exc}") from None
    currency = doc.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise _fail("currency", f"= {currency!r}: expected an ISO 4217 code such as EUR")
    base = {k: doc[k] for k in ENTRY_SECTIONS + FLAT_SECTIONS if k in doc}
    unknown = set(doc) - set(ENTRY_SECTIONS + FLAT_SECTIONS) - {"currency", "versions"}
    if unknown:
        raise _fail(sorted(unknown)[0], "unknown section")
    entries = doc.get("versions")
    if not isinstance(entries, list) or not entries:
        raise _fail("versions", "expected at least one [[versions]] entry with version and valid_from")
    out, content, last = [], base, 0
    for i, v in enumerate(entries):
        w = f"versions[{i}]"
        number = _int(v, "version", w)
        if number != last + 1:
            raise _fail(f"{w}.version", f"= {number}: versions are numbered 1, 2, 3 ... in order (expected {last + 1})")
        raw_from = v.get("valid_from")
        try:
            valid_from = datetime.fromisoformat(str(raw_from).replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"{w}.valid_from", f"= {raw_from!r}: expected an ISO 8601 time such as 2026-01-01T00:00:00Z") from None
        valid_from = (valid_from if valid_from.tzinfo else valid_from.replace(tzinfo=UTC)).astimezone(UTC)
        if valid_from.second or valid_from.microsecond:
            raise _fail(f"{w}.valid_from", f"= {raw_from!r}: versions start on a whole minute")
        content = _overlay(content, v.get("changes", {}), w)
        meta = {"version": number, "valid_from": valid_from, "description": str(v.get("description", ""))}
        out.append(_resolve(meta, content, currency))
        last = number
    return out


def read_catalog(path: str | Path | None = None) -> list[TariffVersion]:
    """Read and validate the catalog file (default ``reference/catalog.toml``)."""
    path = Path(path or DEFAULT_CATALOG)
    if not path.is_file():
        raise CatalogError(f"catalog file {path} does not exist")
    return parse_catalog(path.read_text())


def version_for(versions: list[TariffVersion], at: datetime) -> TariffVersion | None:
    """The version applicable at ``at``: the highest version whose valid_from is at or before it."""
    applicable = [v for v in versions if v.valid_from <= at]
    return max(applicable, key=lambda v: v.version) if applicable else None

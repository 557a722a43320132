"""Config key types: each key of a config file is declared once with its type, range and default.

A :class:`Spec` checks one value and returns it normalised (ints of a float key become floats,
sizes keep their text, times become aware datetimes) or raises a one-line
:class:`~pipelines.core.errors.ConfigError` naming the key, the value and what is allowed.
Numbers are finite (TOML's ``nan`` and ``inf`` are refused) and bounded, so a value that
passes can be used as it is. ``check_table`` checks a whole table of declared keys.

Example:
    >>> Int(1, 100, default=8).check(7, "streams.shards")
    7
    >>> Num(0, 1, default=0.5, lo_open=True).check(float("nan"), "alerts.drop_rate_above")
    Traceback (most recent call last):
    ...
    pipelines.core.errors.ConfigError: alerts.drop_rate_above = nan: expected a finite number in (0, 1]
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pipelines.core.errors import ConfigError

MAX_SHOWN = 60
SIZE = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,6})?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
UNITS = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
BARE_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def shown(value: Any) -> str:
    """``repr`` of a value, on one line and at most ``MAX_SHOWN`` characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def key_path(*parts: str) -> str:
    """A dotted key for messages; a part that is not a bare TOML key is quoted (one line always)."""
    return ".".join(p if BARE_KEY.match(p) else shown(p) for p in parts)


def refuse(where: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{where} = {shown(value)}: expected {allowed}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


class Spec(ABC):
    """A key's type and range, and its default (None: no default). Subclasses implement ``check``."""

    allowed = "a value"

    def __init__(self, *, default: Any = None) -> None:
        self.default = default

    @abstractmethod
    def check(self, value: Any, where: str) -> Any:
        """``value`` checked (and normalised) for key ``where``; raises ConfigError when it is not allowed."""


class Int(Spec):
    """An integer in ``[lo, hi]`` (a boolean is not an integer; ``8.0`` is not either)."""

    def __init__(self, lo: int, hi: int, *, default: int | None = None) -> None:
        super().__init__(default=default)
        self.lo, self.hi = lo, hi
        self.allowed = f"an integer from {_fmt(lo)} to {_fmt(hi)}"

    def check(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not self.lo <= value <= self.hi:
            raise refuse(where, value, self.allowed)
        return value


class Num(Spec):
    """A finite number in ``[lo, hi]`` (either end open when asked); ints are accepted as floats."""

    def __init__(self, lo: float, hi: float, *, default: float | None = None, lo_open: bool = False,
                 hi_open: bool = False, unit: str = "") -> None:
        super().__init__(default=default)
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        what = f"a finite number{' of ' + unit if unit else ''}"
        self.allowed = f"{what} in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"

    def check(self, value: Any, where: str) -> float:
        if not _number(value) or isinstance(value, int) and abs(value) > 2**53:
            raise refuse(where, value, self.allowed)
        v = float(value)
        low_ok = v > self.lo if self.lo_open else v >= self.lo
        high_ok = v < self.hi if self.hi_open else v <= self.hi
        if not math.isfinite(v) or not low_ok or not high_ok:
            raise refuse(where, value, self.allowed)
        return v


def Seconds(hi: float, *, default: float, zero: bool = False) -> Num:  # noqa: N802 - reads as a type
    """A duration in seconds: positive (or >= 0 with ``zero``) and at most ``hi``."""
    return Num(0, hi, default=default, lo_open=not zero, unit="seconds")


class Bool(Spec):
    allowed = "true or false"

    def check(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise refuse(where, value, self.allowed)
        return value


class Text(Spec):
    """A string: optionally matching ``pattern`` (described by ``what``), non-empty, at most ``max_len``."""

    def __init__(self, *, default: str | None = None, pattern: str | None = None, what: str = "a string",
                 nonempty: bool = False, max_len: int = 4096) -> None:
        super().__init__(default=default)
        self.pattern, self.nonempty, self.max_len = pattern, nonempty, max_len
        self.allowed = what + (" (not empty)" if nonempty and what == "a string" else "")

    def check(self, value: Any, where: str) -> str:
        if (not isinstance(value, str) or len(value) > self.max_len or "\x00" in value or self.nonempty and not value.strip()
                or self.pattern is not None and not re.fullmatch(self.pattern, value)):
            raise refuse(where, value, self.allowed)
        return value


def Choice(*options: str, default: str | None = None) -> Text:  # noqa: N802 - reads as a type
    return Text(default=default, pattern="|".join(re.escape(o) for o in options), what="one of " + ", ".join(options))


URL = r"https?://[A-Za-z0-9.\-_\[\]:]+(?::\d{1,5})?(?:/[A-Za-z0-9._~\-/%]*)?"


def Url(*, default: str) -> Text:  # noqa: N802 - reads as a type
    return Text(default=default, pattern=URL, what="an http(s):// URL without spaces, query or fragment", max_len=2000)


class Memory(Spec):
    """A memory size DuckDB understands, such as ``"2GB"`` or ``"512MiB"``, from 16 MB to 64 TB."""

    allowed = 'a memory size from 16MB to 64TB such as "2GB" or "512MiB" (units KB, MB, GB, TB, KiB, MiB, GiB, TiB)'

    def check(self, value: Any, where: str) -> str:
        m = SIZE.match(value) if isinstance(value, str) else None
        if m is None:
            raise refuse(where, value, self.allowed)
        nbytes = float(m.group(1)) * UNITS[m.group(2).lower()]
        if not 16 * 1000**2 <= nbytes <= 64 * 1000**4:
            raise refuse(where, value, self.allowed)
        return f"{m.group(1)}{m.group(2)}"


class Cron(Spec):
    """A cron expression (5 fields; a 6th is seconds) that fires at least once."""

    allowed = "a cron expression that fires, such as '*/5 * * * *'"

    def check(self, value: Any, where: str) -> str:
        from croniter import croniter

        if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
            raise refuse(where, value, self.allowed)
        try:
            fires = croniter.is_valid(value) and croniter(value, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
        except Exception:  # noqa: BLE001 - croniter raises several types for expressions that never fire
            fires = False
        if not fires:
            raise refuse(where, value, self.allowed)
        return value


class Instant(Spec):
    """A time: an ISO 8601 string or a TOML date-time; no zone means UTC."""

    allowed = "an ISO 8601 time such as 2000-01-01T00:00:00Z"

    def check(self, value: Any, where: str) -> datetime:
        parsed = None
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str) and len(value) <= 64:
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                pass
        if parsed is None:
            raise refuse(where, value, self.allowed)
        try:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except (OverflowError, ValueError):
            raise refuse(where, value, self.allowed) from None


class Day(Spec):
    """A calendar day: ``YYYY-MM-DD`` or a TOML date."""

    allowed = "a date YYYY-MM-DD"

    def check(self, value: Any, where: str) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and len(value) <= 32:
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise refuse(where, value, self.allowed)


class Strings(Spec):
    """A non-empty list of non-empty strings (each at most 4096 characters)."""

    allowed = "a non-empty list of strings"

    def __init__(self, *, default: tuple[str, ...] | None = None, max_items: int = 256) -> None:
        super().__init__(default=default)
        self.max_items = max_items

    def check(self, value: Any, where: str) -> tuple[str, ...]:
        if (not isinstance(value, list) or not value or len(value) > self.max_items
                or not all(isinstance(v, str) and v and len(v) <= 4096 and "\x00" not in v for v in value)):
            raise refuse(where, value, self.allowed)
        return tuple(value)


class Options(Spec):
    """A table of client options (name -> string, integer, boolean or finite number), passed on as text."""

    allowed = "a table of option names to strings, integers, booleans or finite numbers"

    def check(self, value: Any, where: str) -> dict[str, str]:
        if not isinstance(value, dict):
            raise refuse(where, value, self.allowed)
        out = {}
        for k, v in value.items():
            if isinstance(v, bool):
                out[str(k)] = "true" if v else "false"
            elif isinstance(v, str) and "\x00" not in v and len(v) <= 4096:
                out[str(k)] = v
            elif isinstance(v, int) and abs(v) < 2**63 or isinstance(v, float) and math.isfinite(v):
                out[str(k)] = str(v)
            else:
                raise refuse(f"{where}.{key_path(str(k))}", v, "a string, integer, boolean or finite number")
        return out


Check = Callable[[dict[str, Any], str], None]


@dataclass(frozen=True)
class Table:
    """A table of declared keys.

    ``extra`` checks keys not declared, whose names must match ``extra_key`` (without
    ``extra`` they are refused). ``checks`` run on the checked values (defaults filled) for
    rules across keys. ``defaults=False`` leaves missing keys out.
    """

    keys: Mapping[str, Spec | Table] = field(default_factory=dict)
    extra: Spec | Table | None = None
    extra_key: str = r"[A-Za-z0-9_.-]{1,249}"
    extra_name: str = "key"
    checks: tuple[Check, ...] = ()
    defaults: bool = True


def check_table(table: Table, value: Any, where: str = "") -> dict[str, Any]:
    """Check ``value`` (a parsed TOML table) against ``table``; return the values, defaults filled.

    Raises:
        ConfigError: a key is unknown, or a value is not allowed (one line naming the key).
    """
    if not isinstance(value, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        here = f"{where}.{key_path(str(key))}" if where else key_path(str(key))
        spec = table.keys.get(key)
        if spec is None:
            if table.extra is None:
                allowed = ", ".join(sorted(table.keys)) or "none"
                what = "unknown section" if not where else "unknown key"
                raise ConfigError(f"{'[' + here + ']' if not where else here}: {what}; allowed: {allowed}")
            if not re.fullmatch(table.extra_key, str(key)):
                raise ConfigError(f"{here}: not a valid {table.extra_name} name (letters, digits, '.', '_', '-')")
            spec = table.extra
        out[key] = check_table(spec, raw, here) if isinstance(spec, Table) else spec.check(raw, here)
    if table.defaults:
        for key, spec in table.keys.items():
            if key not in out and isinstance(spec, Spec) and spec.default is not None:
                out[key] = spec.check(spec.default, f"{where}.{key}" if where else key)
    for rule in table.checks:
        rule(out, where)
    return out

"""The operator page at ``/``: one server-rendered HTML page over what ``/api/status`` serves.

A Jinja2 template (``page.html`` beside this file), inline SVG sparklines drawn here from the
snapshot's history, no script, no CDN, no build step; the page reloads itself every
``REFRESH_S`` seconds (``<meta http-equiv="refresh">``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pipelines.ops.lake_info import human_age, human_bytes

REFRESH_S = 5
HERE = Path(__file__).resolve().parent


def sparkline(values: list[float | None], *, width: int = 160, height: int = 28, label: str = "") -> Markup:
    """An inline SVG polyline of ``values`` (None: a gap), scaled to its own maximum."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    top = max((v for _i, v in points), default=0) or 1
    step = width / max(1, len(values) - 1)
    coords = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in points)
    last = points[-1][1] if points else None
    title = f"{label}: last {last:g}, max {top:g} over {len(values)} refreshes" if points else f"{label}: no data yet"
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        f"<title>{title}</title><polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{coords}\"/></svg>"
    )


def _series(history: list[dict], part: str, key: str) -> list[float | None]:
    return [h.get(part, {}).get(key) for h in history]


def _age_of(at: str | None, now: datetime) -> str:
    if not at:
        return "-"
    return human_age((now - datetime.fromisoformat(at)).total_seconds())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _error_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:240] if lines else ""


def _when(at: str | None) -> str:
    """An ISO instant as ``YYYY-MM-DD HH:MM`` (UTC, as every time in the lake)."""
    return at[:16].replace("T", " ") if at else "-"


def _crash_line(text: str | None) -> str:
    """A component's last error without its leading ``exit code N:`` (the page shows the code beside it)."""
    return _error_line(re.sub(r"^exit code -?\d+:?\s*", "", text or ""))


_env = Environment(loader=FileSystemLoader(HERE), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
_env.filters.update(age=human_age, size=human_bytes, duration=_duration, error_line=_error_line, crash_line=_crash_line,
                    when=_when)


def render(status: dict, *, docs_url: str | None = None) -> str:
    """The page for ``status`` (the dict ``/api/status`` serves)."""
    now = datetime.now(UTC)
    history = status.get("history") or []
    groups = sorted({r["group"] for r in status.get("lag") or []})
    topics = [t["topic"] for t in status.get("topics") or []]
    sparks = {
        "lag": {g: sparkline(_series(history, "lag", g), label=f"{g} lag (records)") for g in groups},
        "lag_seconds": {g: sparkline(_series(history, "lag_seconds", g), label=f"{g} max lag (s)") for g in groups},
        "landed": {t: sparkline(_series(history, "landed", t), label=f"{t} rows landed") for t in topics},
    }
    return _env.get_template("page.html").render(
        st=status, now=now, refresh_s=REFRESH_S, sparks=sparks, docs_url=docs_url,
        age_of=lambda at: _age_of(at, now),
    )

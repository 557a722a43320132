"""Simulator: which records of a topic arrive late, twice or malformed, drawn for the whole window.

The choices are small (about 1 % of the records) and drawn once for the window, so the whole
window path and the day-by-day path plant the same defects; each path then applies them to
the records it holds (all of them, or one day's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipelines.core.contracts import Contract
from pipelines.simulate.wire import MALFORMED_KINDS, UNKEYED, Malformed, malformed

LATE_MIN_MS, LATE_MAX_MS = 2 * 3_600_000, 3 * 86_400_000
DUP_MIN_MS, DUP_MAX_MS = 60_000, 30 * 60_000


@dataclass
class Defects:
    """The defects planted in one topic of ``n`` records (positions in record order).

    Attributes:
        late_pos, late_extra: late records (ascending) and how long after their event ended they arrive (ms).
        dup_src, dup_delay: records sent twice (ascending) and the copy's delay after the original (ms).
        bad: (arrival ms, malformed record) per planted malformed record, in origin order.
        bad_origin: the record each malformed one was made from (ascending).
        bad_key: its Kafka key (None for records that are not JSON).
    """

    n: int
    late_pos: np.ndarray
    late_extra: np.ndarray
    dup_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dup_delay: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bad: list[tuple[int, Malformed]] = field(default_factory=list)
    bad_origin: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bad_key: list[bytes | None] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Records on the topic: every record, its copies and the malformed ones."""
        return self.n + len(self.dup_src) + len(self.bad)

    def late_in(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(position - lo, extra ms) of the late records among positions ``lo``..``hi``."""
        a, b = np.searchsorted(self.late_pos, [lo, hi])
        return self.late_pos[a:b] - lo, self.late_extra[a:b]

    def late_of(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(is late, extra ms where it is) of given positions."""
        if not len(self.late_pos):
            return np.zeros(len(pos), bool), np.zeros(len(pos), np.int64)
        i = np.minimum(np.searchsorted(self.late_pos, pos), len(self.late_pos) - 1)
        return self.late_pos[i] == pos, self.late_extra[i]


def nth_outside(holes: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The ``k``-th (0-based) non-negative integer not in ``holes`` (sorted, distinct)."""
    if not len(holes):
        return np.asarray(k, np.int64)
    return np.asarray(k, np.int64) + np.searchsorted(holes - np.arange(len(holes)), k, side="right")


def plan_defects(rng: np.random.Generator, contract: Contract, n: int, *, late_rate: float, duplicate_rate: float,
                 malformed_rate: float, tag: str, late_pool: tuple[int, Callable[[np.ndarray], np.ndarray]] | None,
                 arrival_at: Callable[[np.ndarray], np.ndarray], end_ms_at: Callable[[np.ndarray], np.ndarray],
                 records_at: Callable[[np.ndarray], tuple[list[bytes], list[bytes]]]) -> Defects:
    """Draw a topic's late, duplicate and malformed records (after its arrival delays were drawn).

    Args:
        n: records of the topic in record order.
        late_pool: (how many may arrive late, their k-th -> its position); None: all may.
        arrival_at, end_ms_at: arrival (before lateness) and event end (ms) of given positions.
        records_at: (wire values, Kafka keys) of given positions.
    """
    topic = contract.topic
    size, to_pos = late_pool if late_pool is not None else (n, lambda k: np.asarray(k, np.int64))
    n_late = min(size, int(round(late_rate * size)))
    late = to_pos(rng.choice(size, size=n_late, replace=False)) if n_late else np.zeros(0, np.int64)
    extra = np.exp(rng.uniform(np.log(LATE_MIN_MS), np.log(LATE_MAX_MS), n_late)).astype(np.int64)
    order = np.argsort(late)
    out = Defects(n=n, late_pos=late[order], late_extra=extra[order])

    if topic == "usage.events" and duplicate_rate > 0:
        on_time = n - n_late
        n_dup = min(on_time, int(round(duplicate_rate * n)))
        out.dup_src = np.sort(nth_outside(out.late_pos, rng.choice(on_time, size=n_dup, replace=False)))
        out.dup_delay = rng.integers(DUP_MIN_MS, DUP_MAX_MS, n_dup)

    if malformed_rate > 0 and n:
        share = 1.0 if topic == "usage.events" else 0.25
        n_bad = max(1, int(round(malformed_rate * n * share)))
        origin = np.sort(rng.choice(n, size=min(n, n_bad), replace=False))
        kinds = [MALFORMED_KINDS[i % len(MALFORMED_KINDS)] for i in rng.permutation(len(origin))]
        prefix = {"usage.events": "U", "network.events": "N", "bss.events": "B"}[topic] + tag + "M"
        is_late, late_extra = out.late_of(origin)
        arrival = np.where(is_late, end_ms_at(origin) + late_extra, arrival_at(origin)) if len(origin) else np.zeros(0, np.int64)
        values, keys = records_at(origin)
        for j, (o_arrival, value, kind) in enumerate(zip(arrival.tolist(), values, kinds, strict=True)):
            out.bad.append((int(o_arrival) + int(rng.integers(0, 60_000)), malformed(rng, contract, value, kind, f"{prefix}{j:07d}")))
        out.bad_origin = origin
        out.bad_key = [None if m.kind in UNKEYED else k for (_, m), k in zip(out.bad, keys, strict=True)]
    return out

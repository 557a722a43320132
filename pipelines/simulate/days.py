"""The simulator day by day: the same records as ``simulate``, in bounded memory.

``simulate`` draws each quantity for every record of the window in one call; its memory grows
with days x subscribers (about 1 KB a record). :func:`simulate_days` gets the same bytes in
three steps:

1. **Usage, block by block.** Subscribers are split into blocks; each quantity has a named
   stream of its own (:mod:`pipelines.simulate.draws`) started where the single generator would
   have started it, found by replaying the window's draws once per data-dependent count (how
   many events, how many were kept, how many call fresh numbers). Each block's records, as
   small numeric columns, are spilled to a temporary directory, split by event day.
2. **The rest, for the window.** KPI counters (a few cells at a time, kept as small integer
   arrays), alarms, complaints, the lifecycle, and the defect choices (which records arrive
   late, twice or malformed: about 1 % of them) are drawn as ``simulate`` draws them.
3. **Arrival days.** Iterating yields one ``SimResult`` per arrival day (UTC), records in
   arrival order: each event day is built from its spill, its arrival delays drawn from their
   stream, and records arriving on a later day (late ones, those just before midnight) wait.

Example:
    >>> from datetime import date
    >>> days = simulate_days(SimConfig(subscribers=50, days=2, start=date(2026, 10, 1)))
    >>> days.planted.per_topic["usage.events"] == sum(len(d.values.get("usage.events", [])) for d in days)
    True
    >>> days.close()
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.core.contracts import CONTRACTS, Contract
from pipelines.simulate.bss import complaints
from pipelines.simulate.defects import Defects, nth_outside, plan_defects
from pipelines.simulate.draws import CHUNK, Cursor, Streams, at_state
from pipelines.simulate.generate import (
    KEY_FIELD,
    Planted,
    SimConfig,
    SimResult,
    World,
    bss_arrival,
    bss_frame,
    count_defects,
    defect_rates,
    fill_planted,
    make_world,
    network_arrival,
    usage_arrival,
)
from pipelines.simulate.network import alarms, call_counts, intervals, kpi_arrays, network_rows
from pipelines.simulate.usage import (
    FIXED,
    INTERNATIONAL,
    MOBILE,
    NO_EVENTS,
    NO_FRAUD,
    UsageWorld,
    concat_rows,
    contacts,
    event_counts,
    fraud_calls,
    fraud_numbers,
    incident_mask,
    normal_events,
    redial_rows,
    redials,
    take_rows,
    usage_block,
    usage_frame,
    usage_world,
)
from pipelines.simulate.wire import encode, wire_frame

DAY_MS = 86_400_000
BLOCK_EVENTS = 250_000  # usage events per block (about 60 MB of columns while it is drawn)
ENCODE_ROWS = 20_000  # records encoded to JSON at a time (bounds the text buffers)
EVENTS_PER_DAY = 45  # a generous mean per subscriber-day, to size the blocks
# The spilled columns and the small types they fit (they are widened back to int64 on load).
SPILL_TYPES = {"sub": np.int32, "typ": np.int8, "t": np.int64, "duration": np.int32, "bytes_up": np.int64,
               "bytes_down": np.int64, "cell": np.int16, "plmn": np.int8, "roam": np.bool_, "direction": np.int8,
               "ott": np.int8, "dropped": np.bool_}
FRESH_P = (0.35, 0.6)  # national fixed, national mobile shares of fresh called numbers (usage_block)


def simulate_days(cfg: SimConfig, *, workdir: str | Path | None = None, block_subscribers: int | None = None) -> SimDays:
    """Plan ``cfg``'s window and return it as arrival days (iterate for one ``SimResult`` per day).

    Same config, same bytes as ``simulate(cfg)``: every topic's values, keys and timestamps, in
    the same order, and the same planted summary (known before the first day is built).

    Args:
        workdir: where the usage spill goes (a temporary directory inside it; default: the
            system's temporary directory). About 70 bytes per usage record on disk.
        block_subscribers: subscribers per usage block (default: about 250,000 events a block).
    """
    return SimDays(cfg, workdir=workdir, block_subscribers=block_subscribers)


@dataclass
class _Spill:
    """Usage records spilled by event day: ``dir/<day>/<block>.arrow``; ``counts[d]`` records of day d."""

    dir: Path
    counts: np.ndarray
    w: UsageWorld
    tag: str

    @property
    def first(self) -> np.ndarray:
        """Number of the first record of each day (records are numbered in event-time order)."""
        return np.concatenate([[0], np.cumsum(self.counts)])

    def day(self, d: int) -> pl.DataFrame:
        """The usage frame of event day ``d`` (numbered, in record order)."""
        rows = self._rows(d)
        first = int(self.first[d])
        return usage_frame(rows, np.arange(first, first + len(rows["sub"])), self.w, self.tag)

    def at(self, positions: np.ndarray) -> pl.DataFrame:
        """The usage frame of given record positions (ascending)."""
        first = self.first
        day_of = np.searchsorted(first, positions, side="right") - 1
        parts = []
        for d in np.unique(day_of).tolist():
            pos = positions[day_of == d]
            rows = take_rows(self._rows(d), pos - first[d])
            parts.append(usage_frame(rows, pos, self.w, self.tag))
        return pl.concat(parts) if parts else self.day(0).head(0)

    def _rows(self, d: int) -> dict[str, np.ndarray | pl.Series]:
        files = sorted((self.dir / f"{d:05d}").glob("*.arrow"))
        frame = pl.concat([pl.read_ipc(f) for f in files]) if files else None
        if frame is None or frame.height == 0:
            return {**{k: np.zeros(0, np.int64 if t is not np.bool_ else bool) for k, t in SPILL_TYPES.items()},
                    "called": pl.Series([], dtype=pl.String)}
        rows: dict[str, np.ndarray | pl.Series] = {
            k: frame[k].to_numpy().astype(bool if t is np.bool_ else np.int64) for k, t in SPILL_TYPES.items()}
        rows["called"] = frame["called"]
        order = np.lexsort((rows["sub"], rows["t"]))  # stable: ties stay in event order
        return take_rows(rows, order)


class SimDays:
    """A planned simulation: ``config``, ``planted``; iterate for its arrival days.

    Holds a temporary directory with the usage spill until ``close()`` (or garbage collection).
    Each iteration rebuilds the days from the spill, so the window can be read more than once.
    """

    def __init__(self, cfg: SimConfig, *, workdir: str | Path | None, block_subscribers: int | None) -> None:
        self.config = cfg
        self._dir = Path(tempfile.mkdtemp(prefix="telcolake-sim-", dir=workdir))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        w = make_world(cfg)
        self._world = w
        uw, spill, calls, drops, hits, chains = _plan_usage(w, self._dir / "usage", block_subscribers)
        self._usage = spill
        n_cells = w.cells.height
        self._kpi = kpi_arrays(w.streams[5], w.clock, n_cells, calls, drops, w.incidents, cfg.kpi_interval_s)
        self._alarms = alarms(w.streams[5], w.clock, n_cells, w.incidents)
        tickets = complaints(w.streams[5], hits[0], hits[1], w.pop, w.clock, w.tag)
        self._bss = bss_frame(w, tickets)
        self._net_first, self._alarm_pos = self._network_layout()

        self.planted = Planted(roamers=int(uw.roaming.any(axis=1).sum()))
        self.planted.redial_chains = w.pop.subscriber_id.gather(chains).to_list()
        cursor = Cursor(w.streams[4])
        self._plans: dict[str, Defects] = {}
        rates = defect_rates(cfg)
        n_u = int(spill.counts.sum())
        cursor.draw("usage.arrival", n_u, lambda r, k: r.exponential(25_000, k))
        rows_u = _Memo(spill.at)
        self._plans["usage.events"] = plan_defects(
            cursor.rng, CONTRACTS["usage.events"], n_u, tag=w.tag, late_pool=None,
            arrival_at=lambda pos: _arrival_at(cursor.starts["usage.arrival"], pos, rows_u(pos), usage=True),
            end_ms_at=lambda pos: rows_u(pos)["_end"].to_numpy() * 1000,
            records_at=lambda pos: _records(rows_u(pos), CONTRACTS["usage.events"]), **rates)
        n_net = int(self._net_first[-1])
        cursor.draw("network.arrival", n_net, lambda r, k: r.integers(1000, 30_000, k))
        rows_n = _Memo(self._network_at)
        n_kpi = n_net - len(self._alarm_pos)
        self._plans["network.events"] = plan_defects(
            cursor.rng, CONTRACTS["network.events"], n_net, tag=w.tag, late_pool=(n_kpi, lambda k: nth_outside(self._alarm_pos, k)),
            arrival_at=lambda pos: _arrival_at(cursor.starts["network.arrival"], pos, rows_n(pos), usage=False),
            end_ms_at=lambda pos: rows_n(pos)["_end"].to_numpy() * 1000,
            records_at=lambda pos: _records(rows_n(pos), CONTRACTS["network.events"]), **rates)
        bss = self._bss
        bss_values, bss_keys = _records(bss, CONTRACTS["bss.events"])
        bss_when = bss_arrival(bss, w.clock).astype(np.int64)
        self._plans["bss.events"] = plan_defects(
            cursor.rng, CONTRACTS["bss.events"], bss.height, tag=w.tag, late_pool=(0, lambda k: k),
            arrival_at=lambda pos: bss_when[pos], end_ms_at=lambda pos: bss["_end"].to_numpy()[pos] * 1000,
            records_at=lambda pos: ([bss_values[i] for i in pos.tolist()], [bss_keys[i] for i in pos.tolist()]), **rates)
        self._starts = cursor.starts
        for topic in CONTRACTS:
            count_defects(self.planted, topic, self._plans[topic])
        fill_planted(self.planted, w)

    # --- network layout: rows per day and where the alarms sit among the KPI samples --------

    def _network_layout(self) -> tuple[np.ndarray, np.ndarray]:
        k, al, clock = self._kpi, self._alarms, self._world.clock
        n_cells, interval = k.attempts.shape[0], k.interval_s
        per_day = 86400 // interval
        t = al["observed_at"].to_numpy()
        day = (t - clock.start_s) // 86400
        rows = np.full(clock.days, n_cells * per_day) + np.bincount(day, minlength=clock.days)
        # An alarm follows every sample observed before it and the samples of cells up to its own
        # observed at the same second (samples before alarms on ties), and the alarms before it.
        cell = al["cell"].to_numpy()
        since = t - clock.start_s
        before = np.clip((since + interval - 1) // interval, 0, k.n_int)
        on_grid = (since % interval == 0) & (since // interval < k.n_int)
        rank = np.empty(len(t), np.int64)
        rank[np.lexsort((cell, t))] = np.arange(len(t))
        pos = n_cells * before + np.where(on_grid, cell + 1, 0) + rank
        return np.concatenate([[0], np.cumsum(rows)]), np.sort(pos)

    def _network_day(self, d: int) -> pl.DataFrame:
        per_day = 86400 // self._kpi.interval_s
        return network_rows(self._kpi, self._alarms, self._world.cells, self._world.tag, d * per_day, (d + 1) * per_day,
                            int(self._net_first[d]))

    def _network_at(self, positions: np.ndarray) -> pl.DataFrame:
        day_of = np.searchsorted(self._net_first, positions, side="right") - 1
        parts = [self._network_day(d)[positions[day_of == d] - int(self._net_first[d])] for d in np.unique(day_of).tolist()]
        return pl.concat(parts) if parts else self._network_day(0).head(0)

    # --- arrival days ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[SimResult]:
        if not self._cleanup.alive:
            raise ValueError("SimDays is closed")
        clock = self._world.clock
        usage_gen = at_state(self._starts["usage.arrival"])
        network_gen = at_state(self._starts["network.arrival"])
        queues = {topic: _Queue(CONTRACTS[topic], self._plans[topic]) for topic in CONTRACTS}
        bss = self._bss
        queues["bss.events"].add(bss, bss_arrival(bss, clock).astype(np.int64), 0)
        usage_days, network_days = len(self._usage.counts), clock.days
        first_day = clock.start_s * 1000 // DAY_MS - 1
        start_day = clock.start_s * 1000 // DAY_MS
        a = min(first_day, int(queues["bss.events"].earliest() // DAY_MS)) if bss.height else first_day
        while True:
            d = a - start_day  # event days up to the arrival day are all that can arrive on it
            if 0 <= d < usage_days:
                frame = self._usage.day(d)
                queues["usage.events"].add(frame, usage_arrival(usage_gen, frame["_end"].to_numpy()), int(self._usage.first[d]))
                del frame
            if 0 <= d < network_days:
                frame = self._network_day(d)
                queues["network.events"].add(frame, network_arrival(network_gen, frame["_end"].to_numpy()), int(self._net_first[d]))
                del frame
            chunk = SimResult(config=self.config, values={}, keys={}, timestamps={}, planted=self.planted)
            for queue in queues.values():
                queue.pop_until((a + 1) * DAY_MS, chunk)
            if chunk.values:
                yield chunk
            del chunk  # a day at a time: not while the next one is built
            if d >= max(usage_days, network_days) and all(q.empty for q in queues.values()):
                return
            a += 1

    def close(self) -> None:
        """Remove the usage spill."""
        self._cleanup()

    def __enter__(self) -> SimDays:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Memo:
    """The last answer of ``fn`` for the same positions (the defect planner asks three times)."""

    def __init__(self, fn) -> None:
        self.fn, self.key, self.value = fn, None, None

    def __call__(self, pos: np.ndarray) -> pl.DataFrame:
        key = pos.tobytes()
        if key != self.key:
            self.key, self.value = key, self.fn(pos)
        return self.value


def _records(frame: pl.DataFrame, contract: Contract) -> tuple[list[bytes], list[bytes]]:
    return encode(wire_frame(frame, contract), contract).tolist(), frame[KEY_FIELD[contract.topic]].cast(pl.Binary).to_list()


def _arrival_at(start: dict, positions: np.ndarray, frame: pl.DataFrame, *, usage: bool) -> np.ndarray:
    """Arrival (before lateness) of given positions: their values of the arrival stream, replayed."""
    rng, out, n = at_state(start), np.zeros(len(positions), np.int64), int(positions.max()) + 1 if len(positions) else 0
    end_s = frame["_end"].to_numpy()
    for lo in range(0, n, CHUNK):
        k = min(CHUNK, n - lo)
        at = np.nonzero((positions >= lo) & (positions < lo + k))[0]
        delay = (usage_arrival if usage else network_arrival)(rng, np.zeros(k, np.int64))  # the stream's values alone
        out[at] = delay[positions[at] - lo]
    return end_s * 1000 + out


class _Queue:
    """One topic's records waiting for their arrival day, as a frame sorted on emission."""

    def __init__(self, contract: Contract, plan: Defects) -> None:
        self.contract, self.plan = contract, plan
        self.pending: pl.DataFrame | None = None

    @property
    def empty(self) -> bool:
        return self.pending is None or self.pending.height == 0

    def earliest(self) -> int:
        return int(self.pending["_when"].min()) if not self.empty else 0

    def add(self, frame: pl.DataFrame, arrival: np.ndarray, first: int) -> None:
        """Records ``first``.. (``frame``, with their arrival before lateness), their copies and malformed ones."""
        plan, n = self.plan, frame.height
        wire = wire_frame(frame, self.contract)
        values = pl.concat([pl.Series(encode(wire.slice(lo, ENCODE_ROWS), self.contract).tolist(), dtype=pl.Binary)
                            for lo in range(0, max(n, 1), ENCODE_ROWS)])  # a record's JSON does not depend on its neighbours
        keys = frame[KEY_FIELD[self.contract.topic]].cast(pl.Binary)
        end_ms = frame["_end"].to_numpy() * 1000
        arrival = arrival.astype(np.int64)
        idx, extra = plan.late_in(first, first + n)
        arrival[idx] = end_ms[idx] + extra
        good = wire.with_columns(_when=pl.Series(arrival), _grp=pl.lit(0, pl.Int8), _pos=pl.Series(np.arange(first, first + n)),
                                 _value=values, _key=keys, _bad=pl.lit(-1, pl.Int64))
        parts = [good]
        a, b = np.searchsorted(plan.dup_src, [first, first + n])
        if b > a:
            src = plan.dup_src[a:b] - first
            parts.append(good[src].with_columns(_when=pl.Series(arrival[src] + plan.dup_delay[a:b]), _grp=pl.lit(1, pl.Int8),
                                                _pos=pl.Series(np.arange(a, b, dtype=np.int64))))
        a, b = np.searchsorted(plan.bad_origin, [first, first + n])
        if b > a:
            parts.append(pl.DataFrame({
                "_when": pl.Series([plan.bad[j][0] for j in range(a, b)], dtype=pl.Int64),
                "_grp": pl.Series([2] * (b - a), dtype=pl.Int8),
                "_pos": pl.Series(np.arange(a, b, dtype=np.int64)),
                "_value": pl.Series([plan.bad[j][1].value for j in range(a, b)], dtype=pl.Binary),
                "_key": pl.Series(plan.bad_key[a:b], dtype=pl.Binary),
                "_bad": pl.Series(np.arange(a, b, dtype=np.int64)),
            }))
        if self.pending is not None:
            parts.insert(0, self.pending)
        self.pending = pl.concat(parts, how="diagonal_relaxed")

    def pop_until(self, cutoff_ms: int, chunk: SimResult) -> None:
        """Move the records arriving before ``cutoff_ms`` into ``chunk``, in arrival order."""
        if self.empty:
            return
        pending = self.pending
        order = (pending.select("_when", "_grp", "_pos", "_bad").with_row_index("_i")
                 .filter(pl.col("_when") < cutoff_ms).sort("_when", "_grp", "_pos"))
        if not order.height:
            return
        self.pending = pending.filter(pl.col("_when") >= cutoff_ms)
        topic = self.contract.topic
        at = order["_i"]
        chunk.values[topic] = pending["_value"].gather(at).to_list()
        chunk.keys[topic] = pending["_key"].gather(at).to_list()
        chunk.timestamps[topic] = order["_when"].to_list()
        good = order.filter(pl.col("_bad") < 0)
        rows = pending.select(self.contract.schema.names)[good["_i"]]  # one copy of the day's columns
        chunk.rows[topic] = rows.with_columns(_arrival_ms=good["_when"])
        chunk.malformed_rows[topic] = [(w, self.plan.bad[j][1]) for w, j in
                                       order.filter(pl.col("_bad") >= 0).select("_when", "_bad").iter_rows()]


def _plan_usage(w: World, spill_dir: Path, block_subscribers: int | None):
    """Draw every usage record block by block into a day spill (see the module docstring).

    Returns:
        (usage world, spill, voice calls and drops per (cell, interval), (subscriber, start) of
        the calls dropped during incidents, subscriber index of every redial chain).
    """
    cfg, pop, clock = w.cfg, w.pop, w.clock
    cursor = Cursor(w.streams[3])
    uw = usage_world(cursor.rng, pop, clock, w.cells, w.bss, w.incidents)
    per_block = block_subscribers or max(1, BLOCK_EVENTS // (EVENTS_PER_DAY * cfg.days))
    blocks = [slice(lo, min(pop.n, lo + per_block)) for lo in range(0, pop.n, per_block)]

    # 1. How many Poisson events, then how many of them are kept (their start times decide).
    cursor.mark("counts")
    n_raw = 0
    for b in blocks:
        n_raw += len(event_counts(lambda _name: cursor.rng, uw, b)[0])
    cursor.draw("t", n_raw, lambda r, k: r.integers(0, 3600, k))
    replay = cursor.streams("counts", "t")
    n_keep = n_boxed = n_data = 0
    for b in blocks:
        sub, typ, _, _ = normal_events(replay, uw, b)
        n_keep, n_boxed, n_data = n_keep + len(sub), n_boxed + int((pop.fraud[sub] == 1).sum()), n_data + int((typ == 2).sum())
    fraud = fraud_calls(cursor.rng, pop, clock)
    n = n_keep + len(fraud["sub"])
    n_boxed += int((pop.fraud[fraud["sub"]] == 1).sum())
    cursor.skip("cell", n)
    cursor.skip("nearby", n)
    cursor.skip("boxed", n_boxed)
    book = contacts(cursor.rng, pop)
    cursor.draw("contact", n, lambda r, k: r.pareto(1.2, k))
    cursor.skip("fresh", n)
    cursor.mark("fresh.kind")

    # 2. How many events call fresh numbers, and of which kind (national fixed, mobile, international).
    replay = cursor.streams("counts", "t", "fresh", "fresh.kind")
    p = [FRESH_P[0], FRESH_P[1], max(0.0, 1 - FRESH_P[0] - FRESH_P[1])]
    kinds = np.zeros(3, np.int64)
    for b in [*blocks, None]:
        if b is None:
            typ, is_fraud = np.zeros(len(fraud["sub"]), np.int64), np.ones(len(fraud["sub"]), bool)
        else:
            typ = normal_events(replay, uw, b)[1]
            is_fraud = np.zeros(len(typ), bool)
        fresh = (typ < 2) & ((replay("fresh").random(len(typ)) < 0.15) | is_fraud)
        kinds += np.bincount(replay("fresh.kind").choice(3, size=int(fresh.sum()), p=p), minlength=3)
    cursor.skip("fresh.kind", int(kinds.sum()))
    for k, plan in enumerate((FIXED, MOBILE, INTERNATIONAL)):
        if kinds[k]:
            cursor.draw(f"fresh{k}.which", int(kinds[k]), lambda r, c, m=len(plan): r.integers(0, m, c))
            cursor.skip(f"fresh{k}.digits", int(kinds[k]))
    n_box, n_intl = int((~fraud["intl"]).sum()), int(fraud["intl"].sum())
    fraud_book = fraud_numbers(cursor.rng, n_box, n_intl) if (n_box or n_intl) else None
    cursor.skip("direction", n)
    cursor.draw("voice_s", n, lambda r, k: r.lognormal(np.log(75), 1.0, k))
    cursor.draw("box_s", n, lambda r, k: r.lognormal(np.log(45), 0.6, k))
    cursor.draw("intl_s", n, lambda r, k: r.lognormal(np.log(150), 0.5, k))
    cursor.draw("data_s", n_data, lambda r, k: r.lognormal(np.log(200), 1.3, k))
    if uw.ott_has is not None:
        cursor.skip("ott", n)
    cursor.draw("down", n, lambda r, k: r.lognormal(0.0, 1.2, k))
    cursor.skip("up", n)
    cursor.skip("drop", n)
    cursor.skip("drop_s", n)

    # 3. The records, block by block, spilled by event day.
    streams: Streams = cursor.streams()
    n_cells, n_int = w.cells.height, intervals(clock, cfg.kpi_interval_s)
    calls = np.zeros(n_cells * n_int, np.int64)
    drops = np.zeros(n_cells * n_int, np.int64)
    counts = np.zeros(0, np.int64)
    cand_parts, hit_sub, hit_t = [], [], []
    parts = [*blocks, None]
    for i, b in enumerate(parts):
        normal = normal_events(streams, uw, b) if b is not None else NO_EVENTS
        block = usage_block(streams, uw, normal, fraud if b is None else NO_FRAUD, lambda: book, lambda _a, _b: fraud_book)
        rows = block.rows
        cand_parts.append(take_rows(rows, np.nonzero(block.candidate)[0]))
        hit_sub.append(rows["sub"][block.hit])
        hit_t.append(rows["t"][block.hit])
        c, dr = call_counts(rows["typ"] == 0, rows["cell"], rows["t"], rows["dropped"], clock, cfg.kpi_interval_s, n_cells)
        calls += c
        drops += dr
        counts = _spill(spill_dir, i, rows, clock.start_s, counts)
        del rows, block
    cands = concat_rows(cand_parts)
    redial, chains = redials(w.streams[6], cands["t"], cands["duration"], cands["cell"], w.incidents)
    chain_subs = cands["sub"][chains]
    if len(redial["src"]):
        extra = redial_rows(cands, redial)
        hit = extra["dropped"] & incident_mask(w.incidents, extra["cell"], extra["t"])
        hit_sub.append(extra["sub"][hit])
        hit_t.append(extra["t"][hit])
        c, dr = call_counts(extra["typ"] == 0, extra["cell"], extra["t"], extra["dropped"], clock, cfg.kpi_interval_s, n_cells)
        calls += c
        drops += dr
        counts = _spill(spill_dir, len(parts), extra, clock.start_s, counts)
    spill = _Spill(dir=spill_dir, counts=counts, w=uw, tag=w.tag)
    return uw, spill, calls, drops, (np.concatenate(hit_sub), np.concatenate(hit_t)), chain_subs


def _spill(root: Path, block: int, rows: dict, start_s: int, counts: np.ndarray) -> np.ndarray:
    """Write a block's rows into one file per event day (event order kept); returns records per day so far."""
    if not len(rows["sub"]):
        return counts
    day = (rows["t"] - start_s) // 86400
    order = np.argsort(day, kind="stable")
    per_day = np.bincount(day, minlength=len(counts))
    frame = pl.DataFrame({k: rows[k][order].astype(t) for k, t in SPILL_TYPES.items()}).with_columns(called=rows["called"].gather(order))
    at = 0
    for d in np.nonzero(per_day)[0].tolist():
        folder = root / f"{d:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        frame.slice(at, int(per_day[d])).write_ipc(folder / f"{block:06d}.arrow")
        at += int(per_day[d])
    if len(counts) < len(per_day):
        counts = np.concatenate([counts, np.zeros(len(per_day) - len(counts), np.int64)])
    counts[: len(per_day)] += per_day
    return counts


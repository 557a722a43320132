"""The telco simulator: usage, network and BSS events with planted behaviours and defects.

Deterministic for a config (no wall clock anywhere in the output) and vectorised: a
population (``world``), its lifecycle (``bss``), usage drawn per subscriber-hour
from Poisson rates (``usage``), cell KPIs and alarms (``network``), then JSON wire
values with duplicates, late arrivals and malformed records (``wire``); ``output`` writes
them to Kafka or to legacy dumps.

Example:
    >>> from datetime import date
    >>> result = simulate(SimConfig(subscribers=50, days=1, start=date(2026, 10, 1)))
    >>> sorted(result.values)
    ['bss.events', 'network.events', 'usage.events']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl

from pipelines.core.config import Settings
from pipelines.core.contracts import CONTRACTS, Contract
from pipelines.core.errors import ConfigError
from pipelines.simulate.bss import BssOut, complaints, make_bss
from pipelines.simulate.defects import Defects, plan_defects
from pipelines.simulate.network import Drift, make_network, pick_drifts, pick_incidents
from pipelines.simulate.usage import incident_mask, make_usage
from pipelines.simulate.wire import Malformed, encode, wire_frame
from pipelines.simulate.world import Clock, Population, cell_table, epoch_s, ids, make_population

# A record is late when it arrives more than this after its event ended.
LATE_AFTER_S = 3600
# Kafka keys. Network events are keyed by site: a site's cells share a partition, so the KPI flow's
# site rule and the prediction step's site features see each site minute whole, in the same order
# on every replay (keyed by cell, a site's cells spread over partitions read at different speeds).
KEY_FIELD = {"usage.events": "subscriber_id", "network.events": "site_id", "bss.events": "subscriber_id"}


@dataclass(frozen=True)
class SimConfig:
    """What to simulate.

    Attributes:
        subscribers: population size.
        days: simulated days from ``start`` (00:00 UTC).
        seed: the only source of randomness; same config, byte-identical output.
        start: first simulated day.
        duplicate_rate: share of usage records that mediation sends twice (same record_id).
        late_rate: share of usage records and KPI samples arriving hours to days late.
        malformed_rate: share of malformed records planted (usage; a few in the others).
        fraudsters: SIM-box / international-velocity fraudsters among the subscribers.
        churn_rate: share of subscribers who terminate inside the window.
        kpi_interval_s: seconds between KPI samples of a cell.
        incidents_per_day: network incidents per simulated day (at least one when > 0).
        precursor_share: share of incidents the cell warns about for hours before (the rest fail suddenly).
        drifts_per_day: false-alarm drifts per simulated day: a cell degrades like a precursor and recovers.
    """

    subscribers: int = 2000
    days: int = 7
    seed: int = 42
    start: date = date(2026, 10, 1)
    duplicate_rate: float = 0.01
    late_rate: float = 0.01
    malformed_rate: float = 0.001
    fraudsters: int = 5
    churn_rate: float = 0.04
    kpi_interval_s: int = 300
    incidents_per_day: float = 0.5
    precursor_share: float = 0.6
    drifts_per_day: float = 0.25

    def __post_init__(self) -> None:
        for name in ("subscribers", "days", "kpi_interval_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"simulate.{name} = {value!r}: expected an integer >= 1")
        if self.subscribers < 8:
            raise ConfigError(f"simulate.subscribers = {self.subscribers!r}: expected at least 8")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"simulate.seed = {self.seed!r}: expected an integer >= 0")
        if not isinstance(self.fraudsters, int) or self.fraudsters < 0:
            raise ConfigError(f"simulate.fraudsters = {self.fraudsters!r}: expected an integer >= 0")
        if not isinstance(self.start, date):
            raise ConfigError(f"simulate.start = {self.start!r}: expected a date YYYY-MM-DD")
        for name in ("duplicate_rate", "late_rate", "malformed_rate", "churn_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 0.5:
                raise ConfigError(f"simulate.{name} = {value!r}: expected a number between 0 and 0.5")
        for name, hi in (("incidents_per_day", 100), ("precursor_share", 1), ("drifts_per_day", 100)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= hi:
                raise ConfigError(f"simulate.{name} = {value!r}: expected a number between 0 and {hi}")
        if 86400 % self.kpi_interval_s:
            raise ConfigError(f"simulate.kpi_interval_s = {self.kpi_interval_s!r}: expected a divisor of 86400 (60, 300, 900 ...)")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SimConfig:
        """Defaults from ``telcolake.toml`` ``[simulate]``; ``overrides`` that are not None win.

        Raises:
            ConfigError: an unknown key or a value that is not allowed (one line).
        """
        section = settings.values("simulate")
        section.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**section)


def parse_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"simulate.start = {value!r}: expected a date YYYY-MM-DD") from None


@dataclass
class Planted:
    """What the simulator planted, for tests and benchmarks to check recall against.

    Attributes:
        churners: subscriber_ids that terminate inside the window.
        fraudsters: subscriber_ids of the fraudsters.
        duplicates: extra copies of usage records (same record_id and body).
        late: records arriving more than LATE_AFTER_S after their event ended.
        malformed: planted malformed records (all topics).
        per_topic: topic -> records on it (everything, defects included).
        incidents: (cell_id, start, end) of each network incident.
        precursors: (cell_id, degradation start, incident start) of the incidents the cell warned about.
        drifts: (cell_id, start, recovered at) of the false-alarm drifts (no incident followed).
        churn_at: subscriber_id -> time of its ``terminated`` event.
        fraud_kinds: subscriber_id -> ``sim_box`` or ``intl_velocity``.
        late_by_topic, malformed_by_topic: the same counts per topic.
        malformed_kinds: kind -> count (non_json, truncated, wrong_type, ...).
        roamers: subscribers who travel abroad during the window.
        redial_chains: subscriber_id per call dropped during an incident and redialled until at
            least three calls of the chain dropped (what the offers flow's repeated-drops rule
            looks for; one subscriber may have several chains).
    """

    churners: list[str] = field(default_factory=list)
    fraudsters: list[str] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    malformed: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    incidents: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    precursors: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    drifts: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    churn_at: dict[str, datetime] = field(default_factory=dict)
    fraud_kinds: dict[str, str] = field(default_factory=dict)
    late_by_topic: dict[str, int] = field(default_factory=dict)
    malformed_by_topic: dict[str, int] = field(default_factory=dict)
    malformed_kinds: dict[str, int] = field(default_factory=dict)
    roamers: int = 0
    redial_chains: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts first (for printing), then the id lists and incidents, JSON-ready."""
        return {
            "churners": len(self.churners),
            "fraudsters": len(self.fraudsters),
            "duplicates": self.duplicates,
            "late": self.late,
            "malformed": self.malformed,
            "roamers": self.roamers,
            "redial_chains": len(self.redial_chains),
            "records": sum(self.per_topic.values()),
            "per_topic": dict(self.per_topic),
            "late_by_topic": dict(self.late_by_topic),
            "malformed_by_topic": dict(self.malformed_by_topic),
            "malformed_kinds": dict(self.malformed_kinds),
            "incidents": [[c, _z(a), _z(b)] for c, a, b in self.incidents],
            "precursors": [[c, _z(a), _z(b)] for c, a, b in self.precursors],
            "drifts": [[c, _z(a), _z(b)] for c, a, b in self.drifts],
            "churner_ids": list(self.churners),
            "fraudster_ids": list(self.fraudsters),
            "redial_chain_ids": list(self.redial_chains),
        }


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass
class SimResult:
    """Simulated topics in arrival order.

    Attributes:
        config: what was simulated.
        values: contract topic -> JSON wire values (duplicates, late and malformed included).
        keys: contract topic -> Kafka keys, same order (None for some malformed records).
        timestamps: contract topic -> simulated arrival time (epoch ms), the Kafka timestamp.
        planted: what was planted.
        rows: contract topic -> the decodable records as wire columns (times as text), with
            ``_arrival_ms``, in arrival order; what CSV/Parquet dumps hold.
        malformed_rows: contract topic -> (arrival ms, planted malformed record).
    """

    config: SimConfig
    values: dict[str, list[bytes]]
    keys: dict[str, list[bytes | None]]
    timestamps: dict[str, list[int]]
    planted: Planted
    rows: dict[str, pl.DataFrame] = field(repr=False, default_factory=dict)
    malformed_rows: dict[str, list[tuple[int, Malformed]]] = field(repr=False, default_factory=dict)


def _tag(seed: int) -> str:
    state = np.random.SeedSequence([seed, 0x7E1C0]).generate_state(1)[0]
    return f"{int(state) % 16**5:05x}"


@dataclass
class World:
    """What both paths share: the random streams, calendar, cells, population, lifecycle, incidents, drifts.

    ``streams``: 0 population, 1 lifecycle, 2 incidents, 3 usage, 4 arrival and defects,
    5 network and complaints, 6 redials, 7 drifts (precursors and false alarms: drawn last, from
    their own stream, so usage and BSS events are the same with or without them).
    """

    cfg: SimConfig
    streams: list[np.random.Generator]
    clock: Clock
    tag: str
    cells: pl.DataFrame
    pop: Population
    bss: BssOut
    incidents: list[tuple[int, int, int]]
    drifts: list[Drift]


def make_world(cfg: SimConfig) -> World:
    streams = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(cfg.seed).spawn(8)]
    clock = Clock(start_s=epoch_s(cfg.start), days=cfg.days)
    tag = _tag(cfg.seed)
    cells = cell_table()
    pop = make_population(streams[0], cfg.subscribers, clock, fraudsters=cfg.fraudsters, churn_rate=cfg.churn_rate, cells=cells)
    bss = make_bss(streams[1], pop, clock, tag)
    incidents = pick_incidents(streams[2], pop, clock, cfg.incidents_per_day)
    drifts = pick_drifts(streams[7], clock, cells.height, incidents, precursor_share=cfg.precursor_share, per_day=cfg.drifts_per_day)
    return World(cfg=cfg, streams=streams, clock=clock, tag=tag, cells=cells, pop=pop, bss=bss, incidents=incidents, drifts=drifts)


def bss_frame(w: World, tickets: pl.DataFrame) -> pl.DataFrame:
    """Every lifecycle event (complaint tickets included) in occurred-time order, with event ids."""
    frame = pl.concat([w.bss.frame, tickets]) if tickets.height else w.bss.frame
    frame = frame.sort("t", "sub", maintain_order=True)
    return frame.select(
        ids(f"B{w.tag}", np.arange(frame.height), 8).alias("event_id"),
        w.pop.subscriber_id.gather(frame["sub"]).alias("subscriber_id"),
        w.pop.account_id.gather(frame["sub"]).alias("account_id"),
        pl.col("t").alias("occurred_at"),
        "kind",
        "plan_id",
        "amount",
        "attributes",
        pl.col("t").alias("_end"),
    )


def bss_arrival(frame: pl.DataFrame, clock: Clock) -> np.ndarray:
    """History events arrive an hour before the window starts (in order); window events 2 s after they occur."""
    t = frame["occurred_at"].to_numpy()
    history = t < clock.start_s
    return np.where(history, clock.start_s * 1000 - 3_600_000 + np.cumsum(history), t * 1000 + 2000)


def usage_arrival(rng: np.random.Generator, end_s: np.ndarray) -> np.ndarray:
    """Mediation delay: seconds to minutes after the call or session ended."""
    delay = np.minimum(5_000 + rng.exponential(25_000, len(end_s)), 15 * 60_000).astype(np.int64)
    return end_s * 1000 + delay


def network_arrival(rng: np.random.Generator, end_s: np.ndarray) -> np.ndarray:
    """KPI samples and alarms arrive 1-30 s after their interval ended (or they were raised)."""
    return end_s * 1000 + rng.integers(1000, 30_000, len(end_s))


def fill_planted(planted: Planted, w: World) -> None:
    """Churners, fraudsters and incidents (everything but the per-topic counts and the usage facts)."""
    pop = w.pop
    churners = np.nonzero(pop.churn_s >= 0)[0]
    planted.churners = pop.subscriber_id.gather(churners).to_list()
    planted.churn_at = {s: datetime.fromtimestamp(int(t), UTC) for s, t in zip(planted.churners, pop.churn_s[churners], strict=True)}
    fraud = np.nonzero(pop.fraud > 0)[0]
    planted.fraudsters = pop.subscriber_id.gather(fraud).to_list()
    planted.fraud_kinds = {s: ("sim_box", "intl_velocity")[int(k) - 1] for s, k in zip(planted.fraudsters, pop.fraud[fraud], strict=True)}
    names = w.cells["cell_id"].to_list()
    at = lambda s: datetime.fromtimestamp(s, UTC)  # noqa: E731
    planted.incidents = [(names[c], at(a), at(b)) for c, a, b in w.incidents]
    planted.precursors = [(names[d.cell], at(d.start), at(d.peak)) for d in w.drifts if d.incident]
    planted.drifts = sorted(((names[d.cell], at(d.start), at(d.end)) for d in w.drifts if not d.incident), key=lambda x: (x[1], x[0]))


def count_defects(planted: Planted, topic: str, plan: Defects) -> None:
    """Add a topic's planted defects to ``planted`` (topics in contract order)."""
    planted.late_by_topic[topic] = len(plan.late_pos)
    if len(plan.dup_src) or topic == "usage.events":
        planted.duplicates = len(plan.dup_src)
    planted.malformed_by_topic[topic] = len(plan.bad)
    for _, m in plan.bad:
        planted.malformed_kinds[m.kind] = planted.malformed_kinds.get(m.kind, 0) + 1
    planted.per_topic[topic] = plan.records
    planted.late = sum(planted.late_by_topic.values())
    planted.malformed = sum(planted.malformed_by_topic.values())


def defect_rates(cfg: SimConfig) -> dict[str, float]:
    return {"late_rate": cfg.late_rate, "duplicate_rate": cfg.duplicate_rate, "malformed_rate": cfg.malformed_rate}


def simulate(cfg: SimConfig) -> SimResult:
    """Generate every topic for ``cfg`` at once; deterministic (same config, byte-identical values).

    The whole window is held in memory (about 1 KB per record): for long windows use
    :func:`pipelines.simulate.simulate_days`, which yields the same records day by day.
    """
    w = make_world(cfg)
    streams, clock, pop = w.streams, w.clock, w.pop
    usage = make_usage(streams[3], pop, clock, w.cells, w.bss, w.incidents, w.tag, redial_rng=streams[6])
    network = make_network(streams[5], clock, w.cells, usage.frame, w.incidents, cfg.kpi_interval_s, w.tag, drifts=w.drifts,
                           drift_rng=streams[7])
    hits = usage.frame.filter(pl.col("is_dropped").fill_null(False)
                              & pl.Series(incident_mask(w.incidents, usage.frame["_cell"].to_numpy(), usage.frame["started_at"].to_numpy())))
    tickets = complaints(streams[5], hits["_sub"].to_numpy(), hits["started_at"].to_numpy(), pop, clock, w.tag)
    bss = bss_frame(w, tickets)

    planted = Planted(roamers=usage.roamers)
    planted.redial_chains = pop.subscriber_id.gather(usage.redial_subs).to_list()
    result = SimResult(config=cfg, values={}, keys={}, timestamps={}, planted=planted)
    rng = streams[4]
    _assemble(result, rng, CONTRACTS["usage.events"], usage.frame, usage_arrival(rng, usage.frame["_end"].to_numpy()), late_rows=None)
    kpi_rows = np.nonzero((network["kind"] == "kpi").to_numpy())[0]
    _assemble(result, rng, CONTRACTS["network.events"], network, network_arrival(rng, network["_end"].to_numpy()), late_rows=kpi_rows)
    _assemble(result, rng, CONTRACTS["bss.events"], bss, bss_arrival(bss, clock), late_rows=np.zeros(0, np.int64))
    fill_planted(planted, w)
    return result


def _assemble(result: SimResult, rng: np.random.Generator, contract: Contract, frame: pl.DataFrame,
              arrival: np.ndarray, *, late_rows: np.ndarray | None) -> None:
    """Encode a topic, plant late/duplicate/malformed records, and order it by arrival."""
    topic = contract.topic
    wire = wire_frame(frame, contract)
    values = encode(wire, contract)
    keys = frame[KEY_FIELD[topic]].cast(pl.Binary).to_numpy()
    end_ms = frame["_end"].to_numpy() * 1000
    arrival = arrival.astype(np.int64)
    pool = None if late_rows is None else (len(late_rows), lambda k: late_rows[k])
    plan = plan_defects(rng, contract, frame.height, tag=_tag(result.config.seed), late_pool=pool,
                        arrival_at=lambda pos: arrival[pos], end_ms_at=lambda pos: end_ms[pos],
                        records_at=lambda pos: ([values[i] for i in pos.tolist()], [keys[i] for i in pos.tolist()]),
                        **defect_rates(result.config))
    arrival[plan.late_pos] = end_ms[plan.late_pos] + plan.late_extra
    src_all = np.concatenate([np.arange(frame.height), plan.dup_src])
    when_all = np.concatenate([arrival, arrival[plan.dup_src] + plan.dup_delay])
    bad = plan.bad
    bad_when = np.array([w for w, _ in bad], np.int64)
    all_when = np.concatenate([when_all, bad_when])
    order = np.argsort(all_when, kind="stable")
    good = order < len(src_all)
    bad_values = np.empty(len(bad), dtype=object)
    bad_values[:] = [m.value for _, m in bad]
    bad_keys = np.empty(len(bad), dtype=object)
    bad_keys[:] = plan.bad_key
    all_values = np.concatenate([values[src_all], bad_values])
    all_keys = np.concatenate([keys[src_all], bad_keys])
    result.values[topic] = all_values[order].tolist()
    result.keys[topic] = all_keys[order].tolist()
    result.timestamps[topic] = all_when[order].tolist()
    kept = order[good]
    result.rows[topic] = wire[src_all[kept]].with_columns(_arrival_ms=pl.Series(when_all[kept]))
    result.malformed_rows[topic] = sorted(bad, key=lambda x: x[0])
    count_defects(result.planted, topic, plan)


def planted_summary(result: SimResult) -> dict[str, Any]:
    """``Planted.as_dict()`` plus the config, for printing."""
    return {"config": {k: str(v) for k, v in asdict(result.config).items()}, **result.planted.as_dict()}

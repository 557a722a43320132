"""What is landed and what is not: per topic partition offsets, lag, rows, quarantine, freshness."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb

from pipelines.core.broker import end_offsets, resolve_bootstrap
from pipelines.core.config import Settings
from pipelines.core.contracts import CONTRACTS
from pipelines.core.errors import BrokerError
from pipelines.core.lake import Lake
from pipelines.ingest.kafka_source import segment_id
from pipelines.ingest.landing import app_id, bronze_table, quarantine_table


@dataclass
class PartitionStatus:
    """One topic partition as the lake sees it.

    ``state`` is ``caught up``, ``behind`` (``lag`` records to land), ``lake ahead of topic``
    (the lake has read past the topic's end: the topic was recreated or truncated, e.g. the
    in-memory broker restarted; ``ahead`` says by how many offsets, and ingest refuses to
    resume it), or ``unknown`` (no broker answer).
    """

    topic: str
    partition: int
    end_offset: int | None
    landed_offset: int | None
    lag: int | None
    rows: int
    quarantined: int
    state: str = "unknown"
    ahead: int | None = None


@dataclass
class TopicStatus:
    """One topic's bronze table."""

    topic: str
    table_version: int | None
    last_commit_at: str | None
    rows: int
    quarantined: int
    newest_event_at: str | None
    newest_landed_at: str | None
    freshness_s: float | None
    partitions: list[PartitionStatus]
    broker_error: str | None = None


def _counts(lake: Lake, name: str) -> tuple[dict[int, int], int, str | None, str | None]:
    """(rows per Kafka partition, total rows, newest event time, newest landing time)."""
    dt = lake.maybe_table(name)
    if dt is None:
        return {}, 0, None, None
    con = duckdb.connect()
    con.register("t", lake.dataset(name))
    time_col = "_ingested_at"
    per = dict(con.execute("select coalesce(_kafka_partition, -1), count(*) from t group by 1").fetchall())
    total = sum(per.values())
    cols = {f.name for f in dt.schema().fields}
    event_col = next((c.time_field for c in CONTRACTS.values() if c.time_field in cols), None)
    newest_event = con.execute(f"select max({event_col}) from t").fetchone()[0] if event_col else None
    newest_landed = con.execute(f"select max({time_col}) from t").fetchone()[0]
    fmt = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    return per, total, fmt(newest_event), fmt(newest_landed)


def topic_status(settings: Settings, *, with_broker: bool = True) -> list[TopicStatus]:
    """Status of every contract topic (broker end offsets when a broker is reachable)."""
    lake = Lake.from_settings(settings)
    bootstrap = None
    if with_broker:
        try:
            bootstrap = resolve_bootstrap(settings)
        except BrokerError:
            bootstrap = None
    out = []
    now = datetime.now(UTC)
    for contract_topic in CONTRACTS:
        topic = settings.topic(contract_topic)
        bronze, quarantine = bronze_table(contract_topic), quarantine_table(contract_topic)
        rows_per, rows, newest_event, newest_landed = _counts(lake, bronze)
        q_per, q_rows, _, _ = _counts(lake, quarantine)
        ends, broker_error = {}, None
        if bootstrap:
            try:  # true end offsets: the embedded broker under-reports the high watermark (DESIGN.md)
                ends = end_offsets(bootstrap, topic, extra=settings.kafka_client)
            except BrokerError as exc:
                broker_error = str(exc)
        n_parts = max(len(ends), settings.topics.get(topic, 0))
        dt = lake.maybe_table(bronze)
        parts = []
        for p in range(n_parts):
            stored = dt.transaction_version(app_id(segment_id(topic, p))) if dt is not None else None
            landed = None if stored is None else stored + 1
            end = ends.get(p)
            part = PartitionStatus(topic, p, end, landed, None, rows_per.get(p, 0), q_per.get(p, 0))
            if end is not None:
                if (landed or 0) > end:
                    part.state, part.ahead = "lake ahead of topic", (landed or 0) - end
                else:
                    part.lag = end - (landed or 0)
                    part.state = "behind" if part.lag else "caught up"
            parts.append(part)
        last_commit = None
        if dt is not None:
            ts = dt.history(1)[0].get("timestamp")
            last_commit = datetime.fromtimestamp(ts / 1000, UTC).isoformat() if ts else None
        freshness = None
        if newest_landed:
            freshness = (now - datetime.fromisoformat(newest_landed)).total_seconds()
        out.append(
            TopicStatus(
                topic=topic,
                table_version=None if dt is None else dt.version(),
                last_commit_at=last_commit,
                rows=rows,
                quarantined=q_rows,
                newest_event_at=newest_event,
                newest_landed_at=newest_landed,
                freshness_s=freshness,
                partitions=parts,
                broker_error=broker_error,
            )
        )
    return out


def as_json(statuses: list[TopicStatus]) -> list[dict]:
    return [asdict(s) for s in statuses]


def system_status(settings: Settings) -> dict:
    """The whole system: broker, ingest per topic, tables and freshness, last job runs, last gate."""
    from pipelines.core.broker import read_state
    from pipelines.ops.jobs import last_runs
    from pipelines.ops.lake_info import lake_tables

    lake = Lake.from_settings(settings)
    if settings.embedded:
        state = read_state(settings.state_dir)
        broker_info = {"kind": "embedded", "address": state.address if state else None, "running": state is not None}
    else:
        broker_info = {"kind": "external", "address": settings.kafka_bootstrap, "running": True}
    topics = topic_status(settings)
    errors = [t.broker_error for t in topics if t.broker_error]
    broker_info["error"] = errors[0] if errors else None
    if errors:
        broker_info["running"] = False
    return {
        "broker": broker_info,
        "topics": as_json(topics),
        "tables": [t.as_dict() for t in lake_tables(lake)],
        "jobs": last_runs(settings),
        "quality": last_gate(lake),
    }


def last_gate(lake: Lake) -> dict | None:
    """The latest quality run: counts, and its failed expectations (the failing gates)."""
    if not lake.exists("ops/quality_results"):
        return None
    con = duckdb.connect()
    con.register("q", lake.dataset("ops/quality_results"))
    latest = "run_id = (select arg_max(run_id, validated_at) from q)"
    passed, failed, at = con.execute(f"select count(*) filter (where success), count(*) filter (where not success), max(validated_at) from q where {latest}").fetchone()
    failures = con.execute(
        f'select "table", version, suite, expectation_type, observed_value from q where {latest} and not success order by 1, 3 limit 20'
    ).fetchall()
    return {
        "validated_at": at.isoformat() if at else None,
        "passed": passed,
        "failed": failed,
        "failures": [dict(zip(("table", "version", "suite", "expectation", "observed"), f, strict=True)) for f in failures],
    }

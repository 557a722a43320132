"""Build each partner's share tables with DuckDB, gate them, and publish them as one consistent share.

A publish pins its inputs, builds every table of a partner, and compares each with what the
share table holds now (its content hash: recorded in the partner's manifest, or computed from
the table when a commit came after it). Unchanged tables get no new version, so maintenance
(OPTIMIZE/VACUUM commits on inputs or shares) never republishes anything. Changed tables are
staged under ``staging/shares/...`` and gated; only if the gate passes are they committed, in
the partner's table order, as a MERGE on the table's key (the change feed carries only rows
that changed), and then one manifest row (``ops/share_manifests``) makes the new share
visible at once. A failed gate publishes nothing; a publish killed between two commits leaves
the previous manifest in force (the server serves each table as of it), and the next publish
completes the share.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines.core.config import REPO_ROOT, Settings
from pipelines.core.duck import model_sql, query
from pipelines.core.errors import LakeError, QualityGateFailed
from pipelines.core.lake import Lake
from pipelines.core.lease import leased
from pipelines.sharing import manifest
from pipelines.sharing.gate import run_gate
from pipelines.sharing.registry import Partner, load_partners, partner_secret, sharing_settings

USAGE, SUBSCRIBERS, BSS = "silver/usage", "silver/subscribers", "bronze/bss.events"
CELLS_CSV = REPO_ROOT / "reference" / "cells.csv"
INPUTS = {
    "roaming_settlement": (USAGE,),
    "roaming_records": (USAGE,),
    "ott_report": (USAGE, BSS),
    "ott_subscribers": (USAGE, BSS),
    "location_footfall": (USAGE,),
}
ORDER = {
    "roaming_settlement": ["usage_date", "visited_plmn"],
    "roaming_records": ["record_id"],
    "ott_report": ["usage_date"],
    "ott_subscribers": ["subscriber_ref"],
    "location_footfall": ["hour_start", "area_id"],
}
CDF = {"delta.enableChangeDataFeed": "true"}
StepCallback = Callable[[str], None]
KILL_AFTER_ENV = "TELCOLAKE_TEST_KILL_PUBLISH_AFTER_COMMITS"  # tests only: SIGKILL this process after the Nth publish commit
_commits = 0


@dataclass
class TableResult:
    table: str
    status: str  # published | unchanged | refused
    rows: int = 0
    version: int | None = None


@dataclass
class PublishResult:
    """What one partner's publish did."""

    partner_id: str
    tables: list[TableResult] = field(default_factory=list)
    gate: str = "not run"
    failures: list[str] = field(default_factory=list)
    input_versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"partner": self.partner_id, "gate": self.gate, "failures": self.failures, "input_versions": self.input_versions,
                "tables": [t.__dict__ for t in self.tables]}


def pseudonyms(ids: pa.Array, secret: bytes) -> pa.Table:
    """``subscriber_id -> subscriber_ref``: HMAC-SHA256(secret, id) in hex, once per distinct id.

    The same subscriber gets a different ref for each partner (each has its own secret), and a
    ref cannot be mapped back without the secret.
    """
    distinct = pc.unique(pc.drop_null(ids)).to_pylist()
    refs = [hmac.new(secret, s.encode(), hashlib.sha256).hexdigest() for s in distinct]
    return pa.table({"subscriber_id": pa.array(distinct, pa.string()), "subscriber_ref": pa.array(refs, pa.string())})


def content_hash(table: pa.Table) -> str:
    """SHA-256 of the table's column names, types and rows (rows already in key order).

    Schema metadata and nullability are left out, so a table read back from Delta hashes like
    the Arrow table it was written from.
    """
    plain = pa.schema([pa.field(f.name, f.type) for f in table.schema])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, plain) as writer:
        writer.write_table(table.cast(plain).combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _reference(lake: Lake, name: str) -> pa.Table:
    """A catalog reference table: the loaded lake table, else built from reference/catalog.toml."""
    if lake.exists(name):
        return lake.read(name)
    from pipelines.billing.catalog import read_catalog
    from pipelines.billing.reference import reference_tables

    return reference_tables(read_catalog())[name]


def _cells(path: Path = CELLS_CSV) -> pa.Table:
    if not path.is_file():
        raise LakeError(f"{path} does not exist; location shares need the cell reference (cell_id, area_id)")
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"cell_id": pa.string(), "area_id": pa.string()}))


def pin_inputs(lake: Lake, partner: Partner) -> dict[str, int]:
    """Current versions of every input the partner's tables read.

    Raises:
        LakeError: an input table does not exist yet (run ingest / silver first).
    """
    needed = sorted({n for t in partner.tables for n in INPUTS[t]})
    versions = {}
    for name in needed:
        v = lake.version(name)
        if v is None:
            raise LakeError(f"partner {partner.partner_id}: input {name} does not exist under {lake.root}; run `telcolake ingest` first")
        versions[name] = v
    if lake.exists(SUBSCRIBERS):
        versions[SUBSCRIBERS] = lake.version(SUBSCRIBERS)
    return versions


def _connect(lake: Lake, partner: Partner, versions: dict[str, int], secret: bytes) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    usage = lake.table(USAGE, version=versions[USAGE]).to_pyarrow_dataset()
    con.register("silver_usage", usage)
    if BSS in versions:
        con.register("bronze_bss_events", lake.table(BSS, version=versions[BSS]).to_pyarrow_dataset())
    con.register("partner", pa.table({"partner_id": [partner.partner_id], "ott_partner_id": pa.array([partner.ott_partner_id], pa.string()),
                                      "k_anonymity": [partner.k_anonymity]}))
    con.register("partner_plmns", pa.table({"visited_plmn": pa.array(list(partner.plmns), pa.string())}))
    if partner.kind == "roaming":
        con.register("wholesale_rates", _reference(lake, "reference/roaming_wholesale"))
        plmns = ", ".join("'" + p + "'" for p in partner.plmns)
        ids = query(con, f"select distinct subscriber_id from silver_usage where visited_plmn in ({plmns})")["subscriber_id"]
    elif partner.kind == "ott":
        con.register("ott_contracts", _reference(lake, "reference/ott_contracts"))
        ids = query(con, "select subscriber_id from bronze_bss_events where kind in ('ott_activated', 'ott_deactivated')")["subscriber_id"]
    else:
        con.register("cells", _cells())
        ids = pa.array([], pa.string())
    con.register("pseudonyms", pseudonyms(ids, secret))
    return con


def build_tables(lake: Lake, partner: Partner, versions: dict[str, int], secret: bytes) -> dict[str, pa.Table]:
    """Every share table of ``partner`` from the pinned inputs, rows in key order."""
    con = _connect(lake, partner, versions, secret)
    out = {}
    for table in partner.tables:
        order = ", ".join(ORDER[table])
        out[table] = query(con, f"select * from ({model_sql('partners/' + table)}) order by {order}")
    return out


def _committed(what: str) -> None:
    """Count a commit of this publish; the kill test's hook ends the process here, like a crash."""
    global _commits
    _commits += 1
    after = os.environ.get(KILL_AFTER_ENV)
    if after and after.isdigit() and _commits == int(after):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Current:
    """What a share table holds now: content hash, version and rows (None, None, 0: no table yet)."""

    digest: str | None
    version: int | None
    rows: int


def current_content(lake: Lake, log: manifest.ChangeLog, partner: Partner, table: str, last: manifest.Manifest | None) -> Current:
    """The share table's present content, from the manifest when no data changed since it, else read and hashed.

    Data commits after the manifest's version (a killed publish) or a table the manifest does
    not know (a share published before manifests) are read back in key order and hashed.
    """
    name = partner.share_table(table)
    dt = lake.maybe_table(name)
    if dt is None:
        return Current(None, None, 0)
    latest = dt.version()
    entry = last.tables.get(table) if last else None
    if entry is not None and manifest.served_version(log, name, entry, latest) == latest:
        return Current(entry.content_sha256, latest, entry.rows)
    data = lake.read(name).sort_by([(k, "ascending") for k in ORDER[table]])
    return Current(content_hash(data), latest, data.num_rows)


def _same_columns(dt, data: pa.Table) -> bool:
    have = pa.schema(dt.schema().to_arrow())
    return [(f.name, f.type) for f in have] == [(f.name, f.type) for f in pa.schema(data.schema)]


def commit_table(lake: Lake, partner: Partner, table: str, data: pa.Table, digest: str, versions: dict[str, int]) -> int:
    """Make ``shares/<partner>/<table>`` hold ``data``; returns the table version that holds it.

    A new table is created with the change data feed on; an existing one gets a MERGE on the
    table's key (update rows whose values differ, insert new keys, delete keys that are gone),
    so the change feed shows exactly the rows that changed. When the columns changed (a new
    model version), the table is overwritten instead.
    """
    name = partner.share_table(table)
    meta = {"content_sha256": digest, "input_versions": json.dumps(versions, sort_keys=True), "partner": partner.partner_id}
    dt = lake.maybe_table(name)
    if dt is None or not _same_columns(dt, data):
        return lake.write(name, data, mode="overwrite", schema_mode="overwrite", configuration=CDF, metadata=meta)
    from deltalake import CommitProperties
    from deltalake.exceptions import CommitFailedError

    keys = ORDER[table]
    on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    differs = " OR ".join(f'(t."{c}" IS DISTINCT FROM s."{c}")' for c in data.column_names if c not in keys) or "false"
    for attempt in range(10):
        try:
            (lake.table(name).merge(data, predicate=on, source_alias="s", target_alias="t",
                                    commit_properties=CommitProperties(custom_metadata=meta, max_commit_retries=10))
             .when_matched_update_all(predicate=differs).when_not_matched_insert_all().when_not_matched_by_source_delete().execute())
            return lake.table(name).version()
        except CommitFailedError:  # a concurrent maintenance commit: merge again on the new version
            if attempt == 9:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _manifest_needed(lake: Lake, log: manifest.ChangeLog, partner: Partner, last: manifest.Manifest | None,
                     entries: dict[str, manifest.Entry]) -> bool:
    """A new manifest is written when the share's content moved past the last one (not for maintenance commits)."""
    if last is None or set(last.tables) != set(entries):
        return True
    for table, e in entries.items():
        before = last.tables[table]
        if before.content_sha256 != e.content_sha256 or manifest.served_version(log, partner.share_table(table), before, e.version) != e.version:
            return True
    return False


@leased(lambda _settings, partner, **_k: f"publish:{partner.partner_id}")
def publish_partner(settings: Settings, partner: Partner, *, on_step: StepCallback | None = None) -> PublishResult:
    """Build, gate and publish one partner's share.

    One publish per partner at a time (a lease in ``ops/leases``): a second one waits, then
    finds the tables unchanged.

    Raises:
        QualityGateFailed: the inputs or the new content failed the gate; nothing was published.
        ConfigError: the partner has no pseudonymisation secret.
        LakeError: an input table is missing.
    """
    step = on_step or (lambda _m: None)
    ss = sharing_settings(settings)
    lake = Lake.from_settings(settings)
    secret = partner_secret(settings, partner)
    result = PublishResult(partner.partner_id)
    result.input_versions = versions = pin_inputs(lake, partner)
    step(f"{partner.partner_id}: quality gate on inputs")
    inputs_gate = run_gate(settings, sorted(versions))
    if not inputs_gate.ok:
        result.gate, result.failures = f"inputs failed ({inputs_gate.how})", inputs_gate.failures
        raise QualityGateFailed(f"partner {partner.partner_id}: inputs failed the quality gate; nothing published:\n" + "\n".join(inputs_gate.failures))
    step(f"{partner.partner_id}: building {', '.join(partner.tables)}")
    built = build_tables(lake, partner, versions, secret)
    last, log = manifest.latest(lake, partner.partner_id), manifest.ChangeLog(lake)
    entries: dict[str, manifest.Entry] = {}
    changed: dict[str, tuple[pa.Table, str]] = {}
    for table, data in built.items():
        digest, now = content_hash(data), current_content(lake, log, partner, table, last)
        if now.digest == digest:
            entries[table] = manifest.Entry(now.version, digest, data.num_rows)
            result.tables.append(TableResult(table, "unchanged", data.num_rows, now.version))
            continue
        changed[table] = (data, digest)
        lake.write(partner.staging_table(table), data, mode="overwrite", schema_mode="overwrite", metadata={
            "content_sha256": digest, "previous_rows": now.rows, "k_anonymity": partner.k_anonymity,
            "min_row_ratio": ss.min_row_ratio, "max_row_ratio": ss.max_row_ratio,
        })
        _committed(f"staged {table}")
    if changed:
        step(f"{partner.partner_id}: quality gate on {len(changed)} new table(s)")
        from quality.shares import suites_for

        staged = [partner.staging_table(t) for t in changed]
        suites = [s for t in changed for s in suites_for(partner.partner_id, t, partner.staging_table(t))]
        outcome = run_gate(settings, staged, suites)
        result.gate = f"{'passed' if outcome.ok else 'failed'} ({outcome.how})"
        if not outcome.ok:
            result.failures = outcome.failures
            result.tables += [TableResult(t, "refused", d.num_rows) for t, (d, _) in changed.items()]
            raise QualityGateFailed(f"partner {partner.partner_id}: share failed the quality gate; previous versions stay published:\n"
                                    + "\n".join(outcome.failures))
    else:
        result.gate = "not needed (unchanged)"
    for table in partner.tables:  # a fixed order; nothing is visible to the partner until the manifest below
        if table not in changed:
            continue
        data, digest = changed[table]
        step(f"{partner.partner_id}: publishing {table}")
        version = commit_table(lake, partner, table, data, digest, versions)
        _committed(f"published {table}")
        entries[table] = manifest.Entry(version, digest, data.num_rows)
        result.tables.append(TableResult(table, "published", data.num_rows, version))
    if _manifest_needed(lake, log, partner, last, entries):
        manifest.append(lake, partner.partner_id, entries, versions, previous=last)
        _committed("manifest")
    result.tables.sort(key=lambda t: partner.tables.index(t.table))
    return result


def publish(settings: Settings, partner_id: str | None = None, *, on_step: StepCallback | None = None) -> list[PublishResult]:
    """Publish one partner's share (or every partner's, in registry order).

    Raises:
        QualityGateFailed: after trying every chosen partner, naming each one refused.
    """
    partners = load_partners(settings)
    if partner_id is not None and partner_id not in partners:
        from pipelines.core.errors import ConfigError

        raise ConfigError(f"--partner {partner_id!r}: not in the registry; known: {', '.join(partners)}")
    chosen = [partners[partner_id]] if partner_id else list(partners.values())
    results, refused = [], []
    for p in chosen:
        try:
            results.append(publish_partner(settings, p, on_step=on_step))
        except QualityGateFailed as exc:  # one partner's failed gate does not hold back the others
            refused.append(str(exc))
    if refused:
        done = ", ".join(r.partner_id for r in results) or "none"
        raise QualityGateFailed("\n".join(refused) + f"\n(published or unchanged: {done})")
    return results

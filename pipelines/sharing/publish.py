"""Build each partner's share tables with DuckDB, gate them, and publish them as new Delta versions.

A publish pins its inputs, builds every table of a partner, skips tables whose content is
unchanged (same content hash as the published version: no new version), stages the changed
ones under ``staging/shares/...``, runs the quality gate on the staged tables and only then
overwrites ``shares/<partner>/<table>``. A failed gate publishes nothing for that partner and
leaves the previous versions in place.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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
    """SHA-256 of the table's schema and rows (rows already in key order)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
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


def _published_hash(lake: Lake, name: str) -> tuple[str | None, int]:
    dt = lake.maybe_table(name)
    if dt is None:
        return None, 0
    latest = dt.history(1)[0]
    return latest.get("content_sha256"), dt.count()


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
    changed: dict[str, tuple[pa.Table, str]] = {}
    for table, data in built.items():
        digest = content_hash(data)
        published, previous_rows = _published_hash(lake, partner.share_table(table))
        if published == digest:
            result.tables.append(TableResult(table, "unchanged", data.num_rows, lake.version(partner.share_table(table))))
            continue
        changed[table] = (data, digest)
        lake.write(partner.staging_table(table), data, mode="overwrite", schema_mode="overwrite", metadata={
            "content_sha256": digest, "previous_rows": previous_rows, "k_anonymity": partner.k_anonymity,
            "min_row_ratio": ss.min_row_ratio, "max_row_ratio": ss.max_row_ratio,
        })
    if not changed:
        result.gate = "not needed (unchanged)"
        return result
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
    for table, (data, digest) in changed.items():
        step(f"{partner.partner_id}: publishing {table}")
        version = lake.write(partner.share_table(table), data, mode="overwrite", schema_mode="overwrite", configuration=CDF, metadata={
            "content_sha256": digest, "input_versions": json.dumps(versions, sort_keys=True), "partner": partner.partner_id,
        })
        result.tables.append(TableResult(table, "published", data.num_rows, version))
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

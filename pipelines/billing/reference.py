"""Turn resolved catalog versions into reference Delta tables and load new versions append-only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipelines.billing.catalog import TariffVersion, read_catalog
from pipelines.core.config import Settings
from pipelines.core.errors import CatalogError
from pipelines.core.lake import Lake, utcnow

TS = pa.timestamp("us", tz="UTC")
PRICE = pa.decimal128(18, 6)
VERSIONS = "reference/tariff_versions"
CONTENT_TABLES = (
    "reference/tariff_plans",
    "reference/tariff_allowances",
    "reference/tariff_rates",
    "reference/tariff_tiers",
    "reference/tariff_destinations",
    "reference/tariff_roaming_zones",
    "reference/tariff_vat",
    "reference/roaming_wholesale",
    "reference/ott_contracts",
    "reference/tariff_one_time_prices",
)
REFERENCE_TABLES = (VERSIONS, *CONTENT_TABLES)

SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    VERSIONS: [("description", pa.string()), ("currency", pa.string()), ("sha256", pa.string()), ("timezone", pa.string()),
               ("peak_start_min", pa.int32()), ("peak_end_min", pa.int32()), ("weekend_days", pa.list_(pa.int32())), ("loaded_at", TS)],
    "reference/tariff_plans": [("plan_id", pa.string()), ("name", pa.string()), ("monthly_fee", PRICE), ("currency", pa.string())],
    "reference/tariff_allowances": [("allowance_id", pa.string()), ("plan_id", pa.string()), ("event_type", pa.string()),
                                    ("quantity_base", pa.int64()), ("zones", pa.list_(pa.string())), ("roaming", pa.list_(pa.string()))],
    "reference/tariff_rates": [("rate_id", pa.string()), ("event_type", pa.string()), ("zone", pa.string()), ("band", pa.string()),
                               ("roaming", pa.string()), ("unit", pa.string()), ("connect_fee", PRICE), ("price", PRICE),
                               ("rate_unit", pa.int64()), ("increment", pa.int64()), ("group2_start", pa.int64()), ("price2", PRICE),
                               ("rate_unit2", pa.int64()), ("increment2", pa.int64()), ("tiers_id", pa.string()), ("min_charge", PRICE),
                               ("max_cost", PRICE), ("rounding", pa.string()), ("decimals", pa.int32())],
    "reference/tariff_tiers": [("tiers_id", pa.string()), ("mode", pa.string()), ("seq", pa.int32()), ("from_units", pa.int64()),
                               ("upto_units", pa.int64()), ("price", PRICE)],
    "reference/tariff_destinations": [("prefix", pa.string()), ("zone", pa.string()), ("prefix_len", pa.int32())],
    "reference/tariff_roaming_zones": [("visited_plmn", pa.string()), ("roaming_zone", pa.string())],
    "reference/tariff_vat": [("country", pa.string()), ("vat_rate", PRICE)],
    "reference/roaming_wholesale": [("visited_plmn", pa.string()), ("partner", pa.string()), ("per_minute", PRICE), ("per_sms", PRICE),
                                    ("per_mb", PRICE), ("currency", pa.string())],
    "reference/ott_contracts": [("ott_partner_id", pa.string()), ("model", pa.string()), ("share_pct", PRICE), ("value_per_mb", PRICE),
                                ("fixed_per_subscriber", PRICE), ("currency", pa.string())],
    "reference/tariff_one_time_prices": [("price_id", pa.string()), ("name", pa.string()), ("event", pa.string()),
                                         ("plans", pa.list_(pa.string())), ("price", PRICE), ("rounding", pa.string()),
                                         ("decimals", pa.int32()), ("currency", pa.string())],
}


def _rows(v: TariffVersion, table: str) -> list[dict]:
    tb = v.time_bands
    if table == VERSIONS:
        return [{"description": v.description, "currency": v.currency, "sha256": v.sha256, "timezone": tb.timezone,
                 "peak_start_min": tb.peak_start_min, "peak_end_min": tb.peak_end_min, "weekend_days": list(tb.weekend_days),
                 "loaded_at": utcnow()}]
    if table == "reference/tariff_plans":
        return [{"plan_id": p.plan_id, "name": p.name, "monthly_fee": p.monthly_fee, "currency": v.currency} for p in v.plans.values()]
    if table == "reference/tariff_allowances":
        return [{"allowance_id": a.allowance_id, "plan_id": a.plan_id, "event_type": a.event_type, "quantity_base": a.quantity_base,
                 "zones": None if a.zones is None else list(a.zones), "roaming": None if a.roaming is None else list(a.roaming)}
                for p in v.plans.values() for a in p.allowances]
    if table == "reference/tariff_rates":
        return [{k: getattr(r, k) for k, _ in SCHEMAS[table]} for r in v.rates.values()]
    if table == "reference/tariff_tiers":
        return [{k: getattr(t, k) for k, _ in SCHEMAS[table]} for ts in v.tiers.values() for t in ts]
    if table == "reference/tariff_destinations":
        return [{"prefix": p, "zone": z, "prefix_len": len(p)} for p, z in v.destinations.items()]
    if table == "reference/tariff_roaming_zones":
        return [{"visited_plmn": p, "roaming_zone": z} for p, z in v.roaming_zones.items()]
    if table == "reference/tariff_vat":
        return [{"country": c, "vat_rate": r} for c, r in v.vat.items()]
    if table == "reference/roaming_wholesale":
        return [{"visited_plmn": p, "currency": v.currency, **d} for p, d in v.wholesale.items()]
    if table == "reference/tariff_one_time_prices":
        return [{"price_id": o.price_id, "name": o.name, "event": o.event, "plans": None if o.plans is None else list(o.plans),
                 "price": o.price, "rounding": o.rounding, "decimals": o.decimals, "currency": v.currency} for o in v.one_time.values()]
    return [{"ott_partner_id": p, "currency": v.currency, **d} for p, d in v.ott.items()]


def reference_tables(versions: list[TariffVersion]) -> dict[str, pa.Table]:
    """Every reference table for ``versions``: each row carries its tariff version and valid_from."""
    out = {}
    for table, cols in SCHEMAS.items():
        schema = pa.schema([("version", pa.int64()), ("valid_from", TS), *cols])
        rows = [{"version": v.version, "valid_from": v.valid_from, **r} for v in versions for r in _rows(v, table)]
        out[table] = pa.Table.from_pylist(rows, schema=schema)
    return out


@dataclass
class LoadResult:
    """What ``catalog load`` did."""

    loaded: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    table_versions: dict[str, int] = field(default_factory=dict)


def load_catalog(settings: Settings, path: str | Path | None = None) -> LoadResult:
    """Validate the catalog and append the versions the lake does not have yet.

    A loaded version is history: if the file's content for it differs from what was
    loaded, the load is refused (add a new version instead). The versions table is written
    last, so a crashed load is redone cleanly by running it again.

    Raises:
        CatalogError: invalid catalog, or a loaded version was edited.
    """
    versions = read_catalog(path)
    lake = Lake.from_settings(settings)
    loaded: dict[int, str] = {}
    if lake.exists(VERSIONS):
        from pipelines.billing.engine import read

        t = read(lake, VERSIONS, columns=["version", "sha256"])
        loaded = dict(zip(t["version"].to_pylist(), t["sha256"].to_pylist(), strict=True))
    result = LoadResult()
    new = []
    for v in versions:
        if v.version not in loaded:
            new.append(v)
        elif loaded[v.version] != v.sha256:
            raise CatalogError(
                f"catalog versions[{v.version - 1}]: version {v.version} is already loaded with different content; "
                "history is never edited, add a new [[versions]] entry with the correction"
            )
        else:
            result.unchanged.append(v.version)
    missing = sorted(set(loaded) - {v.version for v in versions})
    if missing:
        raise CatalogError(f"catalog versions: loaded version {missing[0]} is missing from the file; versions are never removed")
    # A content table added after versions were loaded (e.g. tariff_one_time_prices) is
    # written whole, for every version, so bill runs find every loaded version in it.
    absent = [name for name in CONTENT_TABLES if loaded and not lake.exists(name)]
    if absent:
        whole = reference_tables(versions)
        for name in absent:
            result.table_versions[name] = lake.write(name, whole[name], mode="overwrite", metadata={"catalog_versions": "all"})
    if not new:
        return result
    tables = reference_tables(new)
    numbers = ",".join(str(v.version) for v in new)
    meta = {"catalog_versions": numbers}
    for name in (*CONTENT_TABLES, VERSIONS):
        if name in absent:
            continue
        if lake.exists(name):
            mode, predicate = ("overwrite", f"version in ({numbers})") if name != VERSIONS else ("append", None)
            result.table_versions[name] = lake.write(name, tables[name], mode=mode, predicate=predicate, metadata=meta)
        else:
            result.table_versions[name] = lake.write(name, tables[name], mode="overwrite", metadata=meta)
    result.loaded = [v.version for v in new]
    return result

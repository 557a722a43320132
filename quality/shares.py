"""Quality suites guarding partner shares before they are published: no raw identifiers, k-anonymity, keys, sums, size."""

from __future__ import annotations

from typing import Any

import duckdb
import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.core.lake import Lake
from quality.core import Suite

E = gx.expectations
SUBSCRIBERS = "silver/subscribers"
USAGE = "silver/usage"
RAW_COLUMNS = ["msisdn", "imsi", "subscriber_id", "called_number", "account_id"]
# anchored shapes of raw identifiers (contracts.md): subscriber ids, E.164 numbers, IMSIs
RAW_PATTERN = r"^(SUB\d{7}|\+?\d{7,15})$"
KEYS = {
    "roaming_settlement": ["usage_date", "visited_plmn"],
    "roaming_records": ["record_id"],
    "ott_report": ["usage_date"],
    "ott_subscribers": ["subscriber_ref"],
    "location_footfall": ["hour_start", "area_id"],
}


def commit_metadata(lake: Lake, name: str, version: int | None) -> dict[str, Any]:
    """The custom metadata of the commit that made ``version`` of ``name`` (latest when None)."""
    dt = lake.table(name, version=version)
    v = dt.version()
    return next((h for h in dt.history() if h.get("version") == v), {})


def raw_identifier_hits(lake: Lake, name: str, versions: dict[str, int]) -> pa.Table:
    """Per column of ``name``: values shaped like a raw identifier or equal to a known one.

    Known identifiers are every subscriber id, MSISDN, IMSI and account id in silver/subscribers
    and every subscriber id, MSISDN, IMSI and called number in silver/usage (when they exist).
    String columns are checked by shape and by value; integer columns by value from 1e9 up
    (an MSISDN or IMSI stored as a number), since small counts equal short numbers by chance.
    """
    con = duckdb.connect()
    con.register("share", lake.table(name, version=versions.get(name)).to_pyarrow_dataset())
    known = ["select null::varchar as id"]
    if lake.exists(SUBSCRIBERS):
        con.register("subs", lake.table(SUBSCRIBERS, version=versions.get(SUBSCRIBERS)).to_pyarrow_dataset())
        known += [f"select cast({c} as varchar) from subs" for c in ("subscriber_id", "msisdn", "imsi", "account_id")]
    if lake.exists(USAGE):
        con.register("usage", lake.table(USAGE, version=versions.get(USAGE)).to_pyarrow_dataset())
        known += [f"select cast({c} as varchar) from usage" for c in ("subscriber_id", "msisdn", "imsi", "called_number")]
    con.execute("create temp table known as select distinct id from (" + " union all ".join(known) + ") t(id) where id is not null")
    schema = lake.table(name, version=versions.get(name)).schema().to_arrow()
    rows = []
    for field in pa.schema(schema):
        col = f'"{field.name}"'
        shaped = f"regexp_matches({col}, '{RAW_PATTERN}')" if pa.types.is_string(field.type) or pa.types.is_large_string(field.type) else "false"
        if pa.types.is_nested(field.type) or pa.types.is_binary(field.type) or pa.types.is_temporal(field.type):
            shaped, known_hit = "false", "false"
        elif pa.types.is_integer(field.type):
            # an MSISDN or IMSI stored as a number is >= 1e9; smaller counts may equal short numbers by chance
            known_hit = f"({col} >= 1000000000 and cast({col} as varchar) in (select id from known))"
        else:
            known_hit = f"cast({col} as varchar) in (select id from known)"
        n = con.sql(f"select count(*) filter (where {shaped} or {known_hit}) from share").fetchall()[0][0]
        rows.append({"column_name": field.name, "raw_hits": int(n)})
    return pa.Table.from_pylist(rows, schema=pa.schema([("column_name", pa.string()), ("raw_hits", pa.int64())]))


def k_margin(lake: Lake, name: str, versions: dict[str, int]) -> pa.Table:
    """Per bucket: distinct visitors minus the k the table was built with (its commit metadata)."""
    k = int(commit_metadata(lake, name, versions.get(name)).get("k_anonymity", 0))
    if k < 2:
        return pa.table({"margin": pa.array([-1], pa.int64())})
    t = lake.read(name, columns=["count_visitors"], version=versions.get(name))
    return pa.table({"margin": pc.subtract(t["count_visitors"], pa.scalar(k, pa.int64()))})


def row_ratio(lake: Lake, name: str, versions: dict[str, int]) -> pa.Table:
    """New rows / rows of the published version it replaces, with the band it must stay in."""
    meta = commit_metadata(lake, name, versions.get(name))
    rows = lake.table(name, version=versions.get(name)).count()
    previous = int(meta.get("previous_rows", 0) or 0)
    ratio = 1.0 if previous == 0 else rows / previous
    return pa.table({"row_ratio": [ratio], "min_ratio": [float(meta.get("min_row_ratio", 0.5))],
                     "max_ratio": [float(meta.get("max_row_ratio", 10.0))],
                     "outside_band": [not float(meta.get("min_row_ratio", 0.5)) <= ratio <= float(meta.get("max_row_ratio", 10.0))]})


def settlement_balance(lake: Lake, name: str, versions: dict[str, int]) -> pa.Table:
    """Per row, in 1e-4 units: total_charge - (voice + sms + data)."""
    con = duckdb.connect()
    con.register("s", lake.table(name, version=versions.get(name)).to_pyarrow_dataset())
    return con.sql("select ((total_charge - voice_charge - sms_charge - data_charge) * 10000)::bigint as diff, "
                   "total_charge from s").to_arrow_table()


def suites_for(partner_id: str, table: str, staged: str) -> list[Suite]:
    """Every suite guarding one staged share table (``staging/shares/<partner>/<table>``)."""
    base = f"shares.{partner_id}.{table}"
    out = [
        Suite(f"{base}.no_raw_identifiers", staged,
              lambda: [E.ExpectColumnValuesToBeBetween(column="raw_hits", min_value=0, max_value=0),
                       E.ExpectColumnValuesToNotBeInSet(column="column_name", value_set=RAW_COLUMNS)],
              frame=lambda lake, v, s=staged: raw_identifier_hits(lake, s, v), inputs=(SUBSCRIBERS, USAGE),
              description="a share column holds raw subscriber ids, MSISDNs, IMSIs or called numbers; fix sql/partners/" + table + ".sql"),
        Suite(f"{base}.keys", staged,
              lambda t=table: [E.ExpectCompoundColumnsToBeUnique(column_list=KEYS[t]) if len(KEYS[t]) > 1
                               else E.ExpectColumnValuesToBeUnique(column=KEYS[t][0]),
                               *[E.ExpectColumnValuesToNotBeNull(column=c) for c in KEYS[t]]],
              description="duplicate or null keys in the share: the model's grain is broken"),
        Suite(f"{base}.row_count_band", staged,
              lambda: [E.ExpectColumnValuesToBeInSet(column="outside_band", value_set=[False])],
              frame=lambda lake, v, s=staged: row_ratio(lake, s, v),
              description="the share's row count moved outside [sharing] min/max_row_ratio of the published version: check the inputs"),
    ]
    if table == "location_footfall":
        out.append(Suite(f"{base}.k_anonymity", staged,
                         lambda: [E.ExpectColumnValuesToBeBetween(column="margin", min_value=0)],
                         frame=lambda lake, v, s=staged: k_margin(lake, s, v),
                         description="a footfall bucket has fewer than k distinct subscribers"))
    if table == "roaming_settlement":
        out.append(Suite(f"{base}.balance", staged,
                         lambda: [E.ExpectColumnValuesToBeBetween(column="diff", min_value=0, max_value=0),
                                  E.ExpectColumnValuesToNotBeNull(column="total_charge")],
                         frame=lambda lake, v, s=staged: settlement_balance(lake, s, v),
                         description="settlement totals do not balance, or a visited network has no wholesale rate in the catalog"))
    return out


def _registry_suites() -> list[Suite]:
    from pipelines.core.config import load_settings
    from pipelines.core.errors import TelcolakeError
    from pipelines.sharing.registry import load_partners

    try:
        partners = load_partners(load_settings())
    except TelcolakeError:
        return []
    return [s for p in partners.values() for t in p.tables for s in suites_for(p.partner_id, t, p.staging_table(t))]


SUITES: list[Suite] = _registry_suites()

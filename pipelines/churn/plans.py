"""Plan fees and allowances for the churn features, from the tariff catalog in force at a date."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pyarrow as pa

from pipelines.billing.catalog import DEFAULT_CATALOG, read_catalog, version_for
from pipelines.core.contracts import MONEY

PLAN_SCHEMA = pa.schema(
    [("plan_id", pa.string()), ("monthly_fee", MONEY), ("voice_allowance_s", pa.int64()),
     ("sms_allowance", pa.int64()), ("data_allowance_bytes", pa.int64())]
)
# Used only when reference/catalog.toml is absent (a lake without the billing domain).
FALLBACK = [
    ("lite", Decimal("9.99"), 100 * 60, 50, 2_000_000_000),
    ("plus", Decimal("19.99"), 500 * 60, 500, 10_000_000_000),
    ("max", Decimal("39.99"), 3000 * 60, 3000, 50_000_000_000),
]


def plan_table(as_of: date) -> pa.Table:
    """One row per plan: monthly fee and allowances (base units) of the catalog version at ``as_of``."""
    rows = []
    if DEFAULT_CATALOG.is_file():
        version = version_for(read_catalog(), datetime.combine(as_of, time(), tzinfo=UTC))
        for plan in (version.plans.values() if version else []):
            allowance = {a.event_type: a.quantity_base for a in plan.allowances}
            rows.append((plan.plan_id, plan.monthly_fee, allowance.get("voice"), allowance.get("sms"), allowance.get("data")))
    rows = rows or FALLBACK
    return pa.Table.from_pylist([dict(zip(PLAN_SCHEMA.names, r, strict=True)) for r in rows], schema=PLAN_SCHEMA)

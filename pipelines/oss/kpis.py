"""Fulfilment KPIs: the ``sql/oss/`` models over the gold tables, and the headline figures."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.duck import model_sql, query
from pipelines.core.errors import LakeError
from pipelines.core.lake import Lake
from pipelines.oss.tables import JEOPARDY, ORDERS, TRANSITIONS

MODELS = ("lead_time", "fallout", "jeopardy_rate", "in_flight", "stuck_orders")
VIEWS = {"orders": ORDERS, "transitions": TRANSITIONS, "jeopardy": JEOPARDY}

FIGURES = """
with orders as (select * from orders),
     jeopardy as (select * from jeopardy)
select count(*) as orders,
       count(*) filter (where state = 'completed') as completed,
       count(*) filter (where state = 'failed') as failed,
       count(*) filter (where state = 'cancelled') as cancelled,
       count(*) filter (where state = 'held') as held,
       count(*) filter (where state in ('in_progress', 'compensating')) as in_flight,
       round(quantile_cont(lead_time_s, 0.5) filter (where state = 'completed'), 3) as lead_time_p50_s,
       round(quantile_cont(lead_time_s, 0.95) filter (where state = 'completed'), 3) as lead_time_p95_s,
       round((count(*) filter (where state in ('failed', 'held')))
             / nullif(count(*) filter (where state in ('completed', 'failed', 'held')), 0), 4) as fallout_rate,
       round(count(*) filter (where jeopardies > 0) / nullif(count(*), 0), 4) as jeopardy_rate,
       (select count(*) from jeopardy) as jeopardy_alerts,
       (select count(*) from jeopardy where status = 'open') as jeopardy_open,
       sum(retries)::bigint as retries
from orders
"""


def _con(settings: Settings):
    lake = Lake.from_settings(settings)
    missing = [t for t in VIEWS.values() if not lake.exists(t)]
    if missing:
        raise LakeError(f"no fulfilment tables yet ({', '.join(missing)} missing): run `telcolake fulfil` on some orders first")
    con = duckdb.connect()
    for view, table in VIEWS.items():  # read whole: MERGE writes string_view files that Arrow cannot filter
        con.register(view, lake.read(table))
    return con


def kpis(settings: Settings, models: tuple[str, ...] = MODELS) -> dict[str, pa.Table]:
    """Each ``sql/oss/<model>.sql`` over the current gold tables.

    Raises:
        LakeError: the fulfilment tables do not exist yet.
    """
    con = _con(settings)
    return {m: query(con, model_sql(f"oss/{m}")) for m in models}


def figures(settings: Settings) -> dict[str, Any]:
    """The headline numbers: orders per state, lead time p50/p95 (s), fallout and jeopardy rates.

    Raises:
        LakeError: the fulfilment tables do not exist yet.
    """
    return query(_con(settings), FIGURES).to_pylist()[0]

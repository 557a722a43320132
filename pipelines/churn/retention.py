"""gold/offers/retention: the day's retention offers in one table, each with its reason.

Two sources meet here: the churn model's top-risk offers of an as-of date (``gold/churn/offers``,
written by ``churn score``) and the stream flow's dropped-call offer triggers of the week before
it (``gold/offers/triggers``: a subscriber whose calls kept dropping on a failing cell and who
dialled again). ``sql/churn/retention_offers.sql`` joins them; the day's partition is replaced.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from pipelines.churn.features import FEATURES, write_day
from pipelines.churn.model import OFFER_RULES, OFFERS
from pipelines.core.config import Settings
from pipelines.core.duck import connect, model_sql, query
from pipelines.core.errors import ChurnError
from pipelines.core.lake import Lake

RETENTION = "gold/offers/retention"
TRIGGERS = "gold/offers/triggers"  # written by the offers stream flow (pipelines/streams/offers.py)
TRIGGERS_EMPTY = pa.schema([("trigger_id", pa.string()), ("subscriber_id", pa.string()), ("trigger_date", pa.date32()),
                            ("dropped_calls", pa.int64())])


@dataclass
class RetentionRun:
    """What one run wrote: offers by source."""

    as_of_date: str
    offers: int
    by_source: dict[str, int]


def trigger_offer(reason: str = "dropped_calls") -> tuple[str, str]:
    """The offer (id, text) for a stream trigger of ``reason`` ([triggers.<reason>] of reference/churn_offers.toml)."""
    entry = tomllib.loads(OFFER_RULES.read_text()).get("triggers", {}).get(reason)
    if not entry or not {"offer_id", "text"} <= set(entry):
        raise ChurnError(f"churn_offers.toml: [triggers.{reason}] needs offer_id and text")
    return entry["offer_id"], entry["text"]


def retention_offers(settings: Settings, as_of: date) -> RetentionRun:
    """Write the ``as_of`` partition of gold/offers/retention from the day's model offers and the week's triggers.

    Raises:
        ChurnError: no model offers for ``as_of`` (run ``telcolake churn score --as-of`` first).
    """
    lake = Lake.from_settings(settings)
    if not lake.exists(OFFERS):
        raise ChurnError(f"no churn offers yet: run `telcolake churn score --as-of {as_of}` first")
    offer_id, text = trigger_offer()
    con = connect(lake, {"churn_offers": OFFERS, "features_daily": FEATURES})
    con.execute("set TimeZone = 'UTC'")
    con.register("offer_triggers", lake.dataset(TRIGGERS) if lake.exists(TRIGGERS) else TRIGGERS_EMPTY.empty_table())
    con.register("offer_params", pa.table({"as_of_date": pa.array([as_of], pa.date32()), "trigger_offer_id": [offer_id],
                                           "trigger_offer_text": [text]}))
    rows = query(con, model_sql("churn/retention_offers"))
    con.close()
    if not rows.num_rows:
        raise ChurnError(f"no churn offers for {as_of}: run `telcolake churn score --as-of {as_of}` first")
    write_day(lake, RETENTION, as_of, rows)
    sources = rows["source"].to_pylist()
    return RetentionRun(as_of_date=as_of.isoformat(), offers=rows.num_rows, by_source={s: sources.count(s) for s in sorted(set(sources))})

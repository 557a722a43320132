"""gold/offers/retention: the day's model offers and the week's dropped-call triggers, one row per subscriber, each with its reason."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from pipelines.churn.model import OFFERS
from pipelines.churn.retention import RETENTION, TRIGGERS, retention_offers
from pipelines.core.errors import ChurnError
from pipelines.core.lake import Lake

DAY = date(2026, 10, 8)


def _offer(sub: str, rank: int, score: float, as_of: date = DAY) -> dict:
    return {"subscriber_id": sub, "account_id": f"ACC-{sub}", "as_of_date": as_of, "model_version": 1, "churn_score": score,
            "risk_rank": rank, "top_reason": "complaints_90d", "reasons": "complaints_90d=2 (+2.04)",
            "offer_id": "care_callback", "offer_text": "Priority call back"}


def _trigger(sub: str, day: date, dropped: int) -> dict:
    return {"trigger_id": f"dropped_calls:{sub}:{day}", "subscriber_id": sub, "reason": "dropped_calls", "trigger_date": day,
            "triggered_at": datetime(day.year, day.month, day.day, 12, tzinfo=UTC), "dropped_calls": dropped}


def test_model_offers_and_triggers_meet_in_one_table_with_their_reasons(local_settings):
    lake = Lake(local_settings.lake_root)
    with pytest.raises(ChurnError, match="churn score"):
        retention_offers(local_settings, DAY)
    lake.write(OFFERS, pa.Table.from_pylist([_offer("S1", 1, 0.9), _offer("S2", 2, 0.8), _offer("S9", 1, 0.7, date(2026, 10, 7))]))
    lake.write("gold/churn/features_daily", pa.Table.from_pylist(
        [{"subscriber_id": s, "account_id": f"ACC-{s}", "as_of_date": DAY} for s in ("S1", "S2", "S3", "S4")]))
    lake.write(TRIGGERS, pa.Table.from_pylist([
        _trigger("S2", date(2026, 10, 5), 3),  # also a model offer: keeps the model's offer, both reasons
        _trigger("S3", date(2026, 10, 6), 4), _trigger("S3", date(2026, 10, 7), 3),  # two days, one row
        _trigger("S4", date(2026, 9, 30), 5),  # more than 7 days before: not today's
        _trigger("S4", DAY, 3),  # on the as-of date itself: not known at its 00:00
    ]))
    run = retention_offers(local_settings, DAY)
    rows = {r["subscriber_id"]: r for r in lake.read(RETENTION).to_pylist()}
    assert run.offers == 3 and run.by_source == {"churn_model": 1, "churn_model+dropped_calls": 1, "dropped_calls": 1}
    assert set(rows) == {"S1", "S2", "S3"}
    assert rows["S1"]["reason"] == "churn risk 0.900 (rank 1): complaints_90d=2 (+2.04)" and rows["S1"]["offer_id"] == "care_callback"
    assert rows["S2"]["offer_id"] == "care_callback" and rows["S2"]["reason"].endswith("; 3 dropped calls within an hour on 1 day(s), last 2026-10-05")
    s3 = rows["S3"]
    assert (s3["offer_id"], s3["account_id"], s3["dropped_calls"], s3["churn_score"]) == ("network_care", "ACC-S3", 7, None)
    assert s3["reason"] == "7 dropped calls within an hour on 2 day(s), last 2026-10-07"
    assert s3["trigger_ids"] == ["dropped_calls:S3:2026-10-06", "dropped_calls:S3:2026-10-07"]
    retention_offers(local_settings, DAY)  # a rerun replaces the day
    assert lake.read(RETENTION).num_rows == 3

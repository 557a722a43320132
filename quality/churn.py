"""Quality suites guarding gold/churn: one row per (subscriber, as-of date), required features, bounds."""

from __future__ import annotations

import great_expectations as gx

from pipelines.churn.features import FEATURE_COLUMNS
from quality.core import Suite

FEATURES = "gold/churn/features_daily"
SCORES = "gold/churn/scores"
OFFERS = "gold/churn/offers"
E = gx.expectations
# Null by definition: no call on a cell-day with a known drop rate / no payment yet.
NULLABLE = ("cell_drop_rate_30d", "days_since_last_payment")
REQUIRED = [
    "subscriber_id", "account_id", "as_of_date", "status", "plan_id",
    *(c for c in FEATURE_COLUMNS if c not in NULLABLE),
]
SHARES = ["intl_share_30d", "roaming_share_30d", "dropped_call_rate_30d", "cell_drop_rate_30d"]
TRENDS = ["voice_min_trend", "call_count_trend", "sms_count_trend", "data_mb_trend"]
NON_NEGATIVE = [
    "tenure_days", "voice_min_7d", "voice_min_30d", "call_count_7d", "call_count_30d", "sms_count_7d", "sms_count_30d",
    "data_mb_7d", "data_mb_30d", "distinct_called_numbers_30d", "complaints_90d", "open_tickets", "payment_failures_90d",
    "days_since_last_payment", "downgrades_90d", "bundle_utilisation", "ott_services_active",
]


def _features() -> list:
    return [
        E.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "as_of_date"]),
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in REQUIRED),
        *(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in SHARES),
        *(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=10) for c in TRENDS),
        *(E.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in NON_NEGATIVE),
        E.ExpectColumnValuesToBeBetween(column="days_since_last_activity", min_value=1, max_value=366),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=["active", "suspended"]),
        E.ExpectColumnValuesToBeInSet(column="plan_id", value_set=["lite", "plus", "max"]),
    ]


SUITES: list[Suite] = [
    Suite(
        name="churn.features_daily",
        table=FEATURES,
        expectations=_features,
        description="a duplicated (subscriber, as_of_date), a missing required feature or a ratio out of bounds: sql/churn/features_daily.sql",
    ),
    Suite(
        name="churn.scores",
        table=SCORES,
        expectations=lambda: [
            E.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "as_of_date"]),
            E.ExpectColumnValuesToNotBeNull(column="churn_score"),
            E.ExpectColumnValuesToBeBetween(column="churn_score", min_value=0, max_value=1),
            E.ExpectColumnValuesToBeBetween(column="risk_rank", min_value=1),
        ],
        description="a subscriber scored twice for a day or a score outside [0, 1]: pipelines/churn/scoring.py",
    ),
    Suite(
        name="churn.offers",
        table=OFFERS,
        expectations=lambda: [
            E.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "as_of_date"]),
            E.ExpectColumnValuesToNotBeNull(column="offer_id"),
            E.ExpectColumnValuesToNotBeNull(column="reasons"),
        ],
        description="two offers for a subscriber and day or an offer without reasons: reference/churn_offers.toml",
    ),
]

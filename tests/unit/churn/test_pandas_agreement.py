"""The SQL features and the straightforward pandas implementation agree on a synthetic sample."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.churn import synthetic
from pipelines.churn.features import FEATURES, build_features
from pipelines.churn.pandas_reference import features as pandas_features
from pipelines.churn.plans import plan_table
from pipelines.core.lake import Lake


def test_sql_and_pandas_agree(local_settings):
    cfg = synthetic.SynthConfig(subscribers=80, days=60, events_per_day=6, churn_share=0.2, late_share=0.05, seed=11)
    lake = Lake.from_settings(local_settings)
    pop = synthetic.Population(cfg)
    usage = pa.concat_tables(list(synthetic.usage_days(pop)))
    bss, kpi = synthetic.bss_events(pop), synthetic.kpi_samples(cfg)
    lake.write("silver/usage", usage, partition_by=["event_date"])
    lake.write("bronze/bss.events", bss, partition_by=["event_month"])
    lake.write("bronze/network.events", kpi, partition_by=["event_date"])
    days = [cfg.start + timedelta(days=n) for n in (38, 46, 59)]
    build_features(local_settings, days[0], days[-1])
    sql = lake.read(FEATURES).to_pandas()
    u, b, k = usage.to_pandas(), bss.to_pandas(), kpi.to_pandas()
    for day in days:
        ours = sql[sql["as_of_date"] == day].sort_values("subscriber_id").reset_index(drop=True)
        ref = pandas_features(u, b, k, plan_table(day).to_pandas(), day)
        assert len(ours) == len(ref) > 50
        assert ours["subscriber_id"].tolist() == ref["subscriber_id"].tolist()
        assert set(ours.columns) == set(ref.columns)
        for col in ref.columns:
            left, right = ours[col], ref[col]
            if col in ("subscriber_id", "account_id", "status", "plan_id", "as_of_date", "monthly_fee"):
                assert left.astype(str).tolist() == right.astype(str).tolist(), col
            else:
                np.testing.assert_allclose(pd.to_numeric(left).astype(float), pd.to_numeric(right).astype(float), rtol=1e-9, err_msg=col)
    # the sample exercises what it should: late rows, churners gone, downgrades, open tickets, trends
    assert (sql["downgrades_90d"] > 0).any() and (sql["open_tickets"] > 0).any() and (sql["cell_drop_rate_30d"] > 0).any()
    assert sql.groupby("as_of_date").size().is_monotonic_decreasing and (sql["data_mb_trend"] < 0.5).any()

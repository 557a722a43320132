"""gold/churn/features_daily: hand-worked values, point-in-time correctness, partition replacement."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from pipelines.churn.features import FEATURES, build_features
from pipelines.core.errors import ConfigError, LakeError
from pipelines.core.lake import Lake
from tests.unit.churn.data import bss, kpi, usage, write

D = date(2026, 11, 1)
A, B, C = "SUB0000001", "SUB0000002", "SUB0000003"


def base_rows() -> dict:
    return {
        "usage_rows": [
            usage(A, "voice", "2026-10-20T10:00", duration_s=120, called="4930123"),
            usage(A, "voice", "2026-10-02T10:00", duration_s=60, called="33123", dropped=True),
            usage(A, "voice", "2026-10-28T10:00", duration_s=300, called="4930123"),
            usage(A, "sms", "2026-10-29T10:00", called="4917000"),
            usage(A, "data", "2026-10-25T10:00", mb=100, cell=None, plmn="208-01"),
            usage(A, "data", "2026-09-28T10:00", mb=40),  # prior-28 window only
            usage(B, "data", "2026-10-31T23:50", mb=7),
        ],
        "bss_rows": [
            bss(A, "activated", "2025-01-01T00:00", plan="max"),
            bss(A, "plan_changed", "2026-10-05T00:00", plan="lite", from_plan="max"),
            bss(A, "ticket_opened", "2026-10-10T00:00", ticket_id="T1"),
            bss(A, "ticket_opened", "2026-10-11T00:00", ticket_id="T2"),
            bss(A, "ticket_resolved", "2026-10-12T00:00", ticket_id="T2"),
            bss(A, "payment_failed", "2026-10-15T00:00", amount="9.99"),
            bss(A, "payment", "2026-10-20T08:00", amount="9.99"),
            bss(A, "ott_activated", "2026-10-03T00:00", ott_partner_id="ott-musicbox"),
            bss(A, "ott_activated", "2026-10-03T00:00", ott_partner_id="ott-streamflix"),
            bss(A, "ott_deactivated", "2026-10-09T00:00", ott_partner_id="ott-streamflix"),
            bss(B, "activated", "2026-10-30T12:00", plan="plus"),
            bss(C, "activated", "2024-01-01T00:00", plan="lite"),
            bss(C, "terminated", "2026-10-30T00:00"),
        ],
        "kpi_rows": [kpi("C0001", "2026-10-20T10:00", 100, 5), kpi("C0001", "2026-10-28T10:00", 300, 15)],
    }


def features(lake: Lake, day: date) -> list[dict]:
    table = lake.read(FEATURES)
    rows = table.filter(pa.compute.equal(table["as_of_date"], pa.scalar(day, pa.date32()))).to_pylist()
    return sorted(rows, key=lambda r: r["subscriber_id"])


def test_hand_worked_values(local_settings):
    lake = Lake.from_settings(local_settings)
    write(lake, **base_rows())
    run = build_features(local_settings, D)
    assert run.days == ["2026-11-01"] and run.rows == 2  # C terminated before D
    a, b = features(lake, D)
    assert (a["subscriber_id"], b["subscriber_id"]) == (A, B)
    assert a["plan_id"] == "lite" and str(a["monthly_fee"]) == "9.9900" and a["status"] == "active"
    assert a["tenure_days"] == (D - date(2025, 1, 1)).days
    assert a["voice_min_7d"] == pytest.approx(5.0) and a["voice_min_30d"] == pytest.approx(8.0)
    assert (a["call_count_7d"], a["call_count_30d"], a["sms_count_7d"], a["sms_count_30d"]) == (1, 3, 1, 1)
    assert a["data_mb_7d"] == pytest.approx(100.0) and a["data_mb_30d"] == pytest.approx(100.0)
    # prior 28 days (Sep 27 .. Oct 24): voice 180 s = 3 min, 2 calls, 40 MB, 0 SMS
    assert a["voice_min_trend"] == pytest.approx(5.0 * 4 / 3) and a["call_count_trend"] == pytest.approx(2.0)
    assert a["data_mb_trend"] == pytest.approx(10.0) and a["sms_count_trend"] == 10.0
    assert a["distinct_called_numbers_30d"] == 3
    assert a["intl_share_30d"] == pytest.approx(1 / 4) and a["roaming_share_30d"] == pytest.approx(1 / 5)
    assert a["dropped_call_rate_30d"] == pytest.approx(1 / 3)
    assert a["cell_drop_rate_30d"] == pytest.approx(0.05)  # both KPI'd cell-days at 5 %
    assert (a["complaints_90d"], a["open_tickets"], a["payment_failures_90d"], a["downgrades_90d"]) == (2, 1, 1, 1)
    assert a["days_since_last_payment"] == 12 and a["ott_services_active"] == 1
    assert a["days_since_last_activity"] == 3
    assert a["bundle_utilisation"] == 0.0  # November's cycle has no usage yet on Nov 1
    assert b["tenure_days"] == 2 and b["days_since_last_activity"] == 1 and b["days_since_last_payment"] is None
    assert b["voice_min_trend"] == 1.0 and b["data_mb_trend"] == 10.0
    # the October cycle on Oct 30: lite allows 100 min, 50 SMS, 2000 MB
    build_features(local_settings, date(2026, 10, 30))
    a30 = features(lake, date(2026, 10, 30))[0]
    assert a30["bundle_voice_util"] == pytest.approx(8.0 / 100) and a30["bundle_data_util"] == pytest.approx(100 / 2000)
    assert a30["bundle_sms_util"] == pytest.approx(1 / 50) and a30["bundle_utilisation"] == pytest.approx(0.08)


def test_point_in_time_later_and_late_events_leave_the_day_unchanged(local_settings):
    lake = Lake.from_settings(local_settings)
    write(lake, **base_rows())
    build_features(local_settings, D)
    before = features(lake, D)
    write(
        lake,
        usage_rows=[
            usage(A, "voice", "2026-11-01T00:00", duration_s=999, called="4411"),  # at the as-of instant
            usage(A, "voice", "2026-10-31T22:00", duration_s=500, called="4412", known="2026-11-01T00:00"),  # late
            usage(A, "data", "2026-10-20T10:00", mb=5000, known="2026-11-03T09:00"),  # days late
            usage(B, "sms", "2026-10-31T12:00", called="4413", known="2026-11-02T00:00", kafka=False),
        ],
        bss_rows=[
            bss(A, "ticket_opened", "2026-10-31T20:00", known="2026-11-01T00:00:01", ticket_id="T9"),
            bss(A, "terminated", "2026-11-01T08:00"),
            bss(B, "plan_changed", "2026-10-31T10:00", known="2026-11-02T10:00", plan="lite", from_plan="plus"),
        ],
        kpi_rows=[kpi("C0001", "2026-10-20T11:00", 100, 90, known="2026-10-21T01:00")],  # after its day
    )
    build_features(local_settings, D)
    assert features(lake, D) == before
    # ... while a later day does see the late rows (so the test above could fail)
    build_features(local_settings, date(2026, 11, 4))
    b = features(lake, date(2026, 11, 4))[0]
    assert b["subscriber_id"] == B and b["sms_count_7d"] == 1 and b["downgrades_90d"] == 1
    assert [r["subscriber_id"] for r in features(lake, date(2026, 11, 4))] == [B]  # A terminated


def test_known_time_falls_back_to_ingested_at(local_settings):
    lake = Lake.from_settings(local_settings)
    rows = base_rows()
    rows["usage_rows"] = [usage(B, "sms", "2026-10-31T12:00", called="4413", known="2026-11-01T00:00", kafka=False)]
    write(lake, **rows)
    build_features(local_settings, D)
    assert features(lake, D)[1]["sms_count_7d"] == 0  # ingested 3 s after midnight: not known at D


def test_rerun_replaces_only_its_day_and_range_backfills(local_settings):
    lake = Lake.from_settings(local_settings)
    write(lake, **base_rows())
    run = build_features(local_settings, date(2026, 10, 29), date(2026, 11, 1))
    assert run.days == ["2026-10-29", "2026-10-30", "2026-10-31", "2026-11-01"]
    total = lake.read(FEATURES).num_rows
    first = features(lake, date(2026, 10, 30))
    build_features(local_settings, date(2026, 10, 30))
    assert lake.read(FEATURES).num_rows == total and features(lake, date(2026, 10, 30)) == first
    # B is activated on Oct 30 at noon: absent on Oct 30, present from Oct 31
    counts = {d: len(features(lake, d)) for d in (date(2026, 10, 30), date(2026, 10, 31))}
    assert counts == {date(2026, 10, 30): 2, date(2026, 10, 31): 2}
    assert [r["subscriber_id"] for r in features(lake, date(2026, 10, 30))] == [A, C]
    assert [r["subscriber_id"] for r in features(lake, date(2026, 10, 31))] == [A, B]


def test_errors(local_settings):
    with pytest.raises(LakeError, match="silver/usage"):
        build_features(local_settings, D)
    with pytest.raises(ConfigError, match="before"):
        build_features(local_settings, D, date(2026, 10, 1))


def test_quality_suite_passes_and_catches_a_duplicate(local_settings):
    runner = pytest.importorskip("quality.runner")
    lake = Lake.from_settings(local_settings)
    write(lake, **base_rows())
    build_features(local_settings, date(2026, 10, 30), D)
    assert runner.run_gate(local_settings, [FEATURES], raise_on_failure=False).ok
    row = lake.read(FEATURES).slice(0, 1)
    bad = row.set_column(row.schema.get_field_index("intl_share_30d"), "intl_share_30d", pa.array([1.5]))
    lake.write(FEATURES, bad, partition_by=["as_of_date"])
    result = runner.run_gate(local_settings, [FEATURES], raise_on_failure=False)
    assert not result.ok
    text = "\n".join(result.failures)
    assert "subscriber_id" in text and "intl_share_30d" in text

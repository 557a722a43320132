"""A straightforward pandas implementation of features_daily: the benchmark's baseline and the tests' oracle.

It reads raw rows (no staging) and applies the point-in-time rule directly: a row counts for
as-of date d when its event time and ``coalesce(_kafka_timestamp, _delivered_at, _ingested_at)`` are before
d 00:00 UTC. Slow by design (it is what a first notebook would do); the product path is SQL.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

PLAN_ORDER = {"lite": 1, "plus": 2, "max": 3}


def _trend(last7: pd.Series, prior: pd.Series) -> pd.Series:
    ratio = (last7 * 4 / prior.where(prior > 0)).clip(upper=10)
    return ratio.fillna(pd.Series(np.where(last7 > 0, 10.0, 1.0), index=last7.index))


def known_at(df: pd.DataFrame) -> pd.Series:
    """When each row became known: its Kafka timestamp, else its dump's delivery time, else when it landed."""
    delivered = df["_delivered_at"] if "_delivered_at" in df else pd.Series(pd.NaT, index=df.index, dtype=df["_ingested_at"].dtype)
    return df["_kafka_timestamp"].fillna(delivered).fillna(df["_ingested_at"])


def features(usage: pd.DataFrame, bss: pd.DataFrame, kpi: pd.DataFrame, plans: pd.DataFrame, as_of: date,
             *, ttl_days: int = 90) -> pd.DataFrame:
    """Feature rows of ``as_of`` (same columns and definitions as sql/churn/features_daily.sql)."""
    t = pd.Timestamp(as_of, tz="UTC")
    day = lambda n: pd.Timestamp(as_of - pd.Timedelta(days=n), tz="UTC")  # noqa: E731
    known = lambda df, col: df[(df[col] < t) & (known_at(df) < t)]  # noqa: E731

    b = known(bss, "occurred_at").sort_values(["occurred_at", "event_id"])
    life = b[b["kind"].isin(["activated", "plan_changed", "suspended", "resumed", "terminated"])]
    last = life.groupby("subscriber_id").tail(1).set_index("subscriber_id")
    subs = pd.DataFrame({
        "account_id": life.groupby("subscriber_id")["account_id"].last(),
        "activated_at": life[life["kind"] == "activated"].groupby("subscriber_id")["occurred_at"].min(),
        "last_kind": last["kind"],
        "plan_id": life[life["kind"].isin(["activated", "plan_changed"]) & life["plan_id"].notna()].groupby("subscriber_id")["plan_id"].last(),
    })
    subs = subs[subs["activated_at"].notna() & (subs["last_kind"] != "terminated")]
    out = pd.DataFrame(index=subs.index.rename("subscriber_id"))
    out["account_id"] = subs["account_id"]
    out["status"] = np.where(subs["last_kind"] == "suspended", "suspended", "active")
    out["plan_id"] = subs["plan_id"]
    p = plans.set_index("plan_id")
    out["monthly_fee"] = out["plan_id"].map(p["monthly_fee"])
    out["tenure_days"] = (t.normalize() - subs["activated_at"].dt.floor("D").dt.tz_convert("UTC")).dt.days

    u = known(usage, "started_at")
    u = u[u["started_at"] >= day(35)]
    in7, in30 = u["started_at"] >= day(7), u["started_at"] >= day(30)
    prior = u["started_at"] < day(7)
    voice, sms, data = u["event_type"] == "voice", u["event_type"] == "sms", u["event_type"] == "data"
    g = lambda mask, col=None: (u[mask].groupby("subscriber_id")[col].sum() if col else u[mask].groupby("subscriber_id").size())  # noqa: E731
    u = u.assign(volume=u["bytes_up"] + u["bytes_down"])
    pieces = {
        "voice_min_7d": g(voice & in7, "duration_s") / 60, "voice_min_30d": g(voice & in30, "duration_s") / 60,
        "voice_min_prior": g(voice & prior, "duration_s") / 60,
        "call_count_7d": g(voice & in7), "call_count_30d": g(voice & in30), "call_count_prior": g(voice & prior),
        "sms_count_7d": g(sms & in7), "sms_count_30d": g(sms & in30), "sms_count_prior": g(sms & prior),
        "data_mb_7d": g(data & in7, "volume") / 1e6, "data_mb_30d": g(data & in30, "volume") / 1e6,
        "data_mb_prior": g(data & prior, "volume") / 1e6,
    }
    for name, series in pieces.items():
        out[name] = series.reindex(out.index).fillna(0)
    u30 = u[in30]
    called = u30[u30["event_type"].isin(["voice", "sms"]) & u30["called_number"].notna()]
    out["distinct_called_numbers_30d"] = called.groupby("subscriber_id")["called_number"].nunique().reindex(out.index).fillna(0)
    intl = called[~called["called_number"].str.startswith("49")].groupby("subscriber_id").size()
    out["intl_share_30d"] = (intl.reindex(out.index).fillna(0) / called.groupby("subscriber_id").size().reindex(out.index)).fillna(0)
    roam = u30[u30["visited_plmn"].notna()].groupby("subscriber_id").size()
    out["roaming_share_30d"] = (roam.reindex(out.index).fillna(0) / u30.groupby("subscriber_id").size().reindex(out.index)).fillna(0)
    v30 = u30[u30["event_type"] == "voice"]
    dropped = v30[v30["is_dropped"].fillna(False).astype(bool)].groupby("subscriber_id").size()
    out["dropped_call_rate_30d"] = (dropped.reindex(out.index).fillna(0) / out["call_count_30d"].where(out["call_count_30d"] > 0)).fillna(0)

    k = kpi[(kpi["kind"] == "kpi")].copy()
    k["event_date"] = k["observed_at"].dt.floor("D")
    k = k[known_at(k).dt.floor("D") <= k["event_date"]]
    rates = k.groupby(["cell_id", "event_date"])[["dropped_calls", "call_attempts"]].sum()
    rates = (rates["dropped_calls"] / rates["call_attempts"].where(rates["call_attempts"] > 0)).dropna().rename("drop_rate").reset_index()
    vc = v30.assign(event_date=v30["started_at"].dt.floor("D")).merge(rates, on=["cell_id", "event_date"], how="inner")
    out["cell_drop_rate_30d"] = (vc.groupby("subscriber_id")["drop_rate"].sum() / vc.groupby("subscriber_id").size()).reindex(out.index)

    b90 = b[b["occurred_at"] >= day(90)]
    count = lambda df, kind: df[df["kind"] == kind].groupby("subscriber_id").size().reindex(out.index).fillna(0)  # noqa: E731
    out["complaints_90d"] = count(b90, "ticket_opened")
    tickets = b[b["kind"].isin(["ticket_opened", "ticket_resolved"])].copy()
    tickets["ticket_id"] = tickets["attributes"].map(lambda a: json.loads(a).get("ticket_id") if a else None)
    state = tickets.dropna(subset=["ticket_id"]).groupby(["subscriber_id", "ticket_id"])["kind"].agg(set)
    is_open = state.map(lambda s: "ticket_opened" in s and "ticket_resolved" not in s)
    out["open_tickets"] = is_open.groupby(level=0).sum().reindex(out.index).fillna(0)
    out["payment_failures_90d"] = count(b90, "payment_failed")
    paid = b[b["kind"].isin(["payment", "topup"])].groupby("subscriber_id")["occurred_at"].max()
    out["days_since_last_payment"] = (t.normalize() - paid.dt.floor("D")).dt.days.reindex(out.index)
    changes = b90[b90["kind"] == "plan_changed"].copy()
    changes["from_plan"] = changes["attributes"].map(lambda a: json.loads(a).get("from_plan") if a else None)
    down = changes["plan_id"].map(PLAN_ORDER) < changes["from_plan"].map(PLAN_ORDER)
    out["downgrades_90d"] = changes[down].groupby("subscriber_id").size().reindex(out.index).fillna(0)

    cycle = u[u["started_at"] >= pd.Timestamp(date(as_of.year, as_of.month, 1), tz="UTC")]
    for kind, col, allowance, name in (("voice", "duration_s", "voice_allowance_s", "bundle_voice_util"),
                                       ("sms", None, "sms_allowance", "bundle_sms_util"),
                                       ("data", "volume", "data_allowance_bytes", "bundle_data_util")):
        rows = cycle[cycle["event_type"] == kind].groupby("subscriber_id")
        used = (rows[col].sum() if col else rows.size()).reindex(out.index).fillna(0)
        out[name] = used / out["plan_id"].map(p[allowance]).astype(float)
    out["bundle_utilisation"] = out[["bundle_voice_util", "bundle_sms_util", "bundle_data_util"]].fillna(0).max(axis=1)
    ott = b[b["kind"].isin(["ott_activated", "ott_deactivated"])].copy()
    ott["partner"] = ott["attributes"].map(lambda a: json.loads(a).get("ott_partner_id") if a else None)
    latest = ott.dropna(subset=["partner"]).groupby(["subscriber_id", "partner"])["kind"].last()
    out["ott_services_active"] = (latest == "ott_activated").groupby(level=0).sum().reindex(out.index).fillna(0)
    recent = known(usage, "started_at")
    recent = recent[recent["started_at"] >= day(ttl_days)]
    last_use = recent.groupby("subscriber_id")["started_at"].max().dt.floor("D")
    out["days_since_last_activity"] = (t.normalize() - last_use).dt.days.reindex(out.index).fillna(ttl_days)
    for name, base in (("voice_min", "voice_min"), ("call_count", "call_count"), ("sms_count", "sms_count"), ("data_mb", "data_mb")):
        out[f"{name}_trend"] = _trend(out[f"{base}_7d"], out[f"{base}_prior"])
    out = out.drop(columns=["voice_min_prior", "call_count_prior", "sms_count_prior", "data_mb_prior"])
    out.insert(2, "as_of_date", as_of)
    return out.reset_index().sort_values("subscriber_id").reset_index(drop=True)

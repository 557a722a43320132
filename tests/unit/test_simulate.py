"""Simulator: determinism, contracts, planted counts, realism and legacy dumps (no Kafka)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core.contracts import CONTRACTS, decode_batch
from pipelines.core.errors import ConfigError
from pipelines.ingest.dumps import describe, read_values
from pipelines.simulate import LATE_AFTER_S, SimConfig, SimResult, simulate, write_dir
from pipelines.simulate.wire import UNKEYED
from pipelines.simulate.world import CELLS_CSV, ROAMING_PLMNS, cell_table

NOW = datetime(2030, 1, 1, tzinfo=UTC)  # decoder's future-skew check: far after any simulated time
SMALL = SimConfig(subscribers=200, days=2, seed=7)
START_S = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def small() -> SimResult:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def week() -> SimResult:
    """A week, so weekly patterns and churn declines show; no defects to keep it simple."""
    return simulate(SimConfig(subscribers=400, days=7, seed=11, duplicate_rate=0, late_rate=0, malformed_rate=0, churn_rate=0.1))


@pytest.fixture(scope="module")
def decoded(small: SimResult) -> dict:
    return {t: decode_batch(CONTRACTS[t], v, now=NOW) for t, v in small.values.items()}


def _table(result: SimResult, topic: str) -> pl.DataFrame:
    d = decode_batch(CONTRACTS[topic], result.values[topic], now=NOW)
    ts = pl.Series(result.timestamps[topic]).gather(pl.Series(d.index.to_numpy()))
    return pl.from_arrow(d.table).with_columns(_arrival_ms=ts)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_same_bytes_and_different_seed_differs(small: SimResult) -> None:
    again = simulate(SMALL)
    for topic in small.values:
        assert again.values[topic] == small.values[topic]
        assert again.keys[topic] == small.keys[topic]
        assert again.timestamps[topic] == small.timestamps[topic]
    other = simulate(SimConfig(subscribers=200, days=2, seed=8))
    for topic in small.values:
        assert other.values[topic] != small.values[topic]
    ids = set(_table(small, "usage.events")["record_id"])
    assert ids.isdisjoint(set(_table(other, "usage.events")["record_id"]))


# --- contracts and planted counts ------------------------------------------------------------


def test_every_good_record_decodes_and_every_malformed_is_rejected(small: SimResult, decoded: dict) -> None:
    for topic, values in small.values.items():
        planted_bad = {m.value for _, m in small.malformed_rows[topic]}
        rejected = {values[i] for i, _ in decoded[topic].rejects}
        assert rejected == planted_bad, topic
        assert len(decoded[topic].rejects) == small.planted.malformed_by_topic[topic] > 0
        assert decoded[topic].table.num_rows + len(decoded[topic].rejects) == len(values) == small.planted.per_topic[topic]
        assert decoded[topic].extra_fields == 0
    reasons = Counter(r.split(":")[0] for d in decoded.values() for _, r in d.rejects)
    assert {"malformed_json", "bad_type", "missing_field", "unknown_enum", "invalid_utf8"} <= set(reasons)
    assert sum(small.planted.malformed_kinds.values()) == small.planted.malformed


def test_arrays_line_up_and_arrival_order(small: SimResult) -> None:
    for topic in small.values:
        n = len(small.values[topic])
        assert len(small.keys[topic]) == len(small.timestamps[topic]) == n
        stamps = small.timestamps[topic]
        assert all(a <= b for a, b in zip(stamps, stamps[1:], strict=False))
        assert any(k is None for k in small.keys[topic]) == any(m.kind in UNKEYED for _, m in small.malformed_rows[topic])


def test_duplicates_are_exact_repeats_and_counted(small: SimResult) -> None:
    usage = _table(small, "usage.events")
    counts = usage.group_by("record_id").len()
    assert counts["len"].max() == 2
    assert usage.height - usage["record_id"].n_unique() == small.planted.duplicates == round(SMALL.duplicate_rate * (usage.height - small.planted.duplicates))
    repeated = Counter(small.values["usage.events"])
    assert sum(c - 1 for c in repeated.values()) == small.planted.duplicates  # same bytes, not just the same id


def test_late_records_by_arrival_gap(small: SimResult) -> None:
    usage = _table(small, "usage.events")
    end_ms = (usage["started_at"].dt.epoch("ms") + usage["duration_s"] * 1000)
    gap = usage["_arrival_ms"] - end_ms
    assert (gap >= 0).all()
    assert int((gap > LATE_AFTER_S * 1000).sum()) == small.planted.late_by_topic["usage.events"] > 0
    assert gap.max() > 12 * 3600 * 1000  # some arrive a day or more late
    network = _table(small, "network.events").filter(pl.col("kind") == "kpi")
    gap = network["_arrival_ms"] - (network["observed_at"].dt.epoch("ms") + 300_000)
    assert int((gap > LATE_AFTER_S * 1000).sum()) == small.planted.late_by_topic["network.events"] > 0
    assert small.planted.late == sum(small.planted.late_by_topic.values())


# --- identifiers and the BSS stream ------------------------------------------------------------


def test_identifiers_follow_the_shared_formats(small: SimResult) -> None:
    usage = _table(small, "usage.events")
    assert usage["subscriber_id"].str.contains(r"^SUB\d{7}$").all()
    assert usage["msisdn"].str.contains(r"^49151\d{7}$").all()
    assert usage["imsi"].str.contains(r"^26201\d{10}$").all()
    numbers = usage["called_number"].drop_nulls()
    assert numbers.str.contains(r"^(4930|4940|4915|4916|4917|33|34|44|1|90)\d+$").all()
    assert usage.filter(pl.col("event_type") == "data")["called_number"].null_count() == usage.filter(pl.col("event_type") == "data").height
    cells = set(cell_table()["cell_id"])
    assert set(usage["cell_id"].drop_nulls()) <= cells
    roaming = usage.filter(pl.col("visited_plmn").is_not_null())
    assert roaming.height and roaming["cell_id"].null_count() == roaming.height
    assert set(roaming["visited_plmn"]) <= set(ROAMING_PLMNS)
    bss = _table(small, "bss.events")
    assert bss["account_id"].str.contains(r"^ACC\d{7}$").all()
    per_account = bss.group_by("account_id").agg(pl.col("subscriber_id").n_unique().alias("n"))
    assert per_account["n"].max() in (2, 3) and per_account["n"].min() == 1


def test_bss_stream_starts_with_activation_and_ends_with_termination(small: SimResult) -> None:
    bss = _table(small, "bss.events")
    first = bss.group_by("subscriber_id", maintain_order=True).first()
    assert (first["kind"] == "activated").all()
    assert bss.filter(pl.col("kind") == "activated").height == SMALL.subscribers
    act = bss.filter(pl.col("kind") == "activated")
    attrs = [json.loads(a) for a in act["attributes"]]
    assert all({"msisdn", "imsi", "country", "currency", "segment"} <= a.keys() for a in attrs)
    assert {a["country"] for a in attrs} <= {"DE", "AT", "NL"} and {a["currency"] for a in attrs} == {"EUR"}
    tenure_days = (START_S - act["occurred_at"].dt.epoch("s")) / 86400
    assert (tenure_days > 30).mean() > 0.8 and tenure_days.max() > 365  # history: months and years
    assert tenure_days.min() >= 0  # every subscriber exists when the window starts
    term = bss.filter(pl.col("kind") == "terminated")
    assert sorted(term["subscriber_id"]) == sorted(small.planted.churners)
    window_end = datetime(2026, 10, 3, tzinfo=UTC)
    assert (term["occurred_at"] >= datetime(2026, 10, 1, tzinfo=UTC)).all() and (term["occurred_at"] < window_end).all()
    last = bss.sort("occurred_at", maintain_order=True).group_by("subscriber_id", maintain_order=True).last()
    assert set(last.filter(pl.col("subscriber_id").is_in(small.planted.churners))["kind"]) == {"terminated"}
    kinds = set(bss["kind"])
    assert {"activated", "plan_changed", "payment", "ticket_opened", "ott_activated", "terminated"} <= kinds
    assert bss.filter(pl.col("kind").is_in(["payment", "payment_failed", "topup"]))["amount"].null_count() == 0


# --- realism ---------------------------------------------------------------------------------


def test_diurnal_and_weekly_patterns(week: SimResult) -> None:
    usage = _table(week, "usage.events").filter(~pl.col("subscriber_id").is_in(week.planted.fraudsters))
    local = usage.with_columns(t=pl.col("started_at").dt.convert_time_zone("Europe/Berlin"))
    by_hour = local.group_by(pl.col("t").dt.hour().alias("h"), "event_type").len()
    night = by_hour.filter(pl.col("h").is_between(2, 5))
    day = by_hour.filter(pl.col("h").is_between(10, 21))
    for kind in ("voice", "sms", "data"):
        n = night.filter(pl.col("event_type") == kind)["len"].mean()
        d = day.filter(pl.col("event_type") == kind)["len"].mean()
        assert d > 3 * n, kind
    voice = local.filter(pl.col("event_type") == "voice").group_by(weekend=pl.col("t").dt.weekday() >= 6).len()
    per_day = {r["weekend"]: r["len"] / (2 if r["weekend"] else 5) for r in voice.to_dicts()}
    assert per_day[True] < 0.85 * per_day[False]
    per_sub_day = usage.height / (400 * 7)
    assert 25 < per_sub_day < 60


def test_sim_box_fraudsters_stand_out(week: SimResult) -> None:
    usage = _table(week, "usage.events")
    box = [s for s, k in week.planted.fraud_kinds.items() if k == "sim_box"]
    assert box
    stats = usage.filter(pl.col("event_type") == "voice").group_by("subscriber_id").agg(
        calls=pl.len(), numbers=pl.col("called_number").n_unique(), cells=pl.col("cell_id").n_unique(),
        mo=(pl.col("direction") == "mo").mean(), night=pl.col("started_at").dt.hour().is_between(0, 4).mean())
    normal = stats.filter(~pl.col("subscriber_id").is_in(week.planted.fraudsters))
    fraud = stats.filter(pl.col("subscriber_id").is_in(box))
    assert fraud["calls"].min() > 10 * normal["calls"].median()
    assert fraud["numbers"].min() > 0.9 * fraud["calls"].min()
    assert fraud["cells"].max() <= 2 and fraud["mo"].min() > 0.98
    assert fraud["night"].min() > 3 * normal["night"].median()
    other = usage.filter(pl.col("subscriber_id").is_in(box) & (pl.col("event_type") != "voice")).height
    assert other < 0.05 * fraud["calls"].sum()
    velocity = [s for s, k in week.planted.fraud_kinds.items() if k == "intl_velocity"]
    assert velocity
    intl = usage.filter(pl.col("subscriber_id").is_in(velocity) & pl.col("called_number").str.contains(r"^(44|90|1|34)"))
    assert intl.group_by("subscriber_id", pl.col("started_at").dt.truncate("1h")).len()["len"].max() > 15


def test_churners_fade_before_terminating(week: SimResult) -> None:
    usage = _table(week, "usage.events")
    bss = _table(week, "bss.events")
    churners = week.planted.churners
    assert len(churners) == 40
    per_sub = usage.group_by("subscriber_id").len()
    active = bss.filter((pl.col("kind") == "activated") & (pl.col("occurred_at") < datetime(2026, 9, 1, tzinfo=UTC)))["subscriber_id"]
    loyal = per_sub.filter(~pl.col("subscriber_id").is_in(churners + week.planted.fraudsters) & pl.col("subscriber_id").is_in(active.to_list()))
    churn = per_sub.filter(pl.col("subscriber_id").is_in(churners))
    assert churn["len"].mean() < 0.5 * loyal["len"].mean()
    tickets = bss.filter(pl.col("kind") == "ticket_opened")
    churner_rate = tickets.filter(pl.col("subscriber_id").is_in(churners)).height / len(churners)
    other_rate = tickets.filter(~pl.col("subscriber_id").is_in(churners)).height / (400 - len(churners))
    assert churner_rate > 10 * other_rate
    failed = bss.filter((pl.col("kind") == "payment_failed") & pl.col("subscriber_id").is_in(churners))
    assert failed["subscriber_id"].n_unique() > 0.3 * len(churners)
    after = usage.join(bss.filter(pl.col("kind") == "terminated").select("subscriber_id", t="occurred_at"), on="subscriber_id")
    assert after.filter(pl.col("started_at") >= pl.col("t")).height == 0


def test_incidents_drop_calls_and_raise_alarms(week: SimResult) -> None:
    usage = _table(week, "usage.events").filter(pl.col("event_type") == "voice")
    network = _table(week, "network.events")
    assert week.planted.incidents
    hit = pl.lit(False)
    for cell, t0, t1 in week.planted.incidents:
        hit = hit | ((pl.col("cell_id") == cell) & pl.col("started_at").is_between(t0, t1, closed="left"))
        alarms = network.filter((pl.col("kind") == "alarm") & (pl.col("cell_id") == cell) & (pl.col("severity") == "critical"))
        assert alarms["cleared"].to_list() == [False, True]
        kpi = network.filter((pl.col("kind") == "kpi") & (pl.col("cell_id") == cell))
        during = kpi.filter(pl.col("observed_at").is_between(t0, t1, closed="left"))
        before = kpi.filter(pl.col("observed_at") < t0)
        assert during["dropped_calls"].sum() / during["call_attempts"].sum() > 0.1
        assert during["latency_ms"].mean() > 2 * before["latency_ms"].mean()
    on = usage.filter(hit)
    off = usage.filter(~hit)
    assert on.height > 0 and on["is_dropped"].mean() > 5 * off["is_dropped"].mean()
    kpi = network.filter(pl.col("kind") == "kpi")
    assert kpi.height == 120 * 7 * 288
    assert ((kpi["prb_utilization"] >= 0) & (kpi["prb_utilization"] <= 100)).all()
    hourly = kpi.group_by(pl.col("observed_at").dt.convert_time_zone("Europe/Berlin").dt.hour().alias("h")).agg(pl.col("prb_utilization").mean())
    assert hourly.filter(pl.col("h") == 21)["prb_utilization"][0] > 3 * hourly.filter(pl.col("h") == 4)["prb_utilization"][0]


def test_ott_sessions_only_after_ott_activation(week: SimResult) -> None:
    usage = _table(week, "usage.events").filter(pl.col("ott_partner_id").is_not_null())
    assert usage.height > 0 and set(usage["event_type"]) == {"data"}
    bss = _table(week, "bss.events").filter(pl.col("kind") == "ott_activated")
    since = bss.select("subscriber_id", since="occurred_at",
                       partner=pl.col("attributes").str.json_path_match("$.ott_partner_id"))
    joined = usage.join(since, on="subscriber_id", how="left")
    assert joined["since"].null_count() == 0
    assert (joined["started_at"] >= joined["since"]).all() and (joined["partner"] == joined["ott_partner_id"]).all()


# --- dumps, cells, config, CLI -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_write_dir_round_trips_through_backfill_reader(small: SimResult, decoded: dict, tmp_path, fmt: str) -> None:
    files = write_dir(small, tmp_path, fmt)
    assert files and all(f.exists() for f in files)
    assert {f.parent.name for f in files} == set(CONTRACTS)
    for topic, contract in CONTRACTS.items():
        mine = sorted(f for f in files if f.parent.name == topic)
        days = {f.stem for f in mine}
        assert "2026-10-01" in days and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in days)
        values = [v for f in mine for v in read_values(describe(f))]
        back = decode_batch(contract, values, now=NOW)
        expect = decoded[topic].table
        assert back.table.num_rows == expect.num_rows
        key = [contract.id_field]
        assert back.table.sort_by([(k, "ascending") for k in key]).equals(expect.sort_by([(k, "ascending") for k in key])), topic
        kinds = Counter(m.kind for _, m in small.malformed_rows[topic])
        if fmt == "jsonl":
            represented = sum(kinds.values())
        else:
            represented = kinds["missing_field"] + kinds["unknown_enum"]
        assert len(back.rejects) == represented
        assert files.skipped[topic] == sum(kinds.values()) - represented


def test_cells_reference_file_is_the_generated_table() -> None:
    cells = pl.read_csv(CELLS_CSV)
    assert cells.equals(cell_table())
    assert cells["cell_id"][0] == "C0001" and cells["site_id"][0] == "S001" and cells["area_id"][0] == "A01"
    per_site = cells.group_by("site_id").len()["len"]
    assert per_site.min() == per_site.max() == 3
    sites_per_area = cells.group_by("area_id").agg(pl.col("site_id").n_unique())["site_id"]
    assert sites_per_area.max() == 6


def test_config_validation_and_settings(local_settings) -> None:
    cfg = SimConfig.from_settings(local_settings)
    assert cfg.subscribers == 2000 and cfg.days == 7 and cfg.start == date(2026, 10, 1) and cfg.kpi_interval_s == 300
    assert SimConfig.from_settings(local_settings, days=2, seed=None).days == 2
    with pytest.raises(ConfigError, match="simulate.days"):
        SimConfig(days=0)
    with pytest.raises(ConfigError, match="simulate.late_rate"):
        SimConfig(late_rate=2.0)
    with pytest.raises(ConfigError, match="kpi_interval_s"):
        SimConfig(kpi_interval_s=7)


def test_cli_writes_dumps_and_prints_planted(local_settings, tmp_path) -> None:
    out = CliRunner().invoke(app, ["simulate", "--subscribers", "60", "--days", "1", "--seed", "3", "--start", "2026-10-05",
                                   "--to-dir", str(tmp_path / "dump"), "--format", "parquet", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["config"]["start"] == "2026-10-05" and summary["files"] >= 3
    assert {"churners", "fraudsters", "duplicates", "late", "malformed"} <= summary.keys()
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == sorted(CONTRACTS)
    bad = CliRunner().invoke(app, ["simulate", "--to-dir", str(tmp_path), "--format", "xml"])
    assert bad.exit_code == 1 and "--format" in bad.output

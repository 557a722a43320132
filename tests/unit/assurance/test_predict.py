"""Predictive maintenance on a simulated week: point-in-time features, training, evaluation, the stream step, bad input."""

from __future__ import annotations

import itertools
import logging
import pickle
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.assurance.dataset import label, load_history
from pipelines.assurance.evaluate import EVALUATION_INCIDENTS, EVALUATIONS, evaluate, score_method
from pipelines.assurance.features import FEATURES, TS, Gates, advance, empty_state
from pipelines.assurance.history import network_frames, replay_network
from pipelines.assurance.model import (
    MODEL_RUNS,
    check_model,
    episodes,
    featurize,
    load_model,
    predict,
    raised_at,
    train,
)
from pipelines.assurance.scoring import RULE, make_scorer
from pipelines.assurance.settings import PredictSettings
from pipelines.core.config import REPO_ROOT, load_settings
from pipelines.core.contracts import NETWORK, decode_batch, encode_records
from pipelines.core.errors import PredictError
from pipelines.core.lake import Lake
from pipelines.simulate import SimConfig, simulate_days
from pipelines.simulate.generate import KEY_FIELD
from pipelines.streams.config import stream_config
from pipelines.streams.kpi import spec
from tests.integration.streams.scenarios import network_load

WORLD = SimConfig(subscribers=150, days=8, seed=3, incidents_per_day=6, drifts_per_day=3)


def _config() -> str:
    """The repository's telcolake.toml with a 3-day test period and a smaller model."""
    head, tail = (REPO_ROOT / "telcolake.toml").read_text().split("[predict]\n")
    return head + "[predict]\n" + tail.replace("test_days = 7\n", "test_days = 3\n").replace("max_iter = 60\n", "max_iter = 40\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A lake with 8 days of KPI history of 120 cells (48 incidents), a trained model and the planted summary."""
    root = tmp_path_factory.mktemp("predict")
    (root / "telcolake.toml").write_text(_config())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TELCOLAKE_LAKE", str(root / "lake"))
        mp.setenv("TELCOLAKE_STATE_DIR", str(root / "state"))
        mp.setenv("TELCOLAKE_CONFIG", str(root / "telcolake.toml"))
        mp.delenv("TELCOLAKE_KAFKA_BOOTSTRAP", raising=False)
        settings = load_settings()
        assert PredictSettings.from_settings(settings).test_days == 3
        replayed = replay_network(settings, WORLD)
        planted = root / "planted.json"
        import json

        planted.write_text(json.dumps(replayed.planted))
        run = train(settings)
        yield settings, planted, run, replayed


@pytest.mark.slow  # shares the module's replayed week and trained model (about a minute)
def test_features_use_only_the_past_and_do_not_depend_on_batch_cuts(world) -> None:
    settings, *_ = world
    rows, onset = load_history(settings)
    gates = Gates.of(PredictSettings.from_settings(settings))
    whole, state = advance(empty_state(), rows, gates)
    cut = rows["_end"].min() + timedelta(days=3, hours=7, minutes=13)
    # cut off everything after `cut`: the features up to it are the same (no leakage from later rows)
    early, _ = advance(empty_state(), rows.filter(pl.col("_end") <= cut), gates)
    assert early.height > 100_000
    assert early.equals(whole.filter(pl.col("_end") <= cut))
    # the same history fed in three batches (as the stream does), state carried between them
    bounds = [rows["_end"].min() + timedelta(days=d, minutes=37 * d) for d in (0, 2, 5)] + [rows["_end"].max() + timedelta(1)]
    parts, st = [], empty_state()
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        out, st = advance(st, rows.filter((pl.col("_end") >= lo) & (pl.col("_end") < hi)), gates)
        parts.append(out)
    batched = pl.concat(parts).sort("cell_id", "_end")
    assert batched.equals(whole.sort("cell_id", "_end"))
    assert st.sort("cell_id").equals(state.sort("cell_id"))
    # every scored window has its features; the reasons are counted
    reasons = dict(whole.group_by("reason").len().iter_rows())
    assert reasons["new_cell"] >= 120 * 23 and reasons["incident"] > 0 and reasons["recovering"] > 0
    assert whole.filter(pl.col("reason").is_null())[["lat_15m", "prb_1h", "lat_slope_long"]].null_count().sum_horizontal()[0] == 0
    # labels look ahead exactly horizon minutes: a window 2 h before an onset is positive, 2 h 5 min is not
    cell, at = onset.row(0)
    probe = pl.DataFrame({"cell_id": [cell, cell, cell], "_end": [at - timedelta(minutes=120), at - timedelta(minutes=125), at]},
                         schema={"cell_id": pl.String, "_end": pl.Datetime("us", "UTC")})
    assert label(probe, onset.filter(pl.col("cell_id") == cell).head(1), 120).to_list() == [True, False, False]


@pytest.mark.slow  # shares the module's replayed week and trained model (about a minute)
def test_training_records_a_run_and_evaluation_checks_against_planted_incidents(world) -> None:
    settings, planted, run, replayed = world
    lake = Lake.from_settings(settings)
    runs = lake.read(MODEL_RUNS).to_pylist()
    assert [r["model_version"] for r in runs] == [1] and runs[0]["model_sha256"] == run.model_sha256
    assert run.train_to + timedelta(hours=2) == run.test_from  # a horizon's gap: no label reaches into the test
    assert run.positives_train > 0 and run.positives_test > 0 and run.window_roc_auc > 0.5
    e = evaluate(settings, planted)
    in_test = [i for i in replayed.planted["incidents"] if i[1] >= (run.test_from + timedelta(hours=2)).isoformat().replace("+00:00", "Z")]
    assert e.incidents == len(in_test) >= 10
    assert e.reactive_detected == e.incidents and e.reactive_median_delay_minutes > 0
    m = e.model
    assert m.episodes >= m.true_episodes > 0 and m.caught > 0
    assert m.recall_precursor > m.recall_all * 0.9 and m.recall_precursor > 0  # the warnings come from the precursors
    assert m.median_lead_vs_start_minutes > 0 and m.median_lead_minutes > m.median_lead_vs_start_minutes
    written = pl.from_arrow(lake.read(EVALUATIONS))
    assert written["method"].to_list() == ["model", "baseline"] and written["episodes"][0] == m.episodes
    # one row per incident and method: the table reproduces the printed figures
    per = pl.from_arrow(lake.read(EVALUATION_INCIDENTS)).filter(pl.col("method") == "model")
    assert per.height == e.incidents and per["warned_at"].is_not_null().sum() == m.caught
    assert per.filter(pl.col("precursor"))["warned_at"].is_not_null().mean() == pytest.approx(m.recall_precursor, abs=1e-3)
    assert per["lead_minutes"].median() == pytest.approx(m.median_lead_minutes, abs=0.1)


def test_matching_episodes_to_planted_incidents() -> None:
    t = lambda h, m=0: datetime(2026, 10, 5, h, m, tzinfo=UTC)  # noqa: E731
    incidents = pl.DataFrame([("C1", t(10), True, t(10, 16)), ("C2", t(12), True, t(12, 20)), ("C3", t(14), False, t(14, 10)),
                              ("C4", t(16), True, None)], schema={"cell_id": pl.String, "start_at": TS, "precursor": pl.Boolean,
                                                                 "reactive_at": TS}, orient="row")
    drifts = pl.DataFrame([("C9", t(3), t(6))], schema={"cell_id": pl.String, "start_at": TS, "end_at": TS}, orient="row")
    eps = pl.DataFrame([("C1", t(9, 20)), ("C1", t(9, 50)),  # two warnings before C1's incident: the first one counts
                        ("C2", t(9, 30)),  # 2 h 30 min before: outside the 2 h horizon, a false alarm
                        ("C4", t(15, 45)),  # caught, but no reactive alert to measure the lead against
                        ("C9", t(5))],  # on a drift
                       schema={"cell_id": pl.String, "raised_at": TS}, orient="row")
    m = score_method("model", eps, incidents, drifts, timedelta(hours=2))
    assert (m.episodes, m.true_episodes, m.precision, m.caught, m.precision_distinct) == (5, 3, 0.6, 2, 0.5)
    assert (m.recall_precursor, m.recall_all) == (round(2 / 3, 3), 0.5)
    assert (m.median_lead_minutes, m.median_lead_vs_start_minutes, m.drift_episodes) == (56.0, 27.5, 1)


def _stream_raised(settings) -> tuple[set[tuple[str, object]], dict]:
    """Raised predicted_degradation alerts when the KPI flow's logic (with the model) reads the same input."""
    logic = spec(settings).make_logic()
    assert logic.scorer is not None
    raised, counts = set(), {}
    with simulate_days(WORLD) as days:
        for frame in network_frames(days):
            for lo in range(0, frame.height, 25_000):  # batches of the size a Kafka poll gives
                result = logic.process(frame.slice(lo, 25_000))
                for k, v in result.counts.items():
                    counts[k] = counts.get(k, 0) + v
                for _key, value in result.messages:
                    if b'"event":"raised"' in value and RULE.encode() in value:
                        counts["raised_messages"] = counts.get("raised_messages", 0) + 1
                        assert b'"horizon_minutes":120' in value and b'"top_features":"' in value
                if "alerts" in result.rows:
                    for r in result.rows["alerts"].to_pylist():
                        if r["rule"] == RULE:
                            raised.add((r["entity_id"], r["raised_at"]))
    return raised, counts


@pytest.mark.slow  # shares the module's replayed week and trained model (about a minute)
def test_the_stream_step_raises_what_the_offline_scoring_raises(world) -> None:
    settings, *_ = world
    cfg = PredictSettings.from_settings(settings)
    feats, _onset, _v = featurize(settings)
    model, _run = load_model(settings)
    scored = feats["reason"].is_null().to_numpy()
    p = np.zeros(feats.height)
    p[scored] = predict(model, feats.filter(pl.col("reason").is_null()))
    gap = timedelta(minutes=stream_config(settings).alerts.window_gap_minutes)
    assert cfg.threshold == 0 and 0.2 <= model["threshold"] <= 0.95  # the model's own, chosen in training
    offline = {(c, t) for c, t in episodes(feats, scored & (p >= model["threshold"]), p, cfg, gap).iter_rows()}
    raised, counts = _stream_raised(settings)
    assert offline and raised == offline
    assert counts["raised_messages"] == len(raised)
    assert counts["predict_scored"] == int(scored.sum())
    assert counts["predict_new_cell"] == int((feats["reason"] == "new_cell").sum())


def _predicted_rows(settings, order: list[pl.DataFrame]) -> tuple[list[dict], int]:
    """The prediction step's rows (last per alert) when the KPI flow's logic reads ``order``'s batches, and the cells late for their site."""
    logic, rows, late = spec(settings).make_logic(), {}, 0
    for batch in order:
        result = logic.process(batch)
        late += result.counts.get("cells_late_for_site", 0)
        if "predictions" in result.rows:
            rows.update({r["alert_id"]: r for r in result.rows["predictions"].to_pylist()})
    return [rows[k] for k in sorted(rows)], late


@pytest.mark.slow  # shares the module's trained model
def test_partitions_read_at_different_speeds_give_the_same_predictions(world) -> None:
    # network.events is keyed by site, so a site's cells share a partition: however far one
    # partition runs ahead of the other (a catch-up, a restart), the site features and so the
    # predicted alerts are the same
    settings, *_ = world
    settings = replace(settings, raw={**settings.raw, "predict": {**settings.raw["predict"], "threshold": 0.05, "min_history_minutes": 10.0}})
    records = network_load(40, 4, 90, seed=11)
    frame = pl.from_arrow(decode_batch(NETWORK, encode_records(records), now=datetime(2026, 10, 2, tzinfo=UTC)).table)
    frame = frame.with_columns(pl.lit(0, pl.Int32).alias("_kafka_partition"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_kafka_offset"))
    cut = lambda df, n: [df.slice(lo, n) for lo in range(0, df.height, n)]  # noqa: E731

    def partitions(key: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        p = pl.col(key).map_elements(lambda k: zlib.crc32(k.encode()) % 2, return_dtype=pl.Int64)
        return frame.filter(p == 0), frame.filter(p == 1)

    p0, p1 = partitions(KEY_FIELD["network.events"])
    interleaved = [b for pair in itertools.zip_longest(cut(p0, 400), cut(p1, 400)) for b in pair if b is not None]
    assert sum(b.height for b in interleaved) == frame.height
    together, late = _predicted_rows(settings, interleaved)
    ahead, late_ahead = _predicted_rows(settings, cut(p0, 1_500) + cut(p1, 1_500))  # partition 0 read to its end first
    assert len(together) > 20 and ahead == together and late == late_ahead == 0
    # keyed by cell, the partition read late brings cells its sites judged without: counted (and logged)
    c0, c1 = partitions("cell_id")
    by_cell, late_by_cell = _predicted_rows(settings, cut(c0, 1_500) + cut(c1, 1_500))
    assert late_by_cell > 0 and by_cell != together


@pytest.mark.slow  # shares the module's replayed week and trained model (about a minute)
def test_bad_input_gets_a_reason_and_a_bad_model_stops_only_prediction(world, caplog, tmp_path) -> None:
    settings, *_ = world
    model, run = load_model(settings)
    with pytest.raises(PredictError, match="feature version"):
        check_model(dict(model, feature_version=0))
    with pytest.raises(PredictError, match="feature version"):
        check_model(dict(model, features=FEATURES[:-1]))
    scorer = make_scorer(settings, stream_config(settings).alerts)
    assert scorer is not None
    # a new cell, a cell back after a gap, a window without KPI values: reasons, no crash
    t0 = pl.datetime(2026, 12, 1, time_zone="UTC")
    base = {"site_id": "S900", "call_attempts": 40, "dropped_calls": 0, "drop_rate": 0.0, "latency_ms_mean": 20.0,
            "prb_utilization_mean": 40.0, "kpi_samples": 1, "alarm_events": 0, "active_alarms": 0}
    minutes = [*range(0, 150, 5), *range(200, 210, 5)]
    rows = [dict(base, cell_id="C9001", m=m) for m in minutes] + [dict(base, cell_id="C9002", m=m, latency_ms_mean=None) for m in (0, 5)]
    kpi = pl.DataFrame(rows).with_columns((t0 + pl.duration(minutes=pl.col("m"))).alias("window_start")).with_columns(
        (pl.col("window_start") + pl.duration(minutes=1)).alias("window_end"), (pl.col("window_start") + pl.duration(minutes=1)).alias("_end"),
    ).drop("m")
    alerts = pl.DataFrame(schema={"alert_id": pl.String, "rule": pl.String, "entity_id": pl.String,
                                  "raised_at": pl.Datetime("us", "UTC"), "cleared_at": pl.Datetime("us", "UTC")})
    ready = pl.DataFrame({"site_id": ["S900"]}).with_columns((t0 + pl.duration(days=1)).alias("ready"))
    events, _preds, counts = scorer.step(kpi, alerts, ready)
    assert counts["predict_new_cell"] == 24  # the first 2 h of C9001
    assert counts["predict_gap"] == 2 and counts["predict_missing_kpi"] == 2 and counts["predict_scored"] == 6
    assert events == []
    # a missing model file: the KPI flow runs on without the step, and says why in one line
    Path(run["model_path"]).rename(tmp_path / "away.pkl")
    try:
        with caplog.at_level(logging.WARNING, logger="telcolake.predict"):
            assert make_scorer(settings, stream_config(settings).alerts) is None
            logic = spec(settings).make_logic()
        assert logic.scorer is None and "predictions" not in spec(settings).outputs
        assert any("is missing" in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)
        with pytest.raises(PredictError, match="is missing"):
            load_model(settings)
    finally:
        (tmp_path / "away.pkl").rename(run["model_path"])
    # another feature version on disk: refused by the checksum first, then by the version
    blob = Path(run["model_path"]).read_bytes()
    try:
        Path(run["model_path"]).write_bytes(pickle.dumps(dict(pickle.loads(blob), feature_version=0)))  # noqa: S301
        with pytest.raises(PredictError, match="checksum"):
            load_model(settings)
    finally:
        Path(run["model_path"]).write_bytes(blob)
    off = replace(PredictSettings.from_settings(settings), enabled=False)
    assert off.enabled is False


@pytest.mark.slow  # shares the module's replayed week and trained model (about a minute)
def test_replay_refuses_a_lake_with_history(world) -> None:
    settings, *_ = world
    with pytest.raises(PredictError, match="already exists"):
        replay_network(settings, WORLD)


@pytest.mark.slow  # uses the module's trained model
def test_cli_evaluate_prints_the_figures_and_writes_them(world) -> None:
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    _settings, planted, run, _ = world
    out = CliRunner().invoke(app, ["predict", "evaluate", "--planted", str(planted), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["model_version"] == run.model_version and doc["model"]["method"] == "model" and doc["baseline"]["method"] == "baseline"
    table = CliRunner().invoke(app, ["predict", "evaluate", "--planted", str(planted), "--threshold", "0.99"])
    assert table.exit_code == 0 and "0.99:" in table.output and "reactive rule" in table.output


def test_cli_says_what_is_missing_in_one_line(local_settings, tmp_path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = CliRunner().invoke(app, ["predict", "train"])
    assert out.exit_code == 1 and "gold/network/cell_kpi_1m does not exist" in out.output
    (tmp_path / "planted.json").write_text("{}")
    out = CliRunner().invoke(app, ["predict", "evaluate", "--planted", str(tmp_path / "planted.json")])
    assert out.exit_code == 1 and "not a planted summary" in out.output


def test_the_threshold_search_raises_what_the_stream_lifecycle_raises() -> None:
    """raised_at (runs of flags) equals episodes (the stream's window-by-window lifecycle), gaps and clears included."""
    rng = np.random.default_rng(7)
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    rows = []
    for c in range(6):
        t = t0
        for _ in range(3000):
            t += timedelta(minutes=5 if rng.random() > 0.01 else 45)  # now and then a gap longer than the alert rules allow
            rows.append((f"C{c}", f"S{c // 3}", t - timedelta(minutes=1), t))
    frame = pl.DataFrame(rows, schema={"cell_id": pl.String, "site_id": pl.String, "window_start": TS, "_end": TS}, orient="row")
    runs = rng.random(frame.height) < 0.15  # flags come in runs: a flag tends to follow a flag
    flag = np.zeros(frame.height, bool)
    for i in range(1, frame.height):
        flag[i] = runs[i] or (flag[i - 1] and rng.random() < 0.7)
    gap = timedelta(minutes=stream_config(load_settings()).alerts.window_gap_minutes)
    for need, clear in ((1, 1), (2, 3), (3, 2), (4, 6)):
        cfg = replace(PredictSettings(), raise_after_windows=need, clear_after_windows=clear)
        slow = episodes(frame, flag, np.zeros(frame.height), cfg, gap).sort("cell_id", "raised_at")
        fast = raised_at(frame, flag, cfg, gap).sort("cell_id", "raised_at")
        assert slow.height > 50 and fast.equals(slow), (need, clear, slow.height, fast.height)

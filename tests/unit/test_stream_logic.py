"""Stream building blocks without Kafka: windows are batch-boundary independent, alert lifecycle, config."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from pipelines.core.errors import ConfigError
from pipelines.streams.alerts import Episodes
from pipelines.streams.config import stream_config
from pipelines.streams.windows import KeyedWindows, WindowSpec

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _records(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows, clock = [], {k: 0 for k in "abc"}
    for i in range(n):
        k = rng.choice("abc")
        clock[k] += rng.randint(0, 40)
        skew = rng.choice([0, 0, 0, -30, -90, -400, -1500])  # out of order, some far behind
        rows.append({"k": k, "t": T0 + timedelta(seconds=clock[k] + skew), "id": i})
    return pl.DataFrame(rows, schema={"k": pl.String, "t": pl.Datetime("us", "UTC"), "id": pl.Int64})


def _run(df: pl.DataFrame, cuts: list[int], spec: WindowSpec) -> tuple[list, list]:
    w = KeyedWindows(spec, key="k", time="t")
    members, late = [], []
    bounds = [0, *cuts, df.height]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        added = w.add(df.slice(lo, hi - lo))
        members += added.members.select("k", "_end", "id").rows()
        late += added.late.get_column("id").to_list()
        if lo == bounds[len(bounds) // 2]:  # a restart from a checkpoint in the middle
            snap = w.snapshot()
            w = KeyedWindows(spec, key="k", time="t")
            w.restore(snap)
    return sorted(members), sorted(late)


@pytest.mark.parametrize("spec", [
    WindowSpec(timedelta(minutes=1), timedelta(minutes=1), timedelta(seconds=120)),
    WindowSpec(timedelta(minutes=10), timedelta(minutes=2), timedelta(seconds=60)),
])
def test_windows_do_not_depend_on_batch_boundaries_or_restarts(spec):
    df = _records(3000, seed=1)
    whole = _run(df, [], spec)
    assert whole[0] and whole[1], "the scenario must close windows and have late records"
    rng = random.Random(2)
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, df.height), 12))
        assert _run(df, cuts, spec) == whole
    # each record is either late or in at least one window (never silently dropped)
    in_window = {i for _, _, i in whole[0]}
    assert not in_window & set(whole[1])


def _rows(flags: list[bool], start: int = 0, step: int = 1) -> pl.DataFrame:
    ends = [T0 + timedelta(minutes=start + step * (i + 1)) for i in range(len(flags))]
    return pl.DataFrame({"entity_id": ["x"] * len(flags), "site_id": ["s"] * len(flags), "start": [e - timedelta(minutes=1) for e in ends],
                         "end": ends, "flag": flags, "value": [0.5 if f else 0.0 for f in flags]})


def test_episode_raised_once_after_k_windows_cleared_once_and_survives_a_snapshot():
    ep = Episodes("r", severity="major", need=3, update_every=2, max_gap=timedelta(minutes=5))
    first = ep.step(_rows([True, False, True, True, True, True]))
    assert [e for e, _ in first] == ["raised", "state"]
    restored = Episodes("r", severity="major", need=3, update_every=2, max_gap=timedelta(minutes=5))
    restored.restore(ep.snapshot())
    second = restored.step(_rows([True, False, False], start=6))
    assert [e for e, _ in second] == ["updated", "cleared"]
    assert second[-1][1]["windows"] == 5 and second[-1][1]["cleared_at"] == T0 + timedelta(minutes=8)
    assert restored.state == {}


def test_episode_hysteresis_and_gaps():
    ep = Episodes("r", severity="major", need=1, clear_after=3, max_gap=timedelta(0))
    events = ep.step(_rows([True, False, False, True, False, False, False]))
    assert [e for e, _ in events] == ["raised", "state", "cleared"]
    gap = Episodes("r", severity="major", need=1, max_gap=timedelta(0))
    events = gap.step(pl.concat([_rows([True, True]), _rows([True], start=10)]))
    assert [e for e, _ in events] == ["raised", "state", "cleared", "raised"]


def test_config_errors_name_the_key(local_settings, monkeypatch, tmp_path):
    from dataclasses import replace

    bad = replace(local_settings, raw={"alerts": {"drop_rate_above": 2.0}})
    with pytest.raises(ConfigError, match="alerts.drop_rate_above"):
        stream_config(bad)
    with pytest.raises(ConfigError, match="fraud.window_minutes"):
        stream_config(replace(local_settings, raw={"fraud": {"window_minutes": 45, "hop_minutes": 10}}))
    with pytest.raises(ConfigError, match="streams.shards"):
        stream_config(replace(local_settings, raw={"streams": {"shards": "8"}}))
    with pytest.raises(ConfigError, match="offers.nonsense"):
        stream_config(replace(local_settings, raw={"offers": {"nonsense": 1}}))


def test_a_restored_shard_skips_records_it_already_applied(local_settings):
    from dataclasses import replace

    import numpy as np

    from dataflows import cell_kpi
    from pipelines.core.contracts import encode_records
    from pipelines.core.lake import Lake
    from pipelines.ingest.kafka_source import RawBatch
    from pipelines.streams.state import Shard, checkpoint, prepare_tables, split, start_offsets

    spec = replace(cell_kpi.spec(local_settings), shards=1)
    lake = Lake.from_settings(local_settings)
    prepare_tables(lake, spec)
    topic = local_settings.topic("network.events")
    records = [{"event_id": f"N{i}", "cell_id": "C1", "site_id": "S1", "observed_at": (T0 + timedelta(seconds=20 * i)).isoformat(),
                "kind": "kpi", "call_attempts": 10, "dropped_calls": 1} for i in range(60)]
    values = encode_records(records)

    def batch(lo: int, hi: int) -> RawBatch:
        n = hi - lo
        return RawBatch(topic=topic, source="kafka", values=values[lo:hi], keys=[b"C1"] * n, segments=[f"{topic}-0"],
                        seg=np.zeros(n, np.int32), pos=np.arange(lo, hi, dtype=np.int64), partition=np.zeros(n, np.int32),
                        timestamp_ms=np.zeros(n, np.int64))

    first = Shard(spec, lake, 0)
    (_, part), = split(spec, batch(0, 40))
    checkpoint(lake, spec, [first.apply(part, topic)])
    assert start_offsets(lake, spec)(topic, 0) == 40
    restored = Shard(spec, lake, 0)  # another shard was behind: the source replays from 30
    (_, part), = split(spec, batch(30, 60))
    emit = restored.apply(part, topic)
    assert emit.result.counts["events"] == 20, "records at or below the checkpointed offset must be skipped"
    assert emit.positions == {f"{topic}-0": 59}
    assert emit.result.counts["too_late"] == 0

"""The day-by-day simulator: the same bytes as the whole-window one, in arrival days (no Kafka)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.simulate import (
    SimConfig,
    SimResult,
    planted_summary,
    simulate,
    simulate_days,
    write_dir,
)

# A week with more defects than the defaults (late records cross days, copies cross midnight)
# and blocks of 17 subscribers, so a block boundary falls between most subscribers' neighbours.
WEEK = SimConfig(subscribers=120, days=7, seed=11, late_rate=0.03, duplicate_rate=0.02, malformed_rate=0.005)
# The generator's output for SimConfig(subscribers=60, days=2, seed=3) before the day-by-day path
# existed (digest of every topic's values, keys and timestamps, see _digest). A change here is a
# new version of the generator: say so in docs/simulate.md.
GOLDEN = {
    "usage.events": "5c9a6609b576ebb8306241f559339638f4bba40489da6f743afe3bbb55f19903",
    "network.events": "b9b6c3b0641c0b8cd7e4784eaf95bb200778e703a0c1330c60c6cc1c624f7b6e",
    "bss.events": "6d3079e9f75151cc384b1dc269d4dfa772f4b924dded03dc72b6a4b950f3f390",
}


def _digest(values: list[bytes], keys: list[bytes | None], stamps: list[int]) -> str:
    h = hashlib.sha256()
    for v, k, ts in zip(values, keys, stamps, strict=True):
        h.update(v)
        h.update(b"\0")
        h.update(k or b"<none>")
        h.update(str(ts).encode())
        h.update(b"\1")
    return h.hexdigest()


def _joined(days) -> dict[str, tuple[list, list, list]]:
    out: dict[str, tuple[list, list, list]] = {}
    for chunk in days:
        for topic in chunk.values:
            v, k, t = out.setdefault(topic, ([], [], []))
            v.extend(chunk.values[topic])
            k.extend(chunk.keys[topic])
            t.extend(chunk.timestamps[topic])
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def week() -> SimResult:
    return simulate(WEEK)


def test_generator_output_is_what_it_was() -> None:
    result = simulate(SimConfig(subscribers=60, days=2, seed=3))
    assert {t: _digest(result.values[t], result.keys[t], result.timestamps[t]) for t in result.values} == GOLDEN
    with simulate_days(SimConfig(subscribers=60, days=2, seed=3), block_subscribers=7) as days:
        joined = _joined(days)
    assert {t: _digest(*joined[t]) for t in joined} == GOLDEN


def test_a_week_day_by_day_is_the_whole_week_byte_for_byte(week: SimResult, tmp_path) -> None:
    days = simulate_days(WEEK, block_subscribers=17, workdir=tmp_path)
    assert planted_summary(days) == planted_summary(week)  # known before the first day is built
    chunks = list(days)
    arrival_days = [{datetime.fromtimestamp(ts // 1000, UTC).date() for t in c.timestamps for ts in c.timestamps[t]} for c in chunks]
    assert all(len(d) == 1 for d in arrival_days)  # one arrival day per chunk, each day once, in order
    assert [min(d) for d in arrival_days] == sorted({min(d) for d in arrival_days})
    assert min(arrival_days[0]) == date(2026, 9, 30) and max(arrival_days[-1]) > date(2026, 10, 8)  # history; late records after the window
    joined = _joined(chunks)
    for topic in week.values:
        values, keys, stamps = joined[topic]
        assert values == week.values[topic], topic
        assert keys == week.keys[topic], topic
        assert stamps == week.timestamps[topic], topic
    usage = joined["usage.events"]
    assert len(set(usage[0])) < len(usage[0]) and week.planted.late_by_topic["usage.events"] > 100
    for fmt in ("jsonl", "csv", "parquet"):
        whole_files = write_dir(week, tmp_path / f"whole-{fmt}", fmt)  # type: ignore[arg-type]
        day_files = write_dir(days, tmp_path / f"days-{fmt}", fmt)  # type: ignore[arg-type]
        assert [p.name for p in day_files] == [p.name for p in whole_files] and day_files.skipped == whole_files.skipped
        assert _files(tmp_path / f"days-{fmt}") == _files(tmp_path / f"whole-{fmt}"), fmt
    spill = next(tmp_path.glob("telcolake-sim-*"))
    days.close()
    assert not spill.exists()
    with pytest.raises(ValueError, match="closed"):
        list(days)


@pytest.mark.parametrize("cfg", [
    SimConfig(subscribers=30, days=2, seed=1, fraudsters=0, kpi_interval_s=900, duplicate_rate=0, malformed_rate=0, late_rate=0),
    SimConfig(subscribers=8, days=3, seed=0, late_rate=0.5, duplicate_rate=0.5, malformed_rate=0.5),
], ids=["no-defects-900s", "half-defective"])
def test_other_configs_match_too(cfg: SimConfig) -> None:
    whole = simulate(cfg)
    with simulate_days(cfg, block_subscribers=3) as days:
        assert planted_summary(days) == planted_summary(whole)
        joined = _joined(days)
    assert {t: joined[t] for t in whole.values} == {t: (whole.values[t], whole.keys[t], whole.timestamps[t]) for t in whole.values}


def test_cli_dumps_are_the_whole_window_files(local_settings, tmp_path) -> None:
    cfg = SimConfig(subscribers=60, days=2, seed=3, start=date(2026, 10, 5))
    out = CliRunner().invoke(app, ["simulate", "--subscribers", "60", "--days", "2", "--seed", "3", "--start", "2026-10-05",
                                   "--to-dir", str(tmp_path / "cli"), "--format", "csv", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    whole = simulate(cfg)
    files = write_dir(whole, tmp_path / "whole", "csv")
    assert _files(tmp_path / "cli") == _files(tmp_path / "whole")
    expect = planted_summary(whole)
    assert {k: summary[k] for k in expect} == json.loads(json.dumps(expect, default=str))
    assert summary["files"] == len(files) and summary["skipped_in_files"] == files.skipped

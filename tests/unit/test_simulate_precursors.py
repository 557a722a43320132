"""Simulator precursors: hours of degradation before some incidents, sudden failures, drifts that recover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from pipelines.core.contracts import NETWORK, decode_batch
from pipelines.simulate import SimConfig, SimResult, simulate
from pipelines.simulate.network import DRIFT_ALARMS

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CFG = SimConfig(subscribers=150, days=4, seed=9, incidents_per_day=3, precursor_share=0.6, drifts_per_day=2,
                late_rate=0, duplicate_rate=0, malformed_rate=0)


@pytest.fixture(scope="module")
def sim() -> SimResult:
    return simulate(CFG)


def _kpi(sim: SimResult) -> pl.DataFrame:
    return pl.from_arrow(decode_batch(NETWORK, sim.values["network.events"], now=NOW).table)


def test_planted_summary_lists_precursors_sudden_failures_and_drifts(sim: SimResult) -> None:
    p = sim.planted.as_dict()
    incidents = {(c, a) for c, a, _ in p["incidents"]}
    assert len(p["incidents"]) == 12
    # every precursor ends where its incident starts; some incidents come without one
    assert p["precursors"] and all((c, b) in incidents for c, _, b in p["precursors"])
    assert 0 < len(p["precursors"]) < len(p["incidents"])
    assert all(a < b for _, a, b in p["precursors"] + p["drifts"])
    assert len(p["drifts"]) == 8
    # a drift never overlaps an incident of its cell (6 h apart at least)
    for cell, a, b in sim.planted.drifts:
        for c, t0, t1 in sim.planted.incidents:
            assert c != cell or b + timedelta(hours=6) <= t0 or a >= t1 + timedelta(hours=6)


def test_precursor_cells_creep_up_and_drift_cells_recover(sim: SimResult) -> None:
    net = _kpi(sim)
    kpi = net.filter(pl.col("kind") == "kpi")
    prb_rise = []
    for cell, _start, peak in sim.planted.precursors:
        own = kpi.filter(pl.col("cell_id") == cell)
        # the hour before the incident against the same hour of the other days (the load is diurnal)
        hour = lambda end, own=own: own.filter(pl.col("observed_at").is_between(end - timedelta(hours=1), end, closed="left"))  # noqa: E731
        usual = pl.concat([hour(peak + timedelta(days=d)) for d in (-2, -1, 1, 2)])
        last_hour = hour(peak)
        assert last_hour["latency_ms"].mean() > usual["latency_ms"].mean() + 10
        prb_rise.append(last_hour["prb_utilization"].mean() - usual["prb_utilization"].mean())
    assert sum(prb_rise) / len(prb_rise) > 5
    for cell, start, end in sim.planted.drifts:
        own = kpi.filter(pl.col("cell_id") == cell)
        after = own.filter(pl.col("observed_at").is_between(end, end + timedelta(hours=1), closed="left"))
        during = own.filter(pl.col("observed_at").is_between(start, end, closed="left"))
        assert during["latency_ms"].max() > after["latency_ms"].mean() + 8  # it rose, then came back
    minor = net.filter((pl.col("kind") == "alarm") & pl.col("code").is_in(list(DRIFT_ALARMS)) & ~pl.col("cleared"))
    drifted = {c for c, _, _ in sim.planted.precursors + sim.planted.drifts}
    assert drifted <= set(minor["cell_id"].to_list())
    assert set(minor["severity"].to_list()) == {"minor"}


def test_drifts_change_only_the_network_stream() -> None:
    """Drifts draw from their own stream: usage and BSS are the same bytes with or without them."""
    base = SimConfig(subscribers=60, days=2, seed=4, incidents_per_day=2)
    calm = simulate(SimConfig(**{**base.__dict__, "precursor_share": 0.0, "drifts_per_day": 0.0}))
    drifty = simulate(SimConfig(**{**base.__dict__, "precursor_share": 1.0, "drifts_per_day": 3.0}))
    assert calm.values["usage.events"] == drifty.values["usage.events"]
    assert calm.values["bss.events"] == drifty.values["bss.events"]
    assert calm.values["network.events"] != drifty.values["network.events"]
    assert calm.planted.incidents == drifty.planted.incidents and not calm.planted.precursors
    assert len(drifty.planted.precursors) == len(drifty.planted.incidents) == 4


def test_bad_rates_are_refused_in_one_line() -> None:
    from pipelines.core.errors import ConfigError

    for bad in ({"precursor_share": 1.5}, {"drifts_per_day": -1}, {"incidents_per_day": "many"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            SimConfig(**bad)

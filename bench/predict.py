"""Predictive maintenance benchmark: evaluation figures on simulated worlds, and the KPI flow's throughput with scoring.

1. For each seed: ``--days`` of network events (``--subscribers``, ``--incidents-per-day``,
   ``--drifts-per-day``) replayed through the KPI flow's logic into a fresh lake
   (:func:`pipelines.assurance.history.replay_network`), the model trained, and evaluated
   against the planted incidents on the held-out ``[predict] test_days``: precision, recall,
   lead times, the baseline and the reactive rule's delay.
2. Streaming: ``--stream-days`` of the first world's network events on a fresh embedded broker;
   ``run_streams(only="kpi", until_caught_up=True)`` with ``[predict] enabled = false`` (the KPI
   flow alone, the baseline) and with the first seed's model (the KPI flow scoring every closed
   window), each on its own lake, alone / scored / alone; the ratio is scored events/s over the
   mean of the two runs alone.

Usage: python bench/predict.py [--days 42] [--subscribers 400] [--seeds 31,32] [--stream-days 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lab import private_world  # noqa: E402
from pipelines.assurance.evaluate import evaluate  # noqa: E402
from pipelines.assurance.history import replay_network  # noqa: E402
from pipelines.assurance.model import MODEL_RUNS, train  # noqa: E402
from pipelines.simulate import SimConfig, produce, simulate_days  # noqa: E402
from pipelines.streams import run_streams  # noqa: E402


def world(args, seed: int, days: int | None = None) -> SimConfig:
    return SimConfig(subscribers=args.subscribers, days=days or args.days, seed=seed, incidents_per_day=args.incidents_per_day,
                     drifts_per_day=args.drifts_per_day)


def evaluation(settings, args, seed: int, tmp: Path):
    s = replace(settings, lake_root=str(tmp / f"lake-{seed}"), state_dir=tmp / f"state-{seed}")
    started = time.perf_counter()
    r = replay_network(s, world(args, seed))
    replayed = time.perf_counter() - started
    planted = tmp / f"planted-{seed}.json"
    planted.write_text(json.dumps(r.planted))
    started = time.perf_counter()
    run = train(s)
    trained = time.perf_counter() - started
    e = evaluate(s, planted)
    print(f"seed {seed}: {r.events:,} network events over {args.days} days replayed in {replayed:.0f} s, trained in {trained:.0f} s "
          f"(window ROC AUC {run.window_roc_auc:.3f}, baseline {run.baseline_window_roc_auc:.3f}); held out "
          f"{e.test_from:%m-%d %H:%M}..{e.test_to:%m-%d %H:%M}: {e.incidents} incidents, {e.incidents_with_precursor} with precursors")
    for m in (e.model, e.baseline):
        print(f"  {m.method:8s} alerts {m.episodes:3d}  precision {m.precision}  per incident {m.precision_distinct}  "
              f"recall(precursors) {m.recall_precursor}  recall(all) {m.recall_all}  lead median {m.median_lead_minutes} min "
              f"p10 {m.p10_lead_minutes} min (vs start {m.median_lead_vs_start_minutes})  on drifts {m.drift_episodes}")
    print(f"  reactive rule: {e.reactive_detected}/{e.incidents} detected, delay median {e.reactive_median_delay_minutes} min, "
          f"p90 {e.reactive_p90_delay_minutes} min; targets met: {e.targets_met}")
    return s


def streaming(settings, args, model_lake: str, tmp: Path) -> None:
    topic = settings.topic("network.events")
    with simulate_days(world(args, args.seeds[0], args.stream_days)) as days:
        produce(days, settings.kafka_bootstrap, {"network.events": topic})

    def run(name: str, enabled: bool) -> float:
        raw = dict(settings.raw, predict={**settings.section("predict"), "enabled": enabled})
        s = replace(settings, lake_root=str(tmp / f"lake-stream-{name}"), raw=raw)
        if enabled:
            shutil.copytree(Path(model_lake) / MODEL_RUNS, Path(s.lake_root) / MODEL_RUNS)
        started = time.perf_counter()
        stats = run_streams(s, only="kpi", until_caught_up=True)
        took = time.perf_counter() - started
        c = stats.counts["kpi"]
        rate = c["events"] / took
        extra = f", {c.get('predict_scored', 0):,} windows scored, {c.get('predicted_raised', 0)} alerts raised" if enabled else ""
        print(f"  {name}: {c['events']:,} events in {took:.2f} s = {rate:,.0f} events/s{extra}")
        return rate

    print(f"streaming, {args.stream_days} days of the first world's network events on the embedded broker:")
    alone = [run("alone-1", False)]
    scored = run("scored", True)
    alone.append(run("alone-2", False))
    base = sum(alone) / len(alone)
    print(f"  KPI flow with scoring: {scored / base:.2f}x the KPI flow alone (target >= 0.8x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=42)
    ap.add_argument("--subscribers", type=int, default=400)
    ap.add_argument("--incidents-per-day", type=float, default=6.0)
    ap.add_argument("--drifts-per-day", type=float, default=3.0)
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[31, 32])
    ap.add_argument("--stream-days", type=int, default=3)
    args = ap.parse_args()
    with private_world("telcolake-bench-predict-") as (tmp, settings, _address):
        first = None
        for seed in args.seeds:
            s = evaluation(settings, args, seed, tmp)
            first = first or s
        streaming(settings, args, first.lake_root, tmp)

if __name__ == "__main__":
    main()

"""`telcolake simulate`: the simulated telco, to Kafka or to legacy dumps."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError


def simulate(
    subscribers: int = typer.Option(None, "--subscribers", help="Population size (default: telcolake.toml simulate.subscribers)."),
    days: int = typer.Option(None, "--days", help="Simulated days (default: telcolake.toml simulate.days)."),
    seed: int = typer.Option(None, "--seed", help="Random seed; same seed, same records (default: telcolake.toml simulate.seed)."),
    start: str = typer.Option(None, "--start", help="First simulated day, YYYY-MM-DD (default: telcolake.toml simulate.start)."),
    to: str = typer.Option("kafka", "--to", help="kafka: produce to the configured topics."),
    to_dir: Path = typer.Option(None, "--to-dir", help="Write legacy mediation dumps into this directory instead."),
    fmt: str = typer.Option("jsonl", "--format", help="Dump format with --to-dir: csv, parquet or jsonl."),
    as_json: bool = typer.Option(False, "--json", help="Print the planted summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Simulate usage, network and BSS events (with planted churn, fraud, incidents and defects)."""
    import json
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines import simulate as sim
    from pipelines.core import broker
    from pipelines.core.errors import ConfigError

    s = settings()
    try:
        if to != "kafka" and to_dir is None:
            raise ConfigError(f"--to {to!r}: expected kafka (or use --to-dir DIR)")
        if fmt not in ("csv", "parquet", "jsonl"):
            raise ConfigError(f"--format {fmt!r}: expected csv, parquet or jsonl")
        cfg = sim.SimConfig.from_settings(s, subscribers=subscribers, days=days, seed=seed,
                                          start=sim.parse_date(start) if start else None)
        bootstrap = broker.resolve_bootstrap(s) if to_dir is None else ""
        started = time.perf_counter()
        with sim.simulate_days(cfg) as result:  # planned now, built and written a day at a time
            summary = sim.planted_summary(result)
            summary["generate_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            if to_dir is not None:
                files = sim.write_dir(result, to_dir, fmt)  # type: ignore[arg-type]
                summary["files"] = len(files)
                summary["skipped_in_files"] = files.skipped
                summary["directory"] = str(to_dir)
            else:
                broker.ensure_topics(bootstrap, s.topics, extra=s.kafka_client)
                topics = {t: s.topic(t) for t in result.planted.per_topic}
                total = sum(result.planted.per_topic.values())
                columns = (TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
                with Progress(*columns, console=err, disable=quiet or as_json) as progress:
                    task = progress.add_task("produce", total=total)
                    summary["produced"] = sim.produce(result, bootstrap, topics, extra_conf=s.kafka_client,
                                                      progress=lambda k: progress.update(task, advance=k))
                summary["topics"] = topics
        summary["write_s"] = round(time.perf_counter() - started, 2)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary, default=str))
        return
    if quiet:
        return
    counts = ", ".join(f"{k}={summary[k]:,}" for k in ("churners", "fraudsters", "duplicates", "late", "malformed", "roamers"))
    console.print(f"simulated {cfg.subscribers:,} subscribers x {cfg.days} days from {cfg.start} (seed {cfg.seed}) "
                  f"in {summary['generate_s']}s; planted: {counts}")
    table = Table("topic", "records", "late", "malformed", title="records per topic")
    for topic, n in summary["per_topic"].items():
        table.add_row(topic, f"{n:,}", f"{summary['late_by_topic'][topic]:,}", f"{summary['malformed_by_topic'][topic]:,}")
    console.print(table)
    console.print("incidents: " + "; ".join(f"{c} {a} .. {b}" for c, a, b in summary["incidents"]))
    where = f"{summary['files']} files in {to_dir}" if to_dir is not None else "Kafka " + ", ".join(summary["topics"].values())
    console.print(f"written to {where} in {summary['write_s']}s")

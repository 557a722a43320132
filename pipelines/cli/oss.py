"""`telcolake fulfil|responders|orders ...`: OSS service fulfilment, the simulated targets, fallout handling."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from pipelines.cli.common import console, err, fail, settings
from pipelines.core.errors import TelcolakeError

orders_app = typer.Typer(help="Product orders in fulfilment: list, show, retry or cancel one; simulate orders; KPIs.", no_args_is_help=True)


def fulfil(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once the input on the topics at start is processed."),
    workers: int = typer.Option(0, "--workers", "-w", help="Bytewax workers (default: [fulfilment] workers)."),
    with_responders: bool = typer.Option(False, "--with-responders", help="Also run the simulated network functions and partners here."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Orchestrate product orders as sagas: provisioning commands, retries, compensation, jeopardy (Bytewax, exactly once)."""
    import threading

    from pipelines.ingest.kafka_source import StopFlag
    from pipelines.oss import ResponderStats, run_fulfilment, run_responders

    s = settings()
    stop = StopFlag()
    stop.install()
    responders = None
    rstats = ResponderStats()
    try:
        if with_responders:
            responders = threading.Thread(target=run_responders, args=(s,), kwargs={"stop": stop, "stats": rstats,
                                                                                    "until_caught_up": until_caught_up}, daemon=True)
            responders.start()
        if not quiet and not as_json:
            err.print("fulfilling" + (" until caught up" if until_caught_up else " (Ctrl-C to stop)"))
        stats = run_fulfilment(s, until_caught_up=until_caught_up, workers=workers or None, stop=stop)
    except TelcolakeError as exc:
        fail(exc)
    finally:
        stop.set()
        if responders is not None:
            responders.join(timeout=60)
    summary = stats.as_dict()
    if with_responders:
        summary["responders"] = rstats.as_dict()
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        table = Table("counter", "value", title="fulfilment")
        for k, v in summary["counts"].items():
            table.add_row(k, f"{v:,}")
        console.print(table)
        console.print(f"{summary['batches']} batches in {summary['seconds']} s")


def responders(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once every command on the topic at start is answered."),
    instant: bool = typer.Option(False, "--instant", help="Answer at once instead of waiting out the planted latencies."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """The simulated network functions (SIM, HSS, PCRF) and OTT partners: answer provisioning commands."""
    from pipelines.ingest.kafka_source import StopFlag
    from pipelines.oss import run_responders

    s = settings()
    stop = StopFlag()
    stop.install()
    try:
        stats = run_responders(s, until_caught_up=until_caught_up, stop=stop, realtime=False if instant else None)
    except TelcolakeError as exc:
        fail(exc)
    summary = stats.as_dict()
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(", ".join(f"{k}={v}" for k, v in summary.items()))


def _table(rows: list[dict], title: str) -> Table:
    table = Table(*(rows[0].keys() if rows else ["(none)"]), title=title)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r.values()))
    return table


@orders_app.command("list")
def list_cmd(
    state: str = typer.Option(None, "--state", help="Only orders in this state (in_progress, compensating, held, completed, failed, cancelled)."),
    stuck: bool = typer.Option(False, "--stuck", help="Only orders held for a human or with a step in jeopardy."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON lines."),
) -> None:
    """Orders in gold/oss/orders, newest first."""
    from pipelines.oss import list_orders

    try:
        rows = list_orders(settings(), state=state, stuck=stuck, limit=limit).to_pylist()
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        for r in rows:
            print(json.dumps(r, default=str))
    else:
        console.print(_table(rows, "orders"))


@orders_app.command("show")
def show_cmd(order_id: str = typer.Argument(..., help="The order id."), as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """One order: its state, every transition, the commands sent and its jeopardy alerts."""
    from pipelines.oss import show_order

    try:
        found = show_order(settings(), order_id)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(found, default=str))
        return
    console.print(", ".join(f"{k}={v}" for k, v in found["order"].items() if v is not None))
    keep = {"transitions": ["seq", "kind", "state", "step", "attempt", "reason", "event_at"],
            "commands": ["command_id", "attempt", "target", "action", "operation", "issued_at"],
            "jeopardy": ["alert_id", "status", "raised_at", "cleared_at", "cleared_by"]}
    for part, cols in keep.items():
        console.print(_table([{c: r[c] for c in cols} for r in found[part]], part))


@orders_app.command("retry")
def retry_cmd(order_id: str = typer.Argument(..., help="A held order."), note: str = typer.Option(None, "--note", help="Why (kept with the request).")) -> None:
    """Resume a held order at the step it is held at (a retry event on orders.events)."""
    from pipelines.oss import retry_order

    try:
        event = retry_order(settings(), order_id, note=note)
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"retry of {order_id} requested ({event['event_id']}); the orchestrator resumes it at its next batch")


@orders_app.command("cancel")
def cancel_cmd(order_id: str = typer.Argument(..., help="An order in flight or held."), note: str = typer.Option(None, "--note", help="Why (kept with the request).")) -> None:
    """Cancel an order: what it applied is compensated in reverse order (a cancel event on orders.events)."""
    from pipelines.oss import cancel_order

    try:
        event = cancel_order(settings(), order_id, note=note)
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"cancellation of {order_id} requested ({event['event_id']})")


@orders_app.command("simulate")
def simulate_cmd(
    orders: int = typer.Option(200, "--orders", help="Product orders to simulate (cancellations and malformed records come on top)."),
    seed: int = typer.Option(11, "--seed", help="Random seed; same seed, same orders."),
    fulfil_them: bool = typer.Option(False, "--fulfil", help="Also fulfil them here, on a simulated clock, until none is in flight."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Simulate product orders from the BSS (new lines, plan changes, OTT add/remove, terminations, cancellations)."""
    from pipelines.oss import OrderSimConfig, run_simulation

    try:
        summary = run_simulation(settings(), OrderSimConfig(orders=orders, seed=seed), fulfil=fulfil_them)
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(summary, default=str))
        return
    console.print("planted: " + ", ".join(f"{k}={v}" for k, v in summary["planted"].items() if not isinstance(v, dict)))
    if "figures" in summary:
        console.print("fulfilled: " + ", ".join(f"{k}={v}" for k, v in summary["figures"].items()))
    else:
        console.print(f"produced {summary['produced']:,} records; run `telcolake fulfil` and `telcolake responders` to fulfil them")


@orders_app.command("kpis")
def kpis_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Lead time p50/p95 by product and channel, fallout by step and target, jeopardy rate, orders in flight (sql/oss/)."""
    from pipelines.oss import figures, kpis

    try:
        s = settings()
        head, models = figures(s), {k: v.to_pylist() for k, v in kpis(s).items()}
    except TelcolakeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"figures": head, **models}, default=str))
        return
    console.print(", ".join(f"{k}={v}" for k, v in head.items()))
    for name, rows in models.items():
        console.print(_table(rows, name))


@orders_app.command("rebuild")
def rebuild_cmd() -> None:
    """Rebuild gold/oss/orders from the orders.state topic read from offset 0 (recovery)."""
    from pipelines.oss import rebuild_orders

    try:
        n = rebuild_orders(settings())
    except TelcolakeError as exc:
        fail(exc)
    console.print(f"gold/oss/orders rebuilt from orders.state: {n:,} orders")

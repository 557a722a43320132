"""`telcolake broker start|stop|status`: the embedded or external Kafka broker."""

from __future__ import annotations

import typer
from rich.table import Table

from pipelines.cli.common import console, fail, settings
from pipelines.core.errors import TelcolakeError

broker_app = typer.Typer(help="Start, stop and inspect the Kafka broker.", no_args_is_help=True)


@broker_app.command("start")
def broker_start() -> None:
    """Start the embedded broker (unless TELCOLAKE_KAFKA_BOOTSTRAP names servers) and create topics."""
    from pipelines.core import broker

    s = settings()
    try:
        if s.embedded:
            was = broker.read_state(s.state_dir)
            state = broker.start_embedded(s.state_dir, storage=broker.storage_of(s))
            verb = "already running" if was else "started"
            console.print(f"embedded broker {verb} at [bold]{state.address}[/bold] (pid {state.pid}, storage {state.storage})")
            bootstrap = state.address
        else:
            bootstrap = broker.ensure_broker(s)
            console.print(f"using external Kafka at [bold]{bootstrap}[/bold]; nothing started")
        have = broker.ensure_topics(bootstrap, s.topics, extra=s.kafka_client)
        console.print("topics: " + ", ".join(f"{t} ({n})" for t, n in sorted(have.items())))
    except TelcolakeError as exc:
        fail(exc)


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker of this state dir (in-memory topics go with it; s3:// ones stay)."""
    from pipelines.core import broker

    s = settings()
    if not s.embedded:
        console.print("external Kafka configured; nothing to stop")
        return
    state = broker.stop_embedded(s.state_dir)
    console.print(f"stopped embedded broker pid {state.pid}" if state else "no embedded broker was running")


@broker_app.command("status")
def broker_status() -> None:
    """Address, topics, partitions and true end offsets."""
    from pipelines.core import broker

    s = settings()
    try:
        bootstrap = broker.resolve_bootstrap(s)
        broker.wait_ready(bootstrap, timeout=5)
    except TelcolakeError as exc:
        fail(exc)
    kind = "embedded" if s.embedded else "external"
    console.print(f"{kind} broker at [bold]{bootstrap}[/bold]")
    table = Table("topic", "partition", "end offset")
    for topic in sorted(s.topics):
        for p, end in sorted(broker.end_offsets(bootstrap, topic, extra=s.kafka_client).items()):
            table.add_row(topic, str(p), str(end))
    console.print(table)

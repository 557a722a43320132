"""The `telcolake` command line (typer + rich): one module per command group, assembled here.

Commands are registered in one place, in the order `telcolake --help` lists them.
"""

from __future__ import annotations

import sys

import typer

from pipelines.cli import (
    billing,
    broker,
    churn,
    ingest,
    ops,
    oss,
    quality,
    sharing,
    simulate,
    streams,
)

app = typer.Typer(help="telcolake: a streaming lakehouse for a telco's BSS/OSS data.", no_args_is_help=True)
app.add_typer(broker.broker_app, name="broker")
app.command()(ingest.ingest)
app.command()(ingest.backfill)
app.command("silver")(ingest.silver_cmd)
app.command()(ops.status)
app.command()(ingest.maintain)
app.command()(simulate.simulate)
app.command()(ops.demo)
app.command("bill-run")(billing.bill_run_cmd)
app.command()(billing.rerate)
app.command()(streams.stream)
app.command()(oss.fulfil)
app.command()(oss.responders)
app.command("sql")(ops.sql_cmd)
app.command("tables")(ops.tables_cmd)
app.command("scheduler")(ops.scheduler_cmd)
app.command()(ops.up)
app.command()(sharing.publish)
app.command("serve-shares")(sharing.serve_shares)
app.command("features")(churn.features_cmd)
app.command("quality")(quality.quality_cmd)
app.add_typer(billing.catalog_app, name="catalog")
app.add_typer(ops.jobs_app, name="jobs")
app.add_typer(sharing.partners_app, name="partners")
app.add_typer(churn.churn_app, name="churn")
app.add_typer(oss.orders_app, name="orders")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

"""`python -m pipelines.cli`: the same CLI as the `telcolake` script."""

from pipelines.cli import app

app()

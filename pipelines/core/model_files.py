"""Trained models kept as pickles beside a model-runs table: pick a run, check its file, load it.

A run row names its file (``model_path``) and the file's sha256 (``model_sha256``); churn and
predictive maintenance both keep their models this way.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

from pipelines.core.errors import TelcolakeError
from pipelines.core.lake import Lake


def load_run(lake: Lake, table: str, version: int | None, *, error: type[TelcolakeError], what: str, train: str) -> tuple[Any, dict]:
    """(the unpickled model of ``version`` or of the latest run when None, its run row).

    Raises:
        error: no run yet, an unknown version, a missing file, or a file that does not match its checksum.
    """
    if not lake.exists(table):
        raise error(f"no {what} trained yet: run `{train}`")
    runs = sorted(lake.read(table).to_pylist(), key=lambda r: r["model_version"])
    run = runs[-1] if version is None else next((r for r in runs if r["model_version"] == version), None)
    if run is None:
        raise error(f"model version {version} does not exist; trained: {[r['model_version'] for r in runs]}")
    path = Path(run["model_path"])
    if not path.is_file():
        raise error(f"model file {path} of version {run['model_version']} is missing: train again (`{train}`)")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != run["model_sha256"]:
        raise error(f"model file {path} does not match the checksum recorded for version {run['model_version']}")
    return pickle.loads(blob), run  # noqa: S301 - our own file, checksum verified above

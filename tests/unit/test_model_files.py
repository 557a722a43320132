"""Model runs and their pickles: the one loader churn and predictive maintenance share."""

from __future__ import annotations

import hashlib
import pickle

import pyarrow as pa
import pytest

from pipelines.core.errors import ChurnError
from pipelines.core.lake import Lake
from pipelines.core.model_files import load_run

TABLE = "gold/churn/model_runs"


def _run(lake: Lake, tmp_path, version: int, model: dict) -> None:
    blob = pickle.dumps(model)
    path = tmp_path / f"model-v{version}.pkl"
    path.write_bytes(blob)
    lake.write(TABLE, pa.Table.from_pylist([{"model_version": version, "model_path": str(path),
                                             "model_sha256": hashlib.sha256(blob).hexdigest()}]))


def test_the_latest_or_a_named_run_loads_and_a_bad_file_is_refused_in_one_line(tmp_path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    kw = {"error": ChurnError, "what": "churn model", "train": "telcolake churn train"}
    with pytest.raises(ChurnError, match="no churn model trained yet: run `telcolake churn train`"):
        load_run(lake, TABLE, None, **kw)
    _run(lake, tmp_path, 1, {"w": 1})
    _run(lake, tmp_path, 2, {"w": 2})
    assert load_run(lake, TABLE, None, **kw)[0] == {"w": 2}
    model, run = load_run(lake, TABLE, 1, **kw)
    assert model == {"w": 1} and run["model_version"] == 1
    with pytest.raises(ChurnError, match=r"model version 7 does not exist; trained: \[1, 2\]"):
        load_run(lake, TABLE, 7, **kw)
    (tmp_path / "model-v2.pkl").write_bytes(pickle.dumps({"w": "altered"}))
    with pytest.raises(ChurnError, match="does not match the checksum recorded for version 2"):
        load_run(lake, TABLE, None, **kw)
    (tmp_path / "model-v1.pkl").unlink()
    with pytest.raises(ChurnError, match="model-v1.pkl of version 1 is missing: train again"):
        load_run(lake, TABLE, 1, **kw)

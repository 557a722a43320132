"""The notebooks in git carry no outputs, read the lake root from TELCOLAKE_LAKE and use register_lake."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_at_least_three_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_reads_the_configured_lake(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored outputs"
    assert 'os.environ.get("TELCOLAKE_LAKE", "./lake")' in code[0].source
    assert any("register_lake(con, lake)" in c.source for c in code)
    assert 'matplotlib.use("Agg")' in "".join(c.source for c in code)

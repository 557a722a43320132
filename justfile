# telcolake task runner: `just` lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"

# list the recipes
help:
    @just --list --unsorted

# create .venv and install telcolake with pinned versions (skipped when nothing changed)
_venv:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp="{{venv}}/.telcolake-installed"
    want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
    if [ ! -x "{{py}}" ]; then python3 -m venv "{{venv}}"; fi
    echo "installing telcolake and its pinned dependencies into {{venv}} ..."
    "{{py}}" -m pip install -q --disable-pip-version-check --upgrade pip
    "{{py}}" -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
    echo "$want" > "$stamp"

# run the whole product on the embedded defaults (broker, simulate, ingest, ...)
demo *ARGS: _venv
    {{venv}}/bin/telcolake demo {{ARGS}}

# run the test suite (what CI runs), one pytest-xdist worker per core (at most 4); `-n 0` runs it in one process
test *ARGS: _venv
    {{py}} -m pytest -q -n auto --maxprocesses 4 {{ARGS}}

# run the benchmarks in bench/ (prints ratios against baselines measured in the same run)
bench *ARGS: _venv
    #!/usr/bin/env bash
    set -euo pipefail
    for b in bench/*.py; do
      case "$b" in */_*) continue;; esac
      echo "== $b"; {{py}} "$b" {{ARGS}}
    done

# lint with ruff
lint: _venv
    {{venv}}/bin/ruff check pipelines dataflows quality tests bench

# open the DuckDB SQL shell over every lake table
sql *ARGS: _venv
    {{venv}}/bin/telcolake sql {{ARGS}}

# execute the analyst notebooks against the demo lake
notebooks: _venv
    {{py}} -m pytest -q tests/e2e -k notebook

# what CI runs
ci: test

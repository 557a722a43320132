"""Great Expectations Data Docs for gate runs, kept in a file-backed GE context under the state dir."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
from great_expectations.core import ExpectationSuiteValidationResult  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import (  # noqa: E402
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from pipelines.core.config import Settings  # noqa: E402
from quality.core import Suite  # noqa: E402


def context_root(settings: Settings) -> Path:
    """The folder holding the GE project (``gx/``): ``<state dir>/quality``."""
    return settings.state_dir / "quality"


def docs_dir(settings: Settings) -> Path:
    """The Data Docs site folder (open its ``index.html``): ``<state dir>/quality/gx/uncommitted/data_docs/local_site``."""
    return context_root(settings) / "gx" / "uncommitted" / "data_docs" / "local_site"


class DataDocs:
    """Collects suite results of one run, stores them in the GE validations store and builds the site."""

    def __init__(self, settings: Settings, *, keep_runs: int = 20) -> None:
        self.root = context_root(settings)
        self.keep_runs = keep_runs
        self.pending: list[tuple[ValidationResultIdentifier, ExpectationSuiteValidationResult]] = []

    def add(self, suite: Suite, version: int, run_id: str, now: datetime, results: list[Any]) -> None:
        """Record one suite's results (rendered on ``build``)."""
        ge_name = suite.name.replace(".", "_").replace("/", "_")  # GE's file store splits names on dots
        batch = f"{suite.table.replace('/', '_')}@v{version}"
        rid = RunIdentifier(run_name=run_id, run_time=now)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=ge_name), run_id=rid, batch_identifier=batch
        )
        ok = sum(1 for r in results if r.success)
        asset = f"{suite.table}@v{version}"
        value = ExpectationSuiteValidationResult(
            success=ok == len(results),
            results=results,
            suite_name=ge_name,
            statistics={
                "evaluated_expectations": len(results), "successful_expectations": ok,
                "unsuccessful_expectations": len(results) - ok,
                "success_percent": 100.0 * ok / len(results) if results else 100.0,
            },
            meta={
                "run_id": rid, "validation_time": now, "great_expectations_version": gx.__version__,
                "batch_spec": {"data_asset_name": asset}, "batch_kwargs": {"data_asset_name": asset},
                "telcolake_suite": suite.name, "description": suite.description,
            },
        )
        self.pending.append((key, value))

    def build(self) -> Path:
        """Store the collected results and (re)build the site; returns the site folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(self.root))
        for key, value in self.pending:
            context.validation_results_store.store_validation_results(value, key)
        self._prune()
        context.build_data_docs(resource_identifiers=[k for k, _ in self.pending] or None)
        self.pending = []
        return self.root / "gx" / "uncommitted" / "data_docs" / "local_site"

    def _prune(self) -> None:
        """Keep the newest ``keep_runs`` runs of each suite (stored results and pages).

        The site index reads every stored result on each build, so an hourly gate would
        otherwise slow down without bound. ops/quality_results keeps the full history.
        """
        uncommitted = self.root / "gx" / "uncommitted"
        store, pages = uncommitted / "validations", uncommitted / "data_docs" / "local_site" / "validations"
        if not store.is_dir():
            return
        for suite_dir in (d for d in store.iterdir() if d.is_dir()):
            runs = sorted(d.name for d in suite_dir.iterdir() if d.is_dir())  # run ids start with a UTC stamp
            for old in runs[: max(0, len(runs) - self.keep_runs)]:
                shutil.rmtree(suite_dir / old, ignore_errors=True)
                shutil.rmtree(pages / suite_dir.name / old, ignore_errors=True)

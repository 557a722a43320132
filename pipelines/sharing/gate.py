"""The quality gate before a publish: quality.runner when installed, else the share suites run directly."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

from pipelines.core.config import Settings
from pipelines.core.lake import Lake


@dataclass
class GateOutcome:
    """Result of one gate: ``how`` says which path ran it (runner, direct, skipped)."""

    ok: bool
    how: str
    failures: list[str] = field(default_factory=list)


def runner_available() -> bool:
    return importlib.util.find_spec("quality.runner") is not None and importlib.util.find_spec("quality.core") is not None


def run_suites_directly(lake: Lake, suites: list, tables: list[str]) -> GateOutcome:
    """Run the Great Expectations suites guarding ``tables`` on their current versions."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    batch_definition = (ctx.data_sources.add_pandas("shares").add_dataframe_asset("frame")
                        .add_batch_definition_whole_dataframe("whole"))
    failures: list[str] = []
    for suite in suites:
        if suite.table not in tables:
            continue
        versions = {n: v for n in (suite.table, *suite.inputs) if (v := lake.version(n)) is not None}
        frame = suite.frame(lake, versions) if suite.frame else lake.read(suite.table, version=versions[suite.table])
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        gx_suite = gx.ExpectationSuite(name=suite.name)
        for expectation in suite.expectations():
            gx_suite.add_expectation(expectation)
        result = batch.validate(gx_suite)
        for r in result.results:
            if not r.success:
                cfg = r.expectation_config
                kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
                failures.append(f"{suite.name}: {cfg.type} {kwargs} failed ({r.result.get('unexpected_count', '?')} unexpected); {suite.description}")
    return GateOutcome(ok=not failures, how="direct", failures=failures)


def run_gate(settings: Settings, tables: list[str], suites: list | None = None) -> GateOutcome:
    """Gate ``tables``: ``quality.runner.run_gate`` (results kept in ops/quality_results) when installed.

    Without the runner, or when it raises instead of reporting (it is young), ``suites`` (the
    share suites) are run directly with Great Expectations; tables that only other domains
    guard are then reported as skipped, with the reason in ``how``.
    """
    why = "quality.runner not installed"
    if runner_available():
        from quality.runner import run_gate as quality_run_gate

        try:
            result = quality_run_gate(settings, tables, raise_on_failure=False)
            return GateOutcome(ok=bool(result.ok), how="quality.runner", failures=list(result.failures))
        except Exception as exc:  # noqa: BLE001 - a broken runner must not block publishing the suites can still check
            why = f"quality.runner failed: {type(exc).__name__}: {str(exc)[:200]}"
            logging.getLogger(__name__).warning("%s; running the share suites directly", why)
    if not suites:
        return GateOutcome(ok=True, how=f"skipped ({why})")
    outcome = run_suites_directly(Lake.from_settings(settings), suites, tables)
    outcome.how = f"direct ({why})"
    return outcome

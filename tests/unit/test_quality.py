"""The quality gate on real Delta tables: planted faults fail the right expectations, results and docs are kept."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import great_expectations as gx
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core.contracts import USAGE
from pipelines.core.errors import QualityGateFailed
from pipelines.core.lake import Lake
from quality import bronze
from quality.core import Suite
from quality.docs import docs_dir
from quality.runner import RESULTS_TABLE, run_gate

BRONZE_USAGE = "bronze/usage.events"
NOW = datetime.now(UTC).replace(microsecond=0)


def bronze_usage(n: int, *, negative_duration_at: int | None = None, duplicate_offset_at: int | None = None) -> pa.Table:
    """``n`` bronze usage rows, one Kafka offset each; optional planted faults."""
    started = [NOW - timedelta(hours=1, seconds=i) for i in range(n)]
    duration = [60 + i % 100 for i in range(n)]
    offsets = list(range(n))
    if negative_duration_at is not None:
        duration[negative_duration_at] = -7
    if duplicate_offset_at is not None:
        offsets[duplicate_offset_at] = offsets[duplicate_offset_at - 1]
    cols = {
        "record_id": [f"R{i:08d}" for i in range(n)],
        "event_type": ["voice"] * n,
        "subscriber_id": [f"SUB{i % 50:07d}" for i in range(n)],
        "msisdn": [f"49151{i % 50:07d}" for i in range(n)],
        "started_at": started,
        "duration_s": duration,
        "bytes_up": [0] * n,
        "bytes_down": [0] * n,
    }
    table = pa.table({f.name: pa.array(cols.get(f.name, [None] * n), f.type) for f in USAGE.schema})
    extras = {
        "_source": pa.array(["kafka"] * n),
        "_kafka_topic": pa.array(["usage.events"] * n),
        "_kafka_partition": pa.array([0] * n, pa.int32()),
        "_kafka_offset": pa.array(offsets, pa.int64()),
        "_kafka_timestamp": pa.array(started, pa.timestamp("us", tz="UTC")),
        "_source_row": pa.array([None] * n, pa.int64()),
        "_ingested_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        "event_date": pa.array([s.date() for s in started], pa.date32()),
    }
    for name, column in extras.items():
        table = table.append_column(name, column)
    return table


def with_batch_rows(settings, rows: int):
    return dataclasses.replace(settings, raw={**settings.raw, "quality": {"batch_rows": rows}})


def test_clean_bronze_passes_and_results_are_kept_with_the_version(local_settings):
    lake = Lake.from_settings(local_settings)
    lake.write(BRONZE_USAGE, bronze_usage(200))
    version = lake.write(BRONZE_USAGE, bronze_usage(0))  # a later version: the one validated

    result = run_gate(local_settings, [BRONZE_USAGE])

    assert result.ok, result.failures
    assert result.versions == {BRONZE_USAGE: version}
    rows = lake.read(RESULTS_TABLE).to_pylist()
    assert {r["run_id"] for r in rows} == {result.run_id}
    assert {(r["table"], r["version"], r["suite"]) for r in rows} == {(BRONZE_USAGE, version, "bronze.usage.events")}
    types = {r["expectation_type"] for r in rows}
    assert {"expect_compound_columns_to_be_unique", "expect_column_values_to_be_between", "expect_column_values_to_not_be_null"} <= types
    assert all(r["success"] for r in rows)
    assert (result.docs_dir / "index.html").is_file()
    pages = list(result.docs_dir.glob("validations/**/*.html"))
    assert any("bronze_usage.events@v" in p.name for p in pages)


@pytest.mark.parametrize("batch_rows", [1_000_000, 7], ids=["one_batch", "many_batches"])
def test_planted_bad_batch_fails_exactly_the_right_expectations(local_settings, batch_rows):
    settings = with_batch_rows(local_settings, batch_rows)
    lake = Lake.from_settings(settings)
    lake.write(BRONZE_USAGE, bronze_usage(50, negative_duration_at=13, duplicate_offset_at=30))

    with pytest.raises(QualityGateFailed) as caught:
        run_gate(settings, [BRONZE_USAGE])

    lines = str(caught.value).splitlines()[1:]
    assert len(lines) == 2, lines
    duration = next(line for line in lines if "duration_s" in line)
    assert duration.startswith("FAILED bronze/usage.events@v0 bronze.usage.events: expect_column_values_to_be_between(")
    assert "observed 1 of 50 unexpected" in duration and "examples [-7]" in duration
    offsets = next(line for line in lines if "_kafka_offset" in line)
    assert "expect_compound_columns_to_be_unique" in offsets
    # both rows sharing offset 29 are unexpected, found even when they sit in different batches
    assert "observed 2 of 50 unexpected" in offsets and '"_kafka_offset": 29' in offsets
    assert all(f"see {RESULTS_TABLE} run_id=" in line and "docs " in line for line in lines)
    failed = [r for r in lake.read(RESULTS_TABLE).to_pylist() if not r["success"]]
    assert sorted(r["unexpected_count"] for r in failed) == [1, 2]
    assert all(r["version"] == 0 for r in failed)


def test_file_rows_without_kafka_coordinates_are_not_duplicates(local_settings):
    table = bronze_usage(10)
    for name in ("_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pa.nulls(10, table.schema.field(name).type))
    table = table.set_column(table.schema.get_field_index("_source"), "_source", pa.array(["file:dump.csv"] * 10))
    Lake.from_settings(local_settings).write(BRONZE_USAGE, table)
    assert run_gate(local_settings, [BRONZE_USAGE]).ok


def test_event_times_outside_the_configured_window_fail(local_settings):
    table = bronze_usage(5)
    future = pa.array([NOW + timedelta(hours=30)] + [NOW] * 4, pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("started_at"), "started_at", future)
    Lake.from_settings(local_settings).write(BRONZE_USAGE, table)
    assert not run_gate(local_settings, [BRONZE_USAGE], raise_on_failure=False).ok  # default skew 24 h
    relaxed = dataclasses.replace(local_settings, raw={**local_settings.raw, "quality": {"max_future_skew_hours": 48}})
    assert run_gate(relaxed, [BRONZE_USAGE]).ok


def test_overlapping_subscriber_intervals_are_explained(local_settings):
    ts = lambda d: datetime(2026, 10, d, tzinfo=UTC)  # noqa: E731
    subs = pa.table({
        "subscriber_id": ["SUB0000001", "SUB0000001", "SUB0000002"],
        "account_id": ["ACC1", "ACC1", "ACC2"],
        "status": ["active", "suspended", "active"],
        "valid_from": pa.array([ts(1), ts(5), ts(1)], pa.timestamp("us", tz="UTC")),
        "valid_to": pa.array([ts(9), None, None], pa.timestamp("us", tz="UTC")),
        "is_current": [False, True, True],
    })
    Lake.from_settings(local_settings).write("silver/subscribers", subs)
    result = run_gate(local_settings, ["silver/subscribers"], raise_on_failure=False)
    assert [line for line in result.failures if "silver.subscriber_intervals" in line] == [
        next(line for line in result.failures if "SUB0000001 [2026-10-01T00:00:00, 2026-10-09T00:00:00): overlaps the next interval" in line)
    ]
    assert len(result.failures) == 1


def test_a_frame_suite_over_pinned_inputs(local_settings):
    """The path billing and shares suites take: a frame computed from pinned table + inputs."""
    lake = Lake.from_settings(local_settings)
    lake.write("gold/t/invoices", pa.table({"bill_no": ["B1", "B2"], "total": [10, 7]}))
    lake.write("gold/t/lines", pa.table({"bill_no": ["B1", "B1", "B2"], "amount": [4, 6, 7]}))
    v_lines = lake.write("gold/t/lines", pa.table({"bill_no": ["B2"], "amount": [1]}))  # B2 no longer adds up
    seen: dict[str, int] = {}

    def balance(lake: Lake, versions: dict[str, int]) -> pa.Table:
        seen.update(versions)
        inv = lake.read("gold/t/invoices", version=versions["gold/t/invoices"]).to_pylist()
        lines = lake.read("gold/t/lines", version=versions["gold/t/lines"]).to_pylist()
        return pa.table({"bill_no": [i["bill_no"] for i in inv],
                         "diff": [i["total"] - sum(x["amount"] for x in lines if x["bill_no"] == i["bill_no"]) for i in inv]})

    suite = Suite(name="test.invoice_balance", table="gold/t/invoices", frame=balance, inputs=("gold/t/lines",),
                  expectations=lambda: [gx.expectations.ExpectColumnValuesToBeBetween(column="diff", min_value=0, max_value=0)],
                  description="an invoice whose lines do not add up")
    result = run_gate(local_settings, ["gold/t/invoices"], suites=[suite], raise_on_failure=False)
    assert seen == {"gold/t/invoices": 0, "gold/t/lines": v_lines}
    assert result.versions == seen
    assert len(result.failures) == 1 and "examples [-1]" in result.failures[0] and "do not add up" in result.failures[0]
    row = lake.read(RESULTS_TABLE).to_pylist()[0]
    assert json.loads(row["input_versions"]) == {"gold/t/lines": v_lines}


def test_a_broken_suite_module_is_a_loud_error(tmp_path, monkeypatch):
    import quality
    from pipelines.core.errors import QualitySuiteError
    from quality.runner import discover_suites

    (tmp_path / "qtest_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.setattr(quality, "__path__", [*quality.__path__, str(tmp_path)])
    with pytest.raises(QualitySuiteError, match="quality/qtest_broken.py failed to import: RuntimeError: boom"):
        discover_suites(["bronze", "qtest_broken"])


def test_cli_exits_non_zero_with_lines_and_prints_the_docs_folder(local_settings):
    Lake.from_settings(local_settings).write(BRONZE_USAGE, bronze_usage(20, negative_duration_at=3))
    runner = CliRunner()
    failed = runner.invoke(app, ["quality", BRONZE_USAGE])
    assert failed.exit_code == 1
    assert "FAILED bronze/usage.events@v0 bronze.usage.events: expect_column_values_to_be_between" in failed.output
    docs = runner.invoke(app, ["quality", "--docs"])
    assert docs.exit_code == 0 and docs.output.strip().endswith("local_site")
    as_json = runner.invoke(app, ["quality", BRONZE_USAGE, "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["failed"] == 1


def test_bronze_suites_follow_the_contracts():
    names = [s.table for s in bronze.SUITES]
    assert names == ["bronze/usage.events", "bronze/network.events", "bronze/bss.events"]


def test_duplicate_record_ids_in_different_batches_fail_silver_usage(local_settings):
    table = bronze_usage(30)
    ids = table["record_id"].to_pylist()
    ids[29] = ids[0]  # first and last row: never in the same 4-row batch
    table = table.set_column(0, "record_id", pa.array(ids))
    Lake.from_settings(local_settings).write("silver/usage", table)
    result = run_gate(with_batch_rows(local_settings, 4), ["silver/usage"], raise_on_failure=False)
    assert len(result.failures) == 1
    assert 'expect_column_values_to_be_unique(column="record_id"): observed 2 of 30 unexpected' in result.failures[0]
    assert '["R00000000"]' in result.failures[0]


def test_data_docs_keep_only_the_newest_runs(local_settings):
    settings = dataclasses.replace(local_settings, raw={**local_settings.raw, "quality": {"docs_keep_runs": 2}})
    Lake.from_settings(settings).write(BRONZE_USAGE, bronze_usage(5))
    runs = [run_gate(settings, [BRONZE_USAGE]).run_id for _ in range(3)]
    pages = {p.parent.parent.name for p in docs_dir(settings).glob("validations/**/*.html")}
    assert pages == set(runs[1:])
    assert {r["run_id"] for r in Lake.from_settings(settings).read(RESULTS_TABLE).to_pylist()} == set(runs)


def test_a_bad_quality_setting_is_a_one_line_config_error(local_settings):
    from pipelines.core.errors import ConfigError

    bad = dataclasses.replace(local_settings, raw={**local_settings.raw, "quality": {"batch_rows": 0}})
    with pytest.raises(ConfigError, match=r"^quality.batch_rows = 0: expected an integer from 1 to 100000000$"):
        run_gate(bad, [BRONZE_USAGE])

"""`telcolake sql` and `telcolake tables` over a small real lake: views, time travel, formats, piped stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core.errors import ConfigError
from pipelines.core.lake import Lake, view_names
from pipelines.ops.sqlshell import register_lake, statements

runner = CliRunner()


@pytest.fixture
def small_lake(local_settings):
    """Three tables; silver/usage has versions 0 (2 rows) and 1 (3 rows); returns (lake, time between them)."""
    lake = Lake.from_settings(local_settings)
    lake.write("silver/usage", pa.table({"record_id": ["a", "b"], "duration_s": [10, 20]}))
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    lake.write("silver/usage", pa.table({"record_id": ["c"], "duration_s": [30]}))
    lake.write("gold/billing/invoices", pa.table({"bill_no": ["INV-1"], "amount_minor": [1234]}))
    lake.write("bronze/usage.events", pa.table({"record_id": ["a", "b", "b"]}))
    return lake, between


def sql(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["sql", *args])
    return result.exit_code, result.output


def test_every_registered_view_answers_a_query(small_lake):
    lake, _ = small_lake
    views = view_names(lake.list_tables())
    assert {"silver_usage", "gold_billing_invoices", "gold_invoices", "bronze_usage_events"} <= set(views)
    expected = {"silver/usage": 3, "gold/billing/invoices": 1, "bronze/usage.events": 3}
    for view, table in views.items():
        code, out = sql("-c", f"select count(*) as n from {view}", "--format", "json")
        assert code == 0, out
        assert json.loads(out) == [{"n": expected[table]}], view


def test_formats_and_multiple_statements(small_lake):
    code, out = sql("-c", "select record_id, duration_s from silver_usage order by record_id; select ';' as s", "--format", "csv")
    assert code == 0, out
    assert out.splitlines() == ["record_id,duration_s", "a,10", "b,20", "c,30", "s", ";"]
    code, out = sql("-c", "select sum(duration_s) as total from silver_usage")
    assert code == 0 and "60" in out and "1 row" in out


def test_as_of_version_reads_the_older_data(small_lake):
    for key in ("silver_usage", "silver/usage"):
        code, out = sql("-c", "select record_id from silver_usage order by 1", "--format", "csv", "--as-of-version", f"{key}=0")
        assert code == 0, out
        assert out.splitlines() == ["record_id", "a", "b"]
    code, out = sql("-c", "select 1", "--as-of-version", "no_such_view=0")
    assert code == 1 and "no_such_view" in out


def test_as_of_timestamp_reads_each_table_as_it_was(small_lake):
    lake, between = small_lake
    con = duckdb.connect()
    views = register_lake(con, lake, as_of=between.isoformat())
    assert set(views.values()) == {"silver/usage"}  # the others did not exist yet
    assert con.sql("select count(*) from silver_usage").fetchall()[0][0] == 2
    code, out = sql("-c", "select count(*) as n from silver_usage", "--format", "json", "--as-of", between.isoformat())
    assert code == 0 and json.loads(out) == [{"n": 2}]
    con = duckdb.connect()
    register_lake(con, lake, as_of=datetime.now(UTC), versions={"gold_invoices": 0})
    assert con.sql("select count(*) from silver_usage").fetchall()[0][0] == 3
    with pytest.raises(ConfigError, match="ISO 8601"):
        register_lake(duckdb.connect(), lake, as_of="yesterday-ish")


def test_file_and_bad_sql(small_lake, tmp_path):
    f = tmp_path / "q.sql"
    f.write_text("-- a comment\nselect max(duration_s) as m\nfrom silver_usage;\n")
    code, out = sql("-f", str(f), "--format", "json")
    assert code == 0 and json.loads(out) == [{"m": 30}]
    code, out = sql("-c", "select nope from silver_usage")
    assert code == 1 and "nope" in out


def test_piped_stdin_runs_statements_and_dot_commands(small_lake, local_settings):
    script = ".tables\nselect record_id,\n  duration_s\nfrom silver_usage\nwhere duration_s > 15\norder by 1;\nselect 'x;y' as s;\nselect 42 as tail\n"
    env = {**os.environ, "TELCOLAKE_LAKE": local_settings.lake_root, "TELCOLAKE_STATE_DIR": str(local_settings.state_dir)}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "sql", "--format", "csv"], input=script,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "gold_invoices          gold/billing/invoices" in lines
    after = lines[lines.index("record_id,duration_s"):]
    assert after == ["record_id,duration_s", "b,20", "c,30", "s", "x;y", "tail", "42"]
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "sql"], input="select nope;\nselect 1 as ok;\n",
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "nope" in bad.stderr and "ok" in bad.stdout


def test_statement_splitting_respects_strings():
    assert statements("select 1; select 'a;b'") == ["select 1", "select 'a;b'"]


def test_tables_lists_version_rows_size_and_freshness(small_lake):
    result = runner.invoke(app, ["tables", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["table"]: r for r in json.loads(result.output)}
    assert set(rows) == {"silver/usage", "gold/billing/invoices", "bronze/usage.events"}
    usage = rows["silver/usage"]
    assert (usage["version"], usage["rows"], usage["files"]) == (1, 3, 2)
    assert usage["size_bytes"] > 0 and 0 <= usage["freshness_s"] < 60
    assert usage["view"] == "silver_usage" and usage["last_commit_at"].startswith(str(datetime.now(UTC).year))


def test_string_view_files_can_be_filtered(local_settings):
    """Files written from Polars frames store string_view; pyarrow cannot filter those, DuckDB pushes filters."""
    lake = Lake.from_settings(local_settings)
    lake.write("gold/network/cell_kpi_1m", pa.table({"cell_id": pa.array(["C1", "C2", "C3"], pa.string_view()), "n": [1, 2, 3]}))
    code, out = sql("-c", "select n from gold_network_cell_kpi_1m where cell_id in ('C1', 'C3') and cell_id >= 'C1' order by n",
                    "--format", "csv")
    assert code == 0, out
    assert out.splitlines() == ["n", "1", "3"]

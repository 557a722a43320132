"""Lake discovery: only tables under the layer roots, SQL-identifier names, no symlinks followed, no shadowed views."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipelines.core.lake import Lake
from pipelines.ops.lake_info import lake_report
from pipelines.ops.sqlshell import Shell, register_lake

REAL = {  # the 7 real tables and their row counts
    "bronze/usage.events": 5, "quarantine/usage.events": 1, "silver/usage": 3953, "gold/billing/invoices": 4,
    "reference/tariff_plans": 3, "shares/fr-orange/roaming_records": 2, "ops/job_runs": 6,
}
WEIRD = ["silver/with space", "silver/quo'te", 'silver/dq"uote', "silver/semi;colon", "silver/ünïcode", "silver/new\nline",
         "gold/drop table x;--", "silver/a%20b"]


@pytest.fixture
def hostile_lake(local_settings, tmp_path) -> tuple[Lake, Path]:
    lake = Lake.from_settings(local_settings)
    for name, n in REAL.items():
        lake.write(name, pa.table({"id": pa.array(range(n), pa.int64())}))
    root = Path(lake.root)
    one_row = root / "silver" / "usage_one"
    lake.write("silver/usage_one", pa.table({"id": pa.array([1], pa.int64())}))
    shutil.move(one_row, root / "silver_usage")  # a stray table beside the layers, named like the silver_usage view
    for name in WEIRD:
        shutil.copytree(root / "silver_usage", root / name)
    shutil.copytree(root / "silver_usage", os.fsdecode(os.fsencode(root / "silver") + b"/bad\xffbytes"))  # not UTF-8
    # symlinks: a loop back to a layer, a self-referencing link, a link to a table outside the lake, a link into the lake
    os.symlink(root / "silver", root / "silver" / "loop")
    os.symlink(root / "gold" / "self", root / "gold" / "self")
    outside = tmp_path / "outside"
    Lake(str(outside)).write("t", pa.table({"id": [1, 2]}))
    os.symlink(outside / "t", root / "ops" / "outside")
    os.symlink(root / "silver" / "usage", root / "gold" / "alias_of_usage")
    os.symlink(root / "silver", root / "staging")  # a whole layer as a link
    # names that collide as views: '.' and '_' and case map to one DuckDB view name
    lake.write("silver/usage_x", pa.table({"id": [1]}))
    lake.write("silver/usage.x", pa.table({"id": [1, 2]}))
    lake.write("silver/Usage_X", pa.table({"id": [1, 2, 3]}))
    # a folder that looks like a table but has no log entries, and a layer root that is itself a table
    (root / "gold" / "broken" / "_delta_log").mkdir(parents=True)
    (root / "gold" / "broken" / "_delta_log" / "00000000000000000000.json").write_text("{not json")
    deep = root / "gold" / "a" / "b" / "c" / "d" / "e" / "f"
    lake.write("gold/a/b/c/d/e/f", pa.table({"id": [1]}))
    assert deep.is_dir()
    return lake, root


class TestLakeDiscovery:
    """Hostile folders and links in the lake never hide, shadow or multiply tables."""

    def test_only_real_tables_are_registered_and_each_skip_has_a_reason(self, hostile_lake):
        lake, _ = hostile_lake
        found = lake.discover()
        assert set(found.tables) == set(REAL) | {"silver/usage_x", "silver/usage.x", "silver/Usage_X", "gold/broken"}
        reasons = {s.path: s.reason for s in found.skipped}
        assert "not under a layer root" in reasons["silver_usage"]
        for name in WEIRD:
            assert "no SQL view name" in reasons[name.replace("\n", "\\n")], name
        assert "no SQL view name" in reasons["silver/bad\\xffbytes"]
        for link in ("silver/loop", "gold/self", "ops/outside", "gold/alias_of_usage", "staging"):
            assert reasons[link].startswith("symlink to ") and "not followed" in reasons[link], link
        assert "deeper than" in reasons["gold/a/b/c/d/e"]

    def test_a_stray_table_never_shadows_a_view_and_queries_work(self, hostile_lake):
        lake, _ = hostile_lake
        con, skipped = duckdb.connect(), []
        views = register_lake(con, lake, skipped=skipped)
        assert con.execute("select count(*) from silver_usage").fetchone() == (3953,)
        assert views["silver_usage"] == "silver/usage"
        for view, name in views.items():
            if name in REAL:
                assert con.execute(f"select count(*) from {view}").fetchone() == (REAL[name],), view
        assert views["silver_Usage_X"] == "silver/Usage_X" and "silver_usage_x" not in views  # the first by name keeps the view; the others are reported
        why = {s.path: s.reason for s in skipped}
        assert "already taken by silver/Usage_X" in why["silver/usage.x"] and "already taken" in why["silver/usage_x"]
        assert why["gold/broken"].startswith("cannot be read")
        assert "gold_broken" not in views

    def test_tables_command_lists_seven_plus_collisions_and_says_why_for_the_rest(self, hostile_lake, local_settings):
        env = {**os.environ, "TELCOLAKE_LAKE": local_settings.lake_root, "TELCOLAKE_STATE_DIR": str(local_settings.state_dir)}
        env.pop("TELCOLAKE_CONFIG", None)
        out = subprocess.run([sys.executable, "-m", "pipelines.cli", "tables", "--json"], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        listed = {t["table"]: t for t in json.loads(out.stdout)}
        assert set(listed) == set(REAL) | {"silver/usage_x", "silver/usage.x", "silver/Usage_X"}
        assert all(listed[n]["rows"] == r for n, r in REAL.items())
        assert listed["silver/usage.x"]["view"] == ""
        assert "skipped silver_usage: not under a layer root" in out.stderr
        assert "skipped gold/broken: cannot be read" in out.stderr
        assert "skipped silver/loop: symlink to" in out.stderr
        sql = subprocess.run([sys.executable, "-m", "pipelines.cli", "sql", "-c", "select count(*) as n from silver_usage", "--format", "csv"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert sql.returncode == 0 and sql.stdout.splitlines() == ["n", "3953"], sql.stderr

    def test_shell_dot_tables_shows_the_skipped_with_reasons(self, hostile_lake):
        import io

        lake, _ = hostile_lake
        con, skipped = duckdb.connect(), []
        views = register_lake(con, lake, skipped=skipped)
        out = io.StringIO()
        Shell(con, views, out=out, skipped=skipped).command(".tables")
        text = out.getvalue()
        assert "silver_usage  " in text and "skipped silver_usage: not under a layer root" in text
        assert "skipped silver/new\\nline: name part" in text and "new\nline" not in text  # one line per skipped folder

    def test_report_survives_a_table_that_cannot_be_read(self, hostile_lake):
        lake, _ = hostile_lake
        report = lake_report(lake)
        assert {t.table for t in report.tables} >= set(REAL)
        assert any(s.path == "gold/broken" and "cannot be read" in s.reason for s in report.skipped)

"""Backfill decides per file: good files land, bad rows are quarantined, bad files are refused with a reason."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines.core.lake import Lake
from pipelines.ingest.backfill import BACKFILL_FILES
from tests.helpers import ENC, usage_record

pytestmark = pytest.mark.timeout(300)


def backfill(*args: str, ok: bool = True) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "backfill", "--json", "--no-silver", *args],
                         capture_output=True, text=True, timeout=240)  # a blocking FIFO read would hit the timeout
    if ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}, out.stderr


def records(lo: int, hi: int) -> list[dict]:
    return [usage_record(i) for i in range(lo, hi)]


def csv_bytes(rows: list[dict]) -> bytes:
    return pl.DataFrame(rows).write_csv().encode()


@pytest.fixture
def dumps(tmp_path) -> Path:
    """One folder of usage dumps: good files around every kind of bad file, sorted so bad ones sit between good ones."""
    d = tmp_path / "dumps" / "usage.events"
    d.mkdir(parents=True)
    (d / "a_good.jsonl").write_bytes(b"\n".join(ENC.encode(r) for r in records(0, 10)) + b"\n{broken\n")  # 10 good, 1 bad row
    (d / "b_binary.csv").write_bytes(os.urandom(64) + b"\x00\x01" + os.urandom(512))
    latin = "record_id,event_type,subscriber_id,msisdn,started_at,duration_s,bytes_up,bytes_down,cell_id\n"
    latin += "".join(f"R8{i:08d},voice,SUB0000001,491510000001,2026-10-02T10:00:00Z,60,0,0,CÉLL-Zürich-{i}\n" for i in range(5))
    (d / "c_latin1.csv").write_bytes(latin.encode("latin-1"))
    (d / "d_empty.csv").write_bytes(b"")
    (d / "d_empty.parquet").write_bytes(b"")
    pl.DataFrame(records(100, 160)).write_parquet(d / "e_full.parquet")
    full = (d / "e_full.parquet").read_bytes()
    (d / "f_truncated.parquet").write_bytes(full[: len(full) // 2])
    (d / "g_wrong_header.csv").write_bytes(b"event_id,cell_id,site_id\nE1,C1,S1\n")
    spark = d / "h_spark_output.csv"  # a directory named like a dump (Spark writes these)
    spark.mkdir()
    (spark / "part-00000.csv").write_bytes(csv_bytes(records(200, 220)))
    os.mkfifo(d / "i_fifo.csv")
    os.symlink(d / "j_loop.jsonl", d / "j_loop.jsonl")  # a self-referencing symlink
    os.symlink(d / "nowhere.jsonl", d / "k_broken.jsonl")
    os.symlink(d, d / "l_back_to_parent")  # a directory link loop
    (d / "m_good.csv").write_bytes(csv_bytes(records(300, 320)))
    (d / "n_gzip.jsonl").write_bytes(gzip.compress(b"\n".join(ENC.encode(r) for r in records(400, 405))))
    (d / "o_array.json").write_bytes(json.dumps(records(500, 503)).encode())
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "p_socket.csv"))
    sock.close()
    (d / "q_dup_header.csv").write_bytes(b"record_id,record_id,event_type\nR1,R1,voice\n")
    (d / "r_header_only.csv").write_bytes(csv_bytes(records(0, 1)).split(b"\n", 1)[0] + b"\n")
    (d / "s_unbalanced.csv").write_bytes(csv_bytes(records(600, 603)) + b'"R9,"oops\n')
    (d / "t_parquet_named.csv").write_bytes(_parquet(records(900, 905)))
    (d / "u_good.parquet").write_bytes(_parquet(records(700, 730)))
    (d / "v_same_content.csv").write_bytes((d / "m_good.csv").read_bytes())
    (d / "README.txt").write_text("not a dump")
    return d


def _parquet(rows: list[dict]) -> bytes:
    import io

    buf = io.BytesIO()
    pl.DataFrame(rows).write_parquet(buf)
    return buf.getvalue()


GOOD_ROWS = 10 + 60 + 20 + 20 + 30  # a_good, e_full, h_spark_output/part, m_good, u_good
REFUSED = {"b_binary.csv": "binary content", "c_latin1.csv": "not valid UTF-8", "d_empty.csv": "empty file",
           "d_empty.parquet": "empty file", "f_truncated.parquet": "truncated Parquet", "g_wrong_header.csv": "lacks required column",
           "n_gzip.jsonl": "gzip-compressed", "o_array.json": "a JSON array", "q_dup_header.csv": "more than once",
           "s_unbalanced.csv": "not a readable csv file", "t_parquet_named.csv": "a Parquet file named .csv"}
SKIPPED = {"h_spark_output.csv": "a directory named like a dump file", "i_fifo.csv": "a FIFO", "j_loop.jsonl": "a symlink loop",
           "k_broken.jsonl": "a broken symlink", "p_socket.csv": "a socket"}


class TestBackfillFiles:
    """Every hostile file is judged on its own; the good ones around it land, and a rerun retries only what changed."""

    def test_good_files_land_around_bad_ones_and_each_bad_file_is_recorded(self, local_settings, dumps):
        summary, stderr = backfill(str(dumps.parent), "-w", "2")
        lake = Lake.from_settings(local_settings)
        assert lake.read("bronze/usage.events").num_rows == GOOD_ROWS
        assert lake.read("quarantine/usage.events")["reason"].to_pylist() == ["malformed_json"]
        assert summary["files"] == 6 + len(REFUSED) - 2 and summary["same_content_as"] == {str(dumps / "v_same_content.csv"): str(dumps / "m_good.csv")}
        refused = {Path(r["path"]).name: r["reason"] for r in summary["refused_files"]}
        skipped = {Path(r["path"]).name: r["reason"] for r in summary["skipped_files"]}
        assert set(refused) == set(REFUSED) and set(skipped) == set(SKIPPED)
        for name, why in REFUSED.items():
            assert why in refused[name], (name, refused[name])
            assert f"refused {dumps / name}: " in stderr
        for name, why in SKIPPED.items():
            assert skipped[name].startswith(why), (name, skipped[name])
        rows = {Path(r["path"]).name: r for r in lake.read(BACKFILL_FILES).to_pylist()}
        assert set(rows) == set(REFUSED) | set(SKIPPED)
        assert all(rows[n]["content_sha256"] and rows[n]["status"] == "refused" and rows[n]["recorded_at"] for n in REFUSED)
        assert rows["i_fifo.csv"]["content_sha256"] is None and rows["i_fifo.csv"]["status"] == "skipped"
        assert rows["c_latin1.csv"]["encoding"] == "utf-8" and rows["c_latin1.csv"]["size_bytes"] == (dumps / "c_latin1.csv").stat().st_size

    def test_a_rerun_retries_only_refused_files_that_changed(self, local_settings, dumps):
        backfill(str(dumps.parent))
        lake = Lake.from_settings(local_settings)
        recorded = lake.read(BACKFILL_FILES).num_rows
        again, stderr = backfill(str(dumps.parent))
        assert again["rows"].get("usage.events", 0) == 0 and again["refused_files"] == []
        assert {Path(r["path"]).name for r in again["refused_before_unchanged"]} == set(REFUSED)
        assert "refused before, unchanged (not retried)" in stderr
        assert lake.read(BACKFILL_FILES).num_rows == recorded  # nothing recorded twice
        (dumps / "g_wrong_header.csv").write_bytes(csv_bytes(records(800, 812)))  # the operator fixed one export
        fixed, _ = backfill(str(dumps.parent))
        assert fixed["rows"]["usage.events"] == 12 and fixed["refused_files"] == []  # landed files are read again, land nothing
        assert {Path(r["path"]).name for r in fixed["refused_before_unchanged"]} == set(REFUSED) - {"g_wrong_header.csv"}
        assert lake.read("bronze/usage.events").num_rows == GOOD_ROWS + 12
        forced, _ = backfill(str(dumps.parent), "--retry-refused")
        assert {Path(r["path"]).name for r in forced["refused_files"]} == set(REFUSED) - {"g_wrong_header.csv"}
        assert lake.read(BACKFILL_FILES).num_rows == recorded  # the same refusals again: not recorded twice

    def test_legacy_encoding_lands_with_encoding_option(self, local_settings, dumps):
        backfill(str(dumps / "c_latin1.csv"))
        lake = Lake.from_settings(local_settings)
        assert not lake.exists("bronze/usage.events") or lake.read("bronze/usage.events").num_rows == 0
        summary, _ = backfill(str(dumps / "c_latin1.csv"), "--encoding", "latin-1")
        assert summary["rows"]["usage.events"] == 5 and summary["refused_files"] == []
        cells = sorted(lake.read("bronze/usage.events")["cell_id"].to_pylist())
        assert cells[0] == "CÉLL-Zürich-0"
        _, stderr = backfill(str(dumps / "c_latin1.csv"), "--encoding", "klingon", ok=False)
        assert "--encoding 'klingon': unknown text encoding" in stderr

    def test_a_path_named_directly_is_judged_whatever_it_is(self, local_settings, dumps):
        summary, _ = backfill(str(dumps / "i_fifo.csv"), str(dumps / "README.txt"), str(dumps / "m_good.csv"))
        assert summary["rows"]["usage.events"] == 20
        assert {Path(r["path"]).name: r["reason"][:16] for r in summary["skipped_files"]} == {"i_fifo.csv": "a FIFO (named pi"}
        assert [Path(r["path"]).name for r in summary["refused_files"]] == ["README.txt"]
        _, stderr = backfill(str(dumps / "absent.csv"), ok=False)
        assert "absent.csv: No such file or directory" in stderr

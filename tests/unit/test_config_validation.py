"""Config validation is total: every key of telcolake.toml and partners.toml refuses hostile values in one line.

The key list is derived from the two files themselves, so a key added there is fuzzed too
(and must be declared in ``pipelines.core.keys`` or the partner registry).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.billing.engine import engine_options
from pipelines.churn.features import ChurnSettings
from pipelines.core.config import REPO_ROOT, IngestSettings, load_settings
from pipelines.core.errors import ConfigError
from pipelines.core.keys import CONFIG
from pipelines.core.schema import Spec, Table
from pipelines.ops.jobs import load_jobs
from pipelines.sharing.registry import SharingSettings, load_partners, sharing_settings
from pipelines.simulate import SimConfig
from pipelines.streams.config import (
    AlertRules,
    FraudRules,
    OfferRules,
    StreamSettings,
    stream_config,
)
from quality.core import QualityConfig

CONFIG_DOC = tomllib.loads((REPO_ROOT / "telcolake.toml").read_text())
PARTNERS_DOC = tomllib.loads((REPO_ROOT / "partners.toml").read_text())


def toml_str(v: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(v: Any) -> str:
    """One TOML value on one line (inline tables for dicts); enough to write any parsed document back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_str(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dump(doc: dict) -> str:
    return "".join(f"{toml_str(str(k))} = {toml_value(v)}\n" for k, v in doc.items())


def leaf_paths(doc: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a parsed document: tables themselves and every key under them."""
    out = []
    for k, v in doc.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out += leaf_paths(v, (*prefix, k))
    return out


PATHS = [("config", p) for p in leaf_paths(CONFIG_DOC)] + [("partners", p) for p in leaf_paths(PARTNERS_DOC)]


def replaced(doc: dict, path: tuple[str, ...], value: Any) -> dict:
    out = _copy(doc)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def _copy(v: Any) -> Any:
    return {k: _copy(x) for k, x in v.items()} if isinstance(v, dict) else list(v) if isinstance(v, list) else v


def load_everything():
    """What every command reads: the settings and every section's reader, the jobs and the registry."""
    s = load_settings()
    stream_config(s)
    engine_options(s)
    ChurnSettings.from_settings(s)
    QualityConfig.from_settings(s)
    sharing_settings(s)
    load_partners(s)
    load_jobs(s)
    SimConfig.from_settings(s)
    return s


def assert_working(s) -> None:
    """Accepted values are usable as they are: finite numbers, sizes DuckDB takes, crons that fire."""
    def walk(v: Any) -> None:
        if isinstance(v, float):
            assert math.isfinite(v), v
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
    for name in CONFIG.keys:
        walk(s.values(name))
    con = duckdb.connect()
    for limit in (engine_options(s)["memory_limit"], ChurnSettings.from_settings(s).memory_limit,
                  QualityConfig.from_settings(s).duckdb_memory_limit):
        con.execute(f"set memory_limit = '{limit}'")
    for job in load_jobs(s).values():  # a job fires on its cron, or runs when its inputs move
        assert job.next_after(datetime(2026, 1, 1).astimezone()) is not None if job.cron else job.on_inputs and job.reads


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Write (config, partners) documents, point telcolake at them, and give back the writer."""
    config, partners = tmp_path / "telcolake.toml", tmp_path / "partners.toml"
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(config))
    monkeypatch.setenv("TELCOLAKE_PARTNERS", str(partners))
    monkeypatch.setenv("TELCOLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("TELCOLAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TELCOLAKE_KAFKA_BOOTSTRAP", raising=False)

    def write(config_doc: dict = CONFIG_DOC, partners_doc: dict = PARTNERS_DOC) -> None:
        config.write_text(dump(config_doc))
        partners.write_text(dump(partners_doc))

    write()
    return write


HOSTILE_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 2**63 - 1, -(2**63), 10**30,
                                   -(10**30), 0, -1, 1, 7, 86401])
SCALARS = st.one_of(
    HOSTILE_NUMBERS,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["", " ", "nan", "inf", "2XB", "2", "-1GB", "99999999999999TB", "0.000001MB", "[/red]", "* * * *", "0 0 30 2 *",
                     "every minute", "2026-02-30", "x" * 5000, "\x00", "line\nbreak", "../../etc", "http://evil example"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.dates(),
    st.datetimes(),
    st.times(),
)
HOSTILE = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))


class TestConfigValidation:
    """Every key has a type and a range, checked at load, refused in one line naming the key."""

    def test_every_key_of_the_shipped_files_is_declared(self):
        for path in leaf_paths(CONFIG_DOC):
            node: Any = CONFIG
            for part in path:
                assert isinstance(node, Table), path
                node = node.keys.get(part) or node.extra
                assert node is not None, f"{'.'.join(path)} is not declared in pipelines.core.keys"
            assert isinstance(node, Spec | Table)

    @pytest.mark.parametrize("cls, section", [(IngestSettings, "ingest"), (StreamSettings, "streams"), (AlertRules, "alerts"),
                                              (FraudRules, "fraud"), (OfferRules, "offers"), (QualityConfig, "quality"),
                                              (SimConfig, "simulate")])
    def test_dataclass_defaults_are_the_declared_defaults(self, cls, section, local_settings):
        declared = dataclasses.replace(local_settings, raw={}).values(section)
        assert {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)} == declared

    def test_sharing_and_churn_defaults_are_the_declared_defaults(self, local_settings):
        bare = dataclasses.replace(local_settings, raw={})
        s = sharing_settings(bare)
        declared = bare.values("sharing")
        assert {k: getattr(s, k) for k in declared if k not in ("registry", "secrets_file")} == {
            k: getattr(SharingSettings(Path("r"), Path("s")), k) for k in declared if k not in ("registry", "secrets_file")}
        c = ChurnSettings.from_settings(bare)
        assert dataclasses.replace(c, temp_directory=None) == ChurnSettings()

    @pytest.mark.parametrize("section, key, value, allowed", [
        ("ingest", "flush_seconds", math.nan, "finite number"),
        ("ingest", "flush_seconds", math.inf, "finite number"),
        ("ingest", "flush_rows", 10**30, "integer from 1 to"),
        ("ingest", "max_future_skew_hours", -math.inf, "finite number"),
        ("alerts", "drop_rate_above", math.nan, "in (0, 1)"),
        ("sharing", "min_row_ratio", math.nan, "in (0, 1]"),
        ("sharing", "file_url_ttl_s", 2**63, "integer from 1"),
        ("billing", "memory_limit", "2XB", "memory size"),
        ("quality", "duckdb_memory_limit", "lots", "memory size"),
        ("churn", "memory_limit", "1B", "memory size"),
        ("churn", "offer_top_pct", math.inf, "finite number"),
        ("streams", "shards", True, "integer"),
        ("fraud", "home_country_code", "+49; drop", "country calling code"),
        ("simulate", "seed", 2**64, "integer from 0"),
        ("simulate", "start", "2026-02-30", "YYYY-MM-DD"),
        ("sharing", "endpoint", "http://evil example/delta-sharing", "URL"),
    ])
    def test_hostile_values_are_refused_naming_the_key(self, files, section, key, value, allowed):
        files(replaced(CONFIG_DOC, (section, key), value))
        with pytest.raises(ConfigError) as exc:
            load_settings()
        message = str(exc.value)
        assert message.startswith(f"{section}.{key} = ") and allowed in message and "\n" not in message

    def test_jobs_refuse_crons_that_never_fire_and_unbounded_numbers(self, files):
        for key, value in (("cron", "0 0 30 2 *"), ("timeout_s", math.inf), ("retries", 10**20), ("retry_backoff_s", math.nan)):
            files(replaced(CONFIG_DOC, ("jobs", "ingest", key), value))
            with pytest.raises(ConfigError, match=rf"^jobs\.ingest\.{key} = "):
                load_settings()

    def test_unknown_sections_and_keys_are_refused(self, files):
        files({**CONFIG_DOC, "ingst": {"flush_rows": 1}})
        with pytest.raises(ConfigError, match=r"^\[ingst\]: unknown section"):
            load_settings()
        files(replaced(CONFIG_DOC, ("churn", "k_anonimity"), 3))
        with pytest.raises(ConfigError, match=r"^churn.k_anonimity: unknown key"):
            load_settings()
        files(replaced(CONFIG_DOC, ("ingest", "bad\nkey"), 3))
        with pytest.raises(ConfigError, match=r"unknown key") as exc:
            load_settings()
        assert "\n" not in str(exc.value)

    def test_a_missing_or_unreadable_config_file_is_an_error_naming_it(self, files, tmp_path, monkeypatch):
        missing = tmp_path / "nowhere" / "telcolake.toml"
        monkeypatch.setenv("TELCOLAKE_CONFIG", str(missing))
        with pytest.raises(ConfigError, match=f"TELCOLAKE_CONFIG {missing}: does not exist"):
            load_settings()
        monkeypatch.setenv("TELCOLAKE_CONFIG", str(tmp_path))
        with pytest.raises(ConfigError, match="not a regular file"):
            load_settings()
        fifo = tmp_path / "fifo.toml"
        os.mkfifo(fifo)
        monkeypatch.setenv("TELCOLAKE_CONFIG", str(fifo))
        with pytest.raises(ConfigError, match="not a regular file"):  # never opened, so never blocks
            load_settings()
        latin = tmp_path / "latin.toml"
        latin.write_bytes('[fraud]\nhome_country_code = "49é"\n'.encode("latin-1"))
        monkeypatch.setenv("TELCOLAKE_CONFIG", str(latin))
        with pytest.raises(ConfigError, match="not UTF-8"):
            load_settings()

    def test_partner_registry_values_are_refused_naming_the_key(self, files):
        for key, value in (("k_anonymity", 10**30), ("k_anonymity", 2.5), ("tables", "roaming_records"), ("plmns", [208]),
                           ("name", ["x"]), ("colour", "red")):
            files(partners_doc=replaced(PARTNERS_DOC, ("partners", "fr-orange", key), value))
            with pytest.raises(ConfigError, match=rf"^partners\.fr-orange\.{key}"):
                load_everything()

    def test_the_cli_prints_one_literal_line_and_exits_2(self, tmp_path):
        config = tmp_path / "bad.toml"
        config.write_text(dump(replaced(CONFIG_DOC, ("fraud", "home_country_code"), "[/red] [bold]" + "x" * 200)))
        env = {**os.environ, "TELCOLAKE_CONFIG": str(config), "TELCOLAKE_LAKE": str(tmp_path / "lake"),
               "TELCOLAKE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "40"}
        out = subprocess.run([sys.executable, "-m", "pipelines.cli", "tables"], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "fraud.home_country_code = '[/red] [bold]xxx" in lines[0], out.stderr
        env["TELCOLAKE_CONFIG"] = str(tmp_path / "absent.toml")
        out = subprocess.run([sys.executable, "-m", "pipelines.cli", "tables"], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "absent.toml" in out.stderr

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(target=st.sampled_from(PATHS), value=HOSTILE)
    def test_property_every_key_refuses_cleanly_or_works(self, files, target, value):
        which, path = target
        if which == "config":
            files(config_doc=replaced(CONFIG_DOC, path, value))
        else:
            files(partners_doc=replaced(PARTNERS_DOC, path, value))
        try:
            s = load_everything()
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) < 600, message
            named = [p for p in path if p in message or repr(p) in message]
            assert named or which == "partners" and "partners" in message, (path, message)
            return
        assert_working(s)

"""Publishing partner shares: values, pseudonyms, k-anonymity, idempotence, and the quality gate."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from pipelines.core.errors import ConfigError, QualityGateFailed
from pipelines.core.lake import Lake
from pipelines.sharing.gate import run_suites_directly
from pipelines.sharing.publish import publish
from pipelines.sharing.registry import get_partner, load_partners, partner_secret
from quality.shares import suites_for
from tests.unit.sharing.conftest import make_env
from tests.unit.sharing.data import DAY, Builder, imsi, msisdn, sub

RAW = re.compile(r"^(SUB\d{7}|49151\d{7}|26201\d{10}|4930\d+)$")


def rows(lake: Lake, name: str, version: int | None = None) -> list[dict]:
    return lake.read(name, version=version).to_pylist()


def test_settlement_report_and_footfall_values(published):
    lake = published.lake
    fr = rows(lake, "shares/fr-orange/roaming_settlement")
    assert len(fr) == 1
    r = fr[0]
    # 5 subscribers x (125 s call + SMS + 3 MB) in 208-01 at 0.022/min, 0.004/SMS, 0.0015/MB
    assert (r["visited_plmn"], r["count_events"], r["count_subscribers"], r["count_calls"], r["voice_s"], r["count_sms"]) == ("208-01", 15, 5, 5, 625, 5)
    assert r["voice_minutes"] == Decimal("10.4167") and r["data_mb"] == Decimal("15.0000")
    assert (r["voice_charge"], r["sms_charge"], r["data_charge"]) == (Decimal("0.2292"), Decimal("0.0200"), Decimal("0.0225"))
    assert r["total_charge"] == Decimal("0.2717") and r["currency"] == "EUR" and r["partner_name"] == "FR Orange"
    es = rows(lake, "shares/es-movistar/roaming_settlement")
    assert [(x["visited_plmn"], x["voice_s"], x["total_charge"]) for x in es] == [("214-07", 60, Decimal("0.0220"))]

    ott = rows(lake, "shares/ott-streamflix/ott_report")
    assert len(ott) == 1
    o = ott[0]
    # 8 activations, 1 deactivation, 6 subscribers x 10 MB; 60 MB x 0.0020 x 30 % = 0.036
    assert (o["count_activations"], o["count_deactivations"], o["count_active_subscribers"], o["count_sessions"]) == (8, 1, 6, 6)
    assert o["data_mb"] == Decimal("60.0000") and o["revenue_share"] == Decimal("0.0360") and o["contract_model"] == "share_of_value"
    subs = rows(lake, "shares/ott-streamflix/ott_subscribers")
    assert len(subs) == 8 and sum(not s["is_active"] for s in subs) == 1

    foot = rows(lake, "shares/geo-insights/location_footfall")
    # A01 at 10:00 has 12 visitors (first call to SMS 20 min later = 1200 s each); A02 (3 visitors) is suppressed
    assert [(f["hour_start"], f["area_id"], f["count_visitors"], f["avg_dwell_s"]) for f in foot] == [(DAY + timedelta(hours=10), "A01", 12, 1200)]
    assert all(f["count_visitors"] >= 10 for f in foot)


def test_k_is_configurable_and_no_bucket_below_k(tmp_path, monkeypatch):
    env = make_env(tmp_path, monkeypatch, "k_anonymity = 3")
    publish(env.settings, "geo-insights")
    foot = rows(env.lake, "shares/geo-insights/location_footfall")
    assert {(f["area_id"], f["count_visitors"]) for f in foot} == {("A01", 12), ("A02", 3), ("A01", 7)}
    assert min(f["count_visitors"] for f in foot) >= 3


def test_pseudonyms_are_per_partner_hmacs(published):
    s, lake = published.settings, published.lake
    fr = {r["subscriber_ref"] for r in rows(lake, "shares/fr-orange/roaming_records")}
    es = {r["subscriber_ref"] for r in rows(lake, "shares/es-movistar/roaming_records")}
    ott = {r["subscriber_ref"] for r in rows(lake, "shares/ott-streamflix/ott_subscribers")}
    partners = load_partners(s)
    ref = {p: hmac.new(partner_secret(s, partners[p]), sub(1).encode(), hashlib.sha256).hexdigest()
           for p in ("fr-orange", "es-movistar", "ott-streamflix")}
    assert ref["fr-orange"] in fr and ref["es-movistar"] in es and ref["ott-streamflix"] in ott
    assert len(set(ref.values())) == 3  # one subscriber, three unlinkable ids
    assert not fr & es and len(fr) == 5


def test_no_raw_identifier_in_any_column_of_any_share(published):
    lake = published.lake
    raw = {v for r in published.builder.usage for v in (r["subscriber_id"], r["msisdn"], r["imsi"], r["called_number"]) if v}
    raw |= {f(i) for i in range(1, 41) for f in (sub, msisdn, imsi)}
    shares = [n for n in lake.list_tables() if n.startswith("shares/")]
    assert len(shares) == 7
    for name in shares:
        table = lake.read(name)
        for column in table.column_names:
            values = {str(v) for v in table[column].to_pylist() if v is not None}
            assert not values & raw, f"{name}.{column} holds raw identifiers"
            assert not [v for v in values if RAW.match(v)], f"{name}.{column} holds identifier-shaped values"
            assert column not in ("msisdn", "imsi", "subscriber_id", "called_number")


def test_publish_is_idempotent_and_versions_on_change(shared):
    s, lake = shared.settings, shared.lake
    publish(s, "fr-orange")
    v0 = lake.version("shares/fr-orange/roaming_settlement")
    again = publish(s, "fr-orange")[0]
    assert [t.status for t in again.tables] == ["unchanged", "unchanged"]
    assert lake.version("shares/fr-orange/roaming_settlement") == v0
    b = Builder()
    b.n = 10_000
    b.record(6, "voice", DAY + timedelta(hours=12), duration_s=60, plmn="208-01", cell=None)
    b.append_usage(lake)
    result = publish(s, "fr-orange")[0]
    assert [t.status for t in result.tables] == ["published", "published"] and result.gate.startswith("passed")
    assert lake.version("shares/fr-orange/roaming_settlement") == v0 + 1
    assert rows(lake, "shares/fr-orange/roaming_settlement")[0]["count_subscribers"] == 6
    assert rows(lake, "shares/fr-orange/roaming_settlement", v0)[0]["count_subscribers"] == 5


def test_gate_failure_keeps_previous_version(tmp_path, monkeypatch):
    env = make_env(tmp_path, monkeypatch, "max_row_ratio = 1.5")
    s, lake = env.settings, env.lake
    publish(s, "fr-orange")
    before = lake.version("shares/fr-orange/roaming_records")
    b = Builder()
    b.n = 20_000
    for i in range(1, 6):
        for h in range(12, 16):
            b.record(i, "sms", DAY + timedelta(hours=h), plmn="208-01", cell=None)
    b.append_usage(lake)
    with pytest.raises(QualityGateFailed, match="row_count_band") as exc:
        publish(s)  # every partner: fr-orange is refused, the others still publish
    assert "published or unchanged: es-movistar, geo-insights, ott-streamflix" in str(exc.value)
    assert lake.exists("shares/es-movistar/roaming_settlement") and lake.exists("shares/geo-insights/location_footfall")
    assert lake.version("shares/fr-orange/roaming_records") == before
    assert lake.table("shares/fr-orange/roaming_records").count() == 15
    assert lake.version("shares/fr-orange/roaming_settlement") == before  # nothing of the partner was published


def test_raw_identifier_suite_catches_a_leak(shared):
    lake = shared.lake
    staged = "staging/shares/fr-orange/roaming_records"
    leak = pa.table({"record_id": ["R1", "R2"], "subscriber_ref": ["ab" * 32, msisdn(3)]})
    lake.write(staged, leak, mode="overwrite", metadata={"previous_rows": 0})
    outcome = run_suites_directly(lake, suites_for("fr-orange", "roaming_records", staged), [staged])
    assert not outcome.ok
    assert any("no_raw_identifiers" in f for f in outcome.failures)


def test_missing_secret_is_a_clear_error(shared, monkeypatch, tmp_path):
    monkeypatch.setenv("TELCOLAKE_SECRETS_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="TELCOLAKE_PARTNER_SECRET_FR_ORANGE"):
        publish(shared.settings, "fr-orange")
    monkeypatch.setenv("TELCOLAKE_PARTNER_SECRET_FR_ORANGE", "x" * 32)
    assert partner_secret(shared.settings, get_partner(shared.settings, "fr-orange")) == b"x" * 32


def test_registry_errors_name_the_key(shared, tmp_path, monkeypatch):
    bad = tmp_path / "partners.toml"
    bad.write_text('[partners.acme]\nkind = "roaming"\nplmns = ["20801"]\n')
    monkeypatch.setenv("TELCOLAKE_PARTNERS", str(bad))
    with pytest.raises(ConfigError, match=r"partners.acme.plmns"):
        load_partners(shared.settings)
    bad.write_text('[partners.acme]\nkind = "weather"\n')
    with pytest.raises(ConfigError, match=r"partners.acme.kind"):
        load_partners(shared.settings)


class TestUnchangedMeansUnchanged:
    """Maintenance (OPTIMIZE, VACUUM) never makes a new share version; a real change is written as its difference."""

    def test_maintenance_then_publish_without_new_data_changes_nothing(self, shared, tmp_path):
        import delta_sharing

        from pipelines.ingest.maintain import maintain_all
        from pipelines.sharing.manifest import history
        from tests.unit.sharing.conftest import running

        s, lake = shared.settings, shared.lake
        publish(s)
        b = Builder()
        b.n = 30_000
        b.record(7, "voice", DAY + timedelta(hours=14), duration_s=30, plmn="208-01", cell=None)
        b.append_usage(lake)
        publish(s)  # a MERGE: the share tables now have several files, worth compacting
        shares = [n for n in lake.list_tables() if n.startswith("shares/")]
        before = {n: lake.version(n) for n in shares}
        inputs_before = lake.version("silver/usage")
        manifests = {p: len(history(lake, p)) for p in load_partners(s)}
        maintain_all(s, retention_hours=0, force=True)  # compacts, checkpoints and vacuums every table: inputs and shares
        maintained = {n: lake.version(n) for n in shares}
        assert lake.version("silver/usage") > inputs_before and any(maintained[n] > before[n] for n in shares)
        results = publish(s)
        assert all(t.status == "unchanged" for r in results for t in r.tables) and len([t for r in results for t in r.tables]) == 7
        assert all(r.gate == "not needed (unchanged)" for r in results)
        assert {n: lake.version(n) for n in shares} == maintained  # no new version of any share table
        assert {p: len(history(lake, p)) for p in load_partners(s)} == manifests  # no new share manifest

        records = "shares/fr-orange/roaming_records"
        with running(shared, tmp_path) as srv:
            u = f"{srv.profile('fr-orange')}#fr-orange.telcolake.roaming_records"
            assert delta_sharing.get_table_version(u) == maintained[records]  # served across the maintenance commits
            assert len(delta_sharing.load_as_pandas(u)) == 16  # and its files survived the vacuum
            quiet = delta_sharing.load_table_changes_as_pandas(u, starting_version=before[records] + 1)
            assert len(quiet) == 0  # the change feed shows no row deleted and re-inserted
            b2 = Builder()
            b2.n = 40_000
            b2.record(8, "sms", DAY + timedelta(hours=16), plmn="208-01", cell=None)
            b2.record(9, "voice", DAY + timedelta(hours=16), duration_s=45, plmn="208-01", cell=None)
            b2.append_usage(lake)
            fr = publish(s, "fr-orange")[0]
            assert [t.status for t in fr.tables] == ["published", "published"]
            feed = delta_sharing.load_table_changes_as_pandas(u, starting_version=maintained[records] + 1)
            assert feed["_change_type"].tolist() == ["insert", "insert"] and sorted(feed["event_type"]) == ["sms", "voice"]
            settle = f"{srv.profile('fr-orange')}#fr-orange.telcolake.roaming_settlement"
            changed = delta_sharing.load_table_changes_as_pandas(settle, starting_version=maintained["shares/fr-orange/roaming_settlement"] + 1)
            assert sorted(changed["_change_type"]) == ["update_postimage", "update_preimage"]
            post = changed[changed["_change_type"] == "update_postimage"].iloc[0]
            assert (post["count_events"], post["count_subscribers"]) == (18, 8)

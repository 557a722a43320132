"""The saga's logic in memory (no Kafka): the vectorised paths agree with the reference machine, outcomes match
what was planted, a restart from a checkpoint replays to the same rows, bad input gets a reason."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
import polars as pl
import pytest

from pipelines.core.config import load_settings
from pipelines.core.errors import ConfigError
from pipelines.oss.config import FulfilmentConfig, ResponderConfig, fulfilment_config
from pipelines.oss.inmemory import InMemory
from pipelines.oss.order_sim import OrderSimConfig, simulate_orders
from pipelines.oss.saga import SagaLogic, as_tables

FCFG = FulfilmentConfig()
RCFG = ResponderConfig(permanent_rate=0.06, retryable_rate=0.1, exhausted_rate=0.04, slow_rate=0.05, timeout_rate=0.04,
                       lost_rate=0.04, duplicate_rate=0.1, stale_rate=0.1)
KEYS = {"orders": ["order_id"], "transitions": ["transition_id"], "commands": ["command_id", "attempt"], "jeopardy": ["alert_id"]}
ENC = msgspec.json.Encoder()


@pytest.fixture(scope="module")
def sim():
    return simulate_orders(OrderSimConfig(orders=100, seed=3), FCFG, RCFG)


@pytest.fixture(scope="module")
def fast(sim):
    m = InMemory(FCFG, RCFG, shards=3)
    m.run(sim.records)
    return m


def test_vectorised_paths_agree_with_the_reference_machine(sim, fast):
    slow = InMemory(FCFG, RCFG, shards=3, fast=False)
    slow.run(sim.records)
    for name, keys in KEYS.items():  # the paths emit commands in another order: answers arrive at other offsets
        a, b = (m.table(name).sort(keys).drop("received_at", strict=False) for m in (fast, slow))
        assert a.equals(b), name
    for topic in ("provisioning.commands", "bss.events", "orders.state", "orders.jeopardy"):
        assert sorted(fast.topics[topic]) == sorted(slow.topics[topic]), topic
    verdicts = lambda m: sorted(m.table("results").select("result_id", "verdict").rows())  # noqa: E731
    assert verdicts(fast) == verdicts(slow)


def test_outcomes_match_what_was_planted(sim, fast):
    p = sim.planted
    states = dict(fast.table("orders").group_by("state").len().iter_rows())
    assert states == {k: v for k, v in {"completed": p["expect_completed"], "failed": p["expect_failed"], "held": p["expect_held"],
                                        "cancelled": p["expect_cancelled"]}.items() if v}
    assert fast.table("jeopardy").height == p["expect_jeopardy"] > 0
    assert fast.table("orders")["retries"].sum() == p["expect_retries"] > 0
    assert fast.counts["rejected_orders"] == p["malformed"] > 0
    assert max(fast.ledger.effects.values()) == 1


def test_a_restart_from_a_checkpoint_replays_to_the_same_rows(sim):
    """Record every input batch of a run; then run again, checkpoint midway, lose the next batches' state (a crash
    after their outputs were written), restore and replay: the tables MERGE to the same rows, the messages repeat."""
    m = InMemory(FCFG, RCFG, shards=1)
    batches: list[tuple[str, list]] = []
    feed = m.feed

    def recording(topic, records):
        batches.append((topic, list(records)))
        feed(topic, records)

    m.feed = recording
    m.run(sim.records)
    again = InMemory(FCFG, RCFG, shards=1)
    cut = len(batches) // 2
    for topic, records in batches[:cut]:
        again.feed(topic, records)
    saved, positions = as_tables(again.logics[0].snapshot()), dict(again.offsets)
    for topic, records in batches[cut:cut + 5]:  # processed, outputs written, then the process dies
        again.feed(topic, records)
    restored = SagaLogic(FCFG)
    restored.restore(copy.deepcopy(saved))
    again.logics, again.offsets = [restored], positions  # the restart reads on from the checkpointed offsets
    for topic, records in batches[cut:]:
        again.feed(topic, records)
    for name, keys in KEYS.items():
        assert again.table(name).sort(keys).equals(m.table(name).sort(keys)), name
    assert len(again.topics["provisioning.commands"]) > len(m.topics["provisioning.commands"])  # resent after the restart
    assert set(again.topics["provisioning.commands"]) == set(m.topics["provisioning.commands"])  # ... the same commands


def _order(oid: str, items: list[dict], at: datetime, **kw) -> tuple[bytes, bytes]:
    return oid.encode(), ENC.encode({"event_id": f"E{oid}", "order_id": oid, "kind": "order", "requested_at": at.isoformat(),
                                     "account_id": "ACC1", "subscriber_id": "SUB1", "channel": "web", "items": items, **kw})


AT = datetime(2026, 10, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize(("items", "reason"), [
    ([], "missing_field:items"),
    ([{"item_id": "1", "action": "add", "product": "mobile_line", "plan_id": "lite", "imsi": "1"}], "missing_field:items.msisdn"),
    ([{"item_id": "1", "action": "add", "product": "tv"}], "unknown_enum:items.product"),
    ([{"item_id": "1", "action": "add", "product": "plan", "plan_id": "max"}], "bad_item:plan.add"),
    ([{"action": "add", "product": "ott_bundle", "ott_partner_id": "ott-musicbox"}], "missing_field:items.item_id"),
    ([{"item_id": "1", "action": "add", "product": "ott_bundle", "ott_partner_id": "ott-musicbox"},
      {"item_id": "1", "action": "delete", "product": "ott_bundle", "ott_partner_id": "ott-gamecloud"}], "bad_item:duplicate_item_id"),
])
def test_an_order_that_cannot_be_fulfilled_is_quarantined_with_its_reason(items, reason):
    m = InMemory(FCFG, RCFG)
    good = _order("OK", [{"item_id": "1", "action": "add", "product": "ott_bundle", "ott_partner_id": "ott-musicbox"}], AT)
    m.feed("orders.events", [_order("BAD", items, AT), good])
    assert m.table("quarantine").select("entity_id", "reason").rows() == [("BAD", reason)]
    assert m.table("orders")["order_id"].to_list() == ["OK"]


def test_requests_that_do_not_apply_are_recorded_not_applied():
    m = InMemory(FCFG, replace(RCFG, permanent_rate=0, retryable_rate=0, exhausted_rate=0, slow_rate=0, timeout_rate=0, lost_rate=0))
    m.run([_order("A", [{"item_id": "1", "action": "add", "product": "ott_bundle", "ott_partner_id": "ott-musicbox"}], AT)])
    retry = {"event_id": "R", "order_id": "A", "kind": "retry", "requested_at": (AT + timedelta(hours=1)).isoformat()}
    late = {"event_id": "C", "order_id": "A", "kind": "cancel", "requested_at": (AT + timedelta(hours=1)).isoformat()}
    m.feed("orders.events", [(b"A", ENC.encode(retry)), (b"A", ENC.encode(late))])
    t = m.table("transitions").sort("seq")
    assert t["kind"].to_list()[-2:] == ["retry_rejected", "cancel_rejected"]
    assert t["reason"].to_list()[-2:] == ["not held: completed", "already completed"]
    assert m.table("orders")["state"].to_list() == ["completed"]


def test_config_errors_are_one_line(tmp_path, monkeypatch):
    path = tmp_path / "t.toml"
    path.write_text('[fulfilment]\nsla_share = 1.5\n')
    monkeypatch.setenv("TELCOLAKE_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"fulfilment.sla_share = 1.5: expected a finite number in \(0, 1\)"):
        fulfilment_config(load_settings())
    path.write_text('[fulfilment.timeouts]\nsmsc = 3\n')
    with pytest.raises(ConfigError, match="fulfilment.timeouts.smsc: unknown key; allowed: hss, ott, pcrf, sim"):
        fulfilment_config(load_settings())
    path.write_text('[fulfilment]\nmax_attemps = 3\n')
    with pytest.raises(ConfigError, match="fulfilment.max_attemps: unknown key"):
        fulfilment_config(load_settings())


def test_the_state_round_trips_through_a_checkpoint(fast):
    logic = fast.logics[0]
    again = SagaLogic(FCFG)
    again.restore(as_tables(logic.snapshot()))
    for a, b in zip(as_tables(logic.snapshot()).values(), as_tables(again.snapshot()).values(), strict=True):
        assert pl.from_arrow(a).equals(pl.from_arrow(b))
    assert again.clock == logic.clock is not None

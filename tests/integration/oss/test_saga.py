"""The saga on the real broker and real Delta tables, case by case: one run of hand-made orders whose planted
fates are known, then the human step (retry and cancel of held orders), then replay and the BSS round trip."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from pipelines.core.contracts import RESULTS
from pipelines.core.lake import Lake
from pipelines.oss import cancel_order, kpis, read_state_topic, retry_order, simulate_fulfilment
from pipelines.oss.config import fulfilment_config
from pipelines.oss.tables import COMMANDS, JEOPARDY, ORDERS, TRANSITIONS
from pipelines.oss.tables import RESULTS as RESULTS_TABLE
from tests.helpers import produce
from tests.integration.oss.conftest import (
    ENC,
    T0,
    cancel,
    iso,
    line,
    order,
    pick,
    read_topic,
    tuned,
)


@pytest.fixture(scope="module")
def run(module_env, kafka):
    """Phase 1: every case in one run; phase 2: retry one held order, cancel another."""
    s = tuned()
    ids = {
        "happy": pick(s, "happy", "ok", 4),
        "retry": pick(s, "retry", "retryable", 3, fault_seq=1, retries=2),
        "permanent": pick(s, "perm", "permanent", 4, fault_seq=3),
        "cancel": pick(s, "cancel", "ok", 4),
        "lost": pick(s, "lost", "lost", 1, fault_seq=0),
        "slow": pick(s, "slow", "slow", 1, fault_seq=0),
        "late": pick(s, "late", "timeout", 1, fault_seq=0),
        "held_retry": pick(s, "heldr", "exhausted", 1, fault_seq=0),
        "held_cancel": pick(s, "heldc", "exhausted", 3, fault_seq=1),
    }
    plan = [{"item_id": "1", "action": "modify", "product": "plan", "plan_id": "max", "from_plan_id": "lite"}]
    records = [
        order(ids["happy"], line(1, ott=True), T0, sub="SUB7000001"),
        order(ids["retry"], line(2), T0 + timedelta(seconds=1), sub="SUB7000002"),
        order(ids["permanent"], line(3, ott=True), T0 + timedelta(seconds=2), sub="SUB7000003", channel="shop"),
        order(ids["cancel"], line(4, ott=True), T0 + timedelta(seconds=3), sub="SUB7000004"),
        cancel(ids["cancel"], T0 + timedelta(seconds=3, milliseconds=500)),
        order(ids["lost"], plan, T0 + timedelta(seconds=4), sub="SUB7000005"),
        order(ids["slow"], plan, T0 + timedelta(seconds=5), sub="SUB7000006"),
        order(ids["late"], plan, T0 + timedelta(seconds=6), sub="SUB7000007"),
        order(ids["held_retry"], [{"item_id": "1", "action": "add", "product": "ott_bundle", "ott_partner_id": "ott-gamecloud"}],
              T0 + timedelta(seconds=7), sub="SUB7000008"),
        order(ids["held_cancel"], line(9), T0 + timedelta(seconds=8), sub="SUB7000009"),
        (b"bad-1", b"{not json"),
        order("no-msisdn", [{k: v for k, v in line(10)[0].items() if k != "msisdn"}], T0, sub="SUB7000010"),
        order("no-items", [], T0, sub="SUB7000011"),
        order(ids["happy"], line(1), T0 + timedelta(seconds=9)),  # the same order id again
        cancel("never-ordered", T0),
    ]
    # A result for a command nobody sent, and a malformed one, before anything runs.
    stray = ENC.encode({"result_id": "ghost:1", "command_id": "ghost:0:sim_reserve:apply", "order_id": "ghost", "attempt": 1,
                        "status": "done", "completed_at": iso(T0)})
    produce(kafka, s.topic(RESULTS.topic), [stray, b'{"result_id": 5}'], partitions=1)
    first = simulate_fulfilment(s, records=records, extra_in={"results": 2})
    lake = Lake.from_settings(s)
    phase1 = {t: pl.from_arrow(lake.read(t)) for t in (ORDERS, TRANSITIONS, COMMANDS, JEOPARDY, RESULTS_TABLE, "quarantine/streams")}
    retry_order(s, ids["held_retry"], note="partner fixed")
    cancel_order(s, ids["held_cancel"], note="customer gave up")
    second = simulate_fulfilment(s, records=[], extra_in={"orders": 2})
    return {"settings": s, "ids": ids, "phase1": phase1, "first": first, "second": second, "lake": lake, "kafka": kafka}


def _order(run, name: str, phase1: bool = False) -> dict:
    orders = run["phase1"][ORDERS] if phase1 else pl.from_arrow(run["lake"].read(ORDERS))
    return orders.filter(pl.col("order_id") == run["ids"][name]).to_dicts()[0]


def _transitions(run, name: str) -> list[str]:
    t = pl.from_arrow(run["lake"].read(TRANSITIONS)).filter(pl.col("order_id") == run["ids"][name]).sort("seq")
    return t["kind"].to_list()


def _commands(run, name: str) -> list[tuple[int, str, int]]:
    """(step_seq, action, attempt) of every command sent for the order, in the order it went out."""
    topic = run["settings"].topic("provisioning.commands")
    return [(v["step_seq"], v["action"], v["attempt"]) for _, v, _ in read_topic(run["kafka"], topic) if v["order_id"] == run["ids"][name]]


def test_happy_path_runs_four_steps_in_order_and_tells_the_bss(run):
    o = _order(run, "happy")
    assert o["state"] == "completed" and o["step_count"] == 4 and o["retries"] == 0 and o["jeopardies"] == 0
    assert _commands(run, "happy") == [(0, "apply", 1), (1, "apply", 1), (2, "apply", 1), (3, "apply", 1)]
    assert _transitions(run, "happy") == ["received"] + ["step_sent", "step_done"] * 4 + ["completed"]
    assert o["lead_time_s"] == pytest.approx((o["completed_at"] - o["requested_at"]).total_seconds())
    bss = [v for _, v, _ in read_topic(run["kafka"], run["settings"].topic("bss.events")) if v["attributes"].get("order_id") == o["order_id"]]
    kinds = sorted((b["kind"], b["occurred_at"]) for b in bss)
    stamp = iso(o["completed_at"])
    assert kinds == [("activated", stamp), ("ott_activated", stamp)]
    activated = next(b for b in bss if b["kind"] == "activated")
    assert activated["plan_id"] == "plus" and activated["attributes"]["msisdn"] == "491517000001"


def test_a_retryable_failure_is_retried_with_backoff(run):
    o = _order(run, "retry")
    assert o["state"] == "completed" and o["retries"] == 2
    assert _commands(run, "retry") == [(0, "apply", 1), (1, "apply", 1), (1, "apply", 2), (1, "apply", 3), (2, "apply", 1)]
    t = pl.from_arrow(run["lake"].read(TRANSITIONS)).filter(pl.col("order_id") == o["order_id"]).sort("seq")
    failed = t.filter(pl.col("kind") == "step_retryable")["event_at"].to_list()
    resent = t.filter((pl.col("kind") == "step_sent") & (pl.col("step_seq") == 1) & (pl.col("attempt") > 1))["event_at"].to_list()
    cfg = fulfilment_config(run["settings"])
    assert [b - a for a, b in zip(failed, resent, strict=True)] == [timedelta(seconds=cfg.backoff_s), timedelta(seconds=cfg.backoff_s * 2)]


def test_a_permanent_failure_compensates_the_applied_steps_in_reverse_order(run):
    o = _order(run, "permanent")
    assert o["state"] == "failed" and o["failed_step"] == "ott_activation" and o["failure_reason"] == "ott_activation:partner_rejected"
    assert _commands(run, "permanent") == [(0, "apply", 1), (1, "apply", 1), (2, "apply", 1), (3, "apply", 1),
                                           (2, "compensate", 1), (1, "compensate", 1), (0, "compensate", 1)]
    assert _transitions(run, "permanent")[-3:] == ["compensation_sent", "compensated", "failed"]
    bss = [v for _, v, _ in read_topic(run["kafka"], run["settings"].topic("bss.events")) if v["attributes"].get("order_id") == o["order_id"]]
    assert bss == []  # nothing to tell the BSS: the order was rolled back


def test_a_cancellation_in_flight_compensates_what_was_applied(run):
    o = _order(run, "cancel")
    assert o["state"] == "cancelled" and o["cancel_requested_at"] is not None
    sent = _commands(run, "cancel")
    applied = [s for s, a, _ in sent if a == "apply"]
    undone = [s for s, a, _ in sent if a == "compensate"]
    assert applied and undone == sorted(applied, reverse=True) and len(applied) < 4
    assert "cancel_requested" in _transitions(run, "cancel")


def test_jeopardy_at_the_sla_share_and_timeout_then_retry(run):
    cfg = fulfilment_config(run["settings"])
    j = pl.from_arrow(run["lake"].read(JEOPARDY))
    for name in ("lost", "slow", "late"):
        o = _order(run, name)
        alerts = j.filter(pl.col("order_id") == o["order_id"]).to_dicts()
        assert o["state"] == "completed" and len(alerts) == 1 and alerts[0]["status"] == "cleared", name
        first_sent = pl.from_arrow(run["lake"].read(TRANSITIONS)).filter(
            (pl.col("order_id") == o["order_id"]) & (pl.col("kind") == "step_sent")).sort("seq")["event_at"][0]
        timeout = timedelta(seconds=cfg.timeouts["pcrf"])
        assert alerts[0]["raised_at"] == first_sent + timeout * cfg.sla_share, name
    # lost: the clock timed it out (no result ever came), then the retry succeeded
    lost = pl.from_arrow(run["lake"].read(TRANSITIONS)).filter(pl.col("order_id") == run["ids"]["lost"]).sort("seq")
    assert lost["kind"].to_list() == ["received", "step_sent", "step_timed_out", "step_sent", "step_done", "completed"]
    assert lost.filter(pl.col("kind") == "step_timed_out")["trigger"].to_list() == ["clock"]
    # late: the answer came after the timeout: treated as failed, retried; the target had applied it once
    late = _order(run, "late")
    assert late["retries"] == 1 and "step_timed_out" in _transitions(run, "late")
    results = pl.from_arrow(run["lake"].read(RESULTS_TABLE)).filter(pl.col("order_id") == late["order_id"]).sort("attempt")
    assert results["verdict"].to_list()[0] == "late" and results["effect"].to_list() == ["applied", "replayed"]
    # slow: in jeopardy, no retry
    assert _order(run, "slow")["retries"] == 0


def test_retries_exhausted_hold_the_order_then_the_human_step(run):
    held = _order(run, "held_retry", phase1=True)
    assert held["state"] == "held" and held["attempt"] == 4 and held["failure_reason"].startswith("retries_exhausted:ott_activation")
    assert _order(run, "held_cancel", phase1=True)["state"] == "held"
    resumed = _order(run, "held_retry")
    assert resumed["state"] == "completed" and resumed["attempt"] == 5  # resumed at its step, not from the start
    assert _commands(run, "held_retry") == [(0, "apply", a) for a in range(1, 6)]
    gave_up = _order(run, "held_cancel")
    assert gave_up["state"] == "cancelled"
    assert [c for c in _commands(run, "held_cancel") if c[1] == "compensate"] == [(0, "compensate", 1)]


def test_bad_input_is_quarantined_with_a_reason_and_a_stray_result_recorded_not_applied(run):
    q = run["phase1"]["quarantine/streams"].filter(pl.col("flow") == "fulfilment")
    reasons = sorted(q["reason"].to_list())
    assert reasons == sorted(["decode:malformed_json", "missing_field:items.msisdn", "missing_field:items", "duplicate_order",
                              "unknown_order", "decode:bad_type:result_id"])
    results = run["phase1"][RESULTS_TABLE]
    ghost = results.filter(pl.col("order_id") == "ghost").to_dicts()
    assert [g["verdict"] for g in ghost] == ["unknown_command"]
    assert "ghost" not in run["phase1"][ORDERS]["order_id"].to_list()
    verdicts = set(results["verdict"].to_list())
    assert {"applied", "late", "not_awaited", "unknown_command"} <= verdicts  # duplicates and stale re-sends were planted


def test_no_effect_applied_twice(run):
    for stats in (run["first"].responders, run["second"].responders):
        assert stats.ledger.effects and max(stats.ledger.effects.values()) == 1
    results = pl.from_arrow(run["lake"].read(RESULTS_TABLE))
    # a planted duplicate delivers one answer twice (one result_id); two answers that both applied would be two effects
    applied = results.filter(pl.col("effect") == "applied").unique("result_id").group_by("command_id").len()
    assert applied["len"].max() == 1 and applied.height == sum(run["second"].responders.ledger.effects.values())
    assert results.group_by("result_id").len()["len"].max() > 1  # duplicates were delivered


def test_the_state_topic_rebuilds_the_orders_table(run):
    table = pl.from_arrow(run["lake"].read(ORDERS)).sort("order_id")
    rebuilt = pl.from_arrow(read_state_topic(run["settings"])).sort("order_id")
    assert rebuilt.height == table.height == 9
    assert rebuilt.equals(table)


def test_quality_suites_and_kpis_over_the_run(run):
    from quality.runner import run_gate

    gate = run_gate(run["settings"], [ORDERS, TRANSITIONS, COMMANDS, RESULTS_TABLE, JEOPARDY], raise_on_failure=False)
    assert gate.ok, gate.failures
    assert len([s for s in gate.suites if s.startswith("oss.")]) == 7
    k = kpis(run["settings"])
    lead = k["lead_time"].to_pylist()
    assert sum(r["count_completed"] for r in lead) == 6
    fallout = {(r["step"], r["target"]): r for r in k["fallout"].to_pylist()}
    assert fallout[("ott_activation", "ott:ott-musicbox")]["count_fallout"] == 1
    assert k["stuck_orders"].num_rows == 0


def test_the_bss_round_trip_billing_sees_the_real_activation_time(run):
    from pipelines.ingest import run_ingest
    from pipelines.ingest.silver import refresh

    s = run["settings"]
    run_ingest(s, until_caught_up=True)
    refresh(s)
    subs = pl.from_arrow(run["lake"].read("silver/subscribers")).filter(pl.col("subscriber_id") == "SUB7000001")
    o = _order(run, "happy")
    assert subs["activated_at"].to_list() == [o["completed_at"]] and subs["plan_id"].to_list() == ["plus"]
    assert subs["msisdn"].to_list() == ["491517000001"]


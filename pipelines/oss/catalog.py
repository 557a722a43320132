"""The fulfilment catalog: how an order item decomposes into provisioning steps, and what it tells the BSS.

An order's steps form one chain in dependency order: a new line first (SIM reserve -> HSS
profile -> PCRF policy), then plan changes and OTT bundles (which need the line), a
termination last. Each step has the operation its target applies and the one that undoes it
(the saga's compensation). On completion every item becomes one lifecycle event on
``bss.events`` of a kind the BSS already understands.
"""

from __future__ import annotations

import polars as pl

# (product, action) -> [(step, target kind, operation, undo operation)]
STEPS: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {
    ("mobile_line", "add"): [
        ("sim_reserve", "sim", "reserve", "release"),
        ("hss_profile", "hss", "create_profile", "delete_profile"),
        ("pcrf_policy", "pcrf", "set_policy", "remove_policy"),
    ],
    ("plan", "modify"): [("pcrf_plan", "pcrf", "set_policy", "restore_policy")],
    ("ott_bundle", "add"): [("ott_activation", "ott", "activate", "deactivate")],
    ("ott_bundle", "delete"): [("ott_deactivation", "ott", "deactivate", "reactivate")],
    ("mobile_line", "delete"): [
        ("pcrf_removal", "pcrf", "remove_policy", "restore_policy"),
        ("hss_removal", "hss", "delete_profile", "restore_profile"),
        ("sim_release", "sim", "release", "re_reserve"),
    ],
}
# Dependency rank of an item: lower ranks are fulfilled first.
RANK = {("mobile_line", "add"): 0, ("plan", "modify"): 1, ("ott_bundle", "add"): 2, ("ott_bundle", "delete"): 2, ("mobile_line", "delete"): 3}
BSS_KIND = {("mobile_line", "add"): "activated", ("plan", "modify"): "plan_changed", ("ott_bundle", "add"): "ott_activated",
            ("ott_bundle", "delete"): "ott_deactivated", ("mobile_line", "delete"): "terminated"}
ORDER_TYPE = {("mobile_line", "add"): "new_line", ("plan", "modify"): "plan_change", ("ott_bundle", "add"): "ott_add",
              ("ott_bundle", "delete"): "ott_remove", ("mobile_line", "delete"): "termination"}
# Item characteristics an item of that kind must carry.
REQUIRED = {("mobile_line", "add"): ("plan_id", "msisdn", "imsi"), ("plan", "modify"): ("plan_id",),
            ("ott_bundle", "add"): ("ott_partner_id",), ("ott_bundle", "delete"): ("ott_partner_id",), ("mobile_line", "delete"): ()}
CHARACTERISTICS = ("plan_id", "from_plan_id", "ott_partner_id", "msisdn", "imsi", "country", "currency", "segment", "reason")


def step_frame() -> pl.DataFrame:
    """The catalog as a frame: one row per (product, action, step_in_item)."""
    rows = [
        {"product": p, "action": a, "step_in_item": i, "step": s, "target_kind": t, "operation": op, "undo": undo,
         "rank": RANK[(p, a)], "bss_kind": BSS_KIND[(p, a)], "order_type": ORDER_TYPE[(p, a)]}
        for (p, a), steps in STEPS.items()
        for i, (s, t, op, undo) in enumerate(steps)
    ]
    return pl.DataFrame(rows, schema={"product": pl.String, "action": pl.String, "step_in_item": pl.Int32, "step": pl.String,
                                      "target_kind": pl.String, "operation": pl.String, "undo": pl.String, "rank": pl.Int32,
                                      "bss_kind": pl.String, "order_type": pl.String})

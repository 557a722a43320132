"""Order intake, vectorised: check a batch of product orders and decompose each into its chain of steps.

A record the decoder accepted can still be an order the orchestrator cannot fulfil: no
subscriber, no items, an item of an unknown product or action, a missing characteristic
(a new line without MSISDN), two items with one id. Such an order is quarantined with the
first reason (``missing_field:items.msisdn``, ``unknown_enum:items.product``,
``bad_item:plan.add``, ``bad_item:duplicate_item_id``) and the flow goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines.core.contracts import ITEM_ACTIONS, PRODUCTS
from pipelines.oss.catalog import CHARACTERISTICS, REQUIRED, STEPS, step_frame
from pipelines.oss.tables import ORDER_PL

UTC_US = pl.Datetime("us", "UTC")
STEP_PL = {"order_id": pl.String, "seq": pl.Int32, "item_id": pl.String, "step": pl.String, "target": pl.String,
           "operation": pl.String, "undo": pl.String, "payload": pl.String}
COMPLETION_PL = {"order_id": pl.String, "item_id": pl.String, "kind": pl.String, "plan_id": pl.String, "attributes": pl.String}
_CATALOG = step_frame()


@dataclass
class Intake:
    """A batch of new orders: their initial rows, steps and BSS completions, and the rejects.

    Attributes:
        orders: one row per accepted order (``gold/oss/orders`` columns), not yet sent.
        steps: the accepted orders' steps (``STEP_PL``).
        completions: the lifecycle events each accepted order sends the BSS when it completes.
        rejects: the input rows refused, with ``reason``.
    """

    orders: pl.DataFrame
    steps: pl.DataFrame
    completions: pl.DataFrame
    rejects: pl.DataFrame


def _first_reason(conditions: list[tuple[pl.Expr, str | pl.Expr]]) -> pl.Expr:
    expr = pl.lit(None, pl.String)
    for cond, why in reversed(conditions):
        expr = pl.when(cond).then(why if isinstance(why, pl.Expr) else pl.lit(why)).otherwise(expr)
    return expr


def _item_reasons(items: pl.DataFrame) -> pl.DataFrame:
    """Per item: the first thing wrong with it (null when fine)."""
    pairs = pl.concat_str([pl.col("product"), pl.col("action")], separator=".")
    known = [f"{p}.{a}" for p, a in STEPS]
    required: list[tuple[pl.Expr, str]] = []
    for (p, a), names in REQUIRED.items():
        for n in names:
            required.append(((pl.col("product") == p) & (pl.col("action") == a) & pl.col(n).is_null(), f"missing_field:items.{n}"))
    dup = pl.col("item_id").is_duplicated().over("_row")
    return items.with_columns(_first_reason([
        (pl.col("item_id").is_null(), "missing_field:items.item_id"),
        (pl.col("product").is_null(), "missing_field:items.product"),
        (pl.col("action").is_null(), "missing_field:items.action"),
        (~pl.col("product").is_in(list(PRODUCTS)), "unknown_enum:items.product"),
        (~pl.col("action").is_in(list(ITEM_ACTIONS)), "unknown_enum:items.action"),
        (~pairs.is_in(known), pl.lit("bad_item:") + pairs),
        *required,
        (dup, "bad_item:duplicate_item_id"),
    ]).alias("item_reason"))


def intake(events: pl.DataFrame) -> Intake:
    """Check and decompose order events (``kind = order``, decoded ``orders.events`` rows with ``_row``)."""
    order_reason = _first_reason([
        (pl.col("subscriber_id").is_null(), "missing_field:subscriber_id"),
        (pl.col("account_id").is_null(), "missing_field:account_id"),
        (pl.col("items").is_null() | (pl.col("items").list.len() == 0), "missing_field:items"),
    ])
    events = events.with_columns(order_reason.alias("reason"))
    items = (
        events.filter(pl.col("reason").is_null())
        .select("_row", "order_id", pl.col("items"))
        .with_columns(pl.int_ranges(pl.col("items").list.len()).alias("item_idx"))
        .explode("items", "item_idx")
        .unnest("items")
    )
    items = _item_reasons(items)
    bad_items = items.filter(pl.col("item_reason").is_not_null()).group_by("_row").agg(pl.col("item_reason").sort_by("item_idx").first())
    events = events.join(bad_items, on="_row", how="left").with_columns(pl.coalesce("reason", "item_reason").alias("reason")).drop("item_reason")
    rejects = events.filter(pl.col("reason").is_not_null())
    good = events.filter(pl.col("reason").is_null())
    items = items.join(good.select("_row"), on="_row", how="semi").drop("item_reason")

    steps = (
        items.join(_CATALOG, on=["product", "action"], how="inner")
        .sort("_row", "rank", "item_idx", "step_in_item")
        .with_columns(pl.int_range(pl.len()).over("_row").cast(pl.Int32).alias("seq"))
    )
    payload = pl.struct(["item_id", *CHARACTERISTICS]).struct.json_encode()
    target = pl.when(pl.col("target_kind") == "ott").then(pl.lit("ott:") + pl.col("ott_partner_id")).otherwise(pl.col("target_kind"))
    step_rows = steps.select("order_id", "seq", "item_id", "step", target.alias("target"), "operation", "undo", payload.alias("payload"))

    per_item = items.join(_CATALOG.filter(pl.col("step_in_item") == 0), on=["product", "action"], how="inner")
    completions = pl.concat([
        _completion(per_item, "activated", ["msisdn", "imsi", "country", "currency", "segment", "order_id"], plan=True),
        _completion(per_item, "plan_changed", [("from_plan", "from_plan_id"), "order_id"], plan=True),
        _completion(per_item, "ott_activated", ["ott_partner_id", "order_id"]),
        _completion(per_item, "ott_deactivated", ["ott_partner_id", "order_id"]),
        _completion(per_item, "terminated", ["reason", "order_id"]),
    ])
    first = per_item.sort("_row", "rank", "item_idx").group_by("_row", maintain_order=True).agg(
        pl.col("order_type").first(), pl.len().cast(pl.Int32).alias("item_count"))
    counts = steps.group_by("_row").agg(pl.len().cast(pl.Int32).alias("step_count"))
    orders = good.join(first, on="_row").join(counts, on="_row").sort("_row").select(
        "order_id", "event_id", "account_id", "subscriber_id", "channel", "order_type", "item_count",
        pl.lit("in_progress").alias("state"), pl.lit("apply").alias("phase"), pl.lit("none").alias("waiting"), "step_count",
        pl.lit(0, pl.Int32).alias("step_seq"), pl.lit(1, pl.Int32).alias("attempt"), pl.lit(0, pl.Int32).alias("attempt_base"),
        pl.lit(0, pl.Int32).alias("attempts_total"), pl.lit(0, pl.Int32).alias("retries"), pl.lit(False).alias("maybe_applied"),
        pl.lit(0, pl.Int32).alias("jeopardies"), "requested_at", pl.col("requested_at").alias("updated_at"),
        pl.lit(0, pl.Int32).alias("transitions"),
    )
    missing = {k: pl.lit(None, v) for k, v in ORDER_PL.items() if k not in orders.columns}
    orders = orders.with_columns(**missing).select(list(ORDER_PL)).cast(ORDER_PL)
    return Intake(orders=orders, steps=step_rows.cast(STEP_PL), completions=completions.cast(COMPLETION_PL), rejects=rejects)


def _completion(items: pl.DataFrame, kind: str, attrs: list, *, plan: bool = False) -> pl.DataFrame:
    rows = items.filter(pl.col("bss_kind") == kind)
    fields = [pl.col(a[1]).alias(a[0]) if isinstance(a, tuple) else pl.col(a) for a in attrs]
    return rows.select(
        "order_id", "item_id", pl.lit(kind).alias("kind"),
        (pl.col("plan_id") if plan else pl.lit(None, pl.String)).alias("plan_id"),
        pl.struct(fields).struct.json_encode().alias("attributes"),
    )

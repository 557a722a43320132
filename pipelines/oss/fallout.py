"""Fallout handling, the human step: list and show orders, retry a held order, cancel an order.

A retry or a cancel is an event on ``orders.events`` (``kind`` ``retry`` / ``cancel``, channel
``operator``): the orchestrator applies it like any other input, in order, exactly once. A
retried order resumes at the step it is held at; a cancelled one compensates what it applied.
The checks here read ``gold/oss/orders`` (up to one commit interval behind) so that an
obviously wrong request fails with a clear line; the orchestrator has the last word and
records a request it cannot honour as ``retry_rejected`` / ``cancel_rejected``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from pipelines.core.broker import client_config
from pipelines.core.config import Settings
from pipelines.core.contracts import ORDERS as ORDERS_CONTRACT
from pipelines.core.errors import FulfilmentError
from pipelines.core.lake import Lake
from pipelines.oss.tables import COMMANDS, JEOPARDY, ORDERS, STATES, TERMINAL, TRANSITIONS

LIST_COLUMNS = ["order_id", "order_type", "channel", "state", "current_step", "attempt", "retries", "jeopardies",
                "failure_reason", "requested_at", "updated_at", "lead_time_s"]



def _orders(settings: Settings) -> pl.DataFrame:
    lake = Lake.from_settings(settings)
    if not lake.exists(ORDERS):
        raise FulfilmentError(f"no orders yet: {ORDERS} does not exist under {lake.root} (run `telcolake fulfil`)")
    return pl.from_arrow(lake.read(ORDERS))


def list_orders(settings: Settings, *, state: str | None = None, stuck: bool = False, limit: int = 50) -> pa.Table:
    """Orders, newest first: all, one ``state``, or the stuck ones (held, or a step in jeopardy).

    Raises:
        FulfilmentError: an unknown state, or no orders table yet.
    """
    if state is not None and state not in STATES:
        raise FulfilmentError(f"--state {state!r}: expected one of {', '.join(STATES)}")
    orders = _orders(settings)
    if state is not None:
        orders = orders.filter(pl.col("state") == state)
    if stuck:
        orders = orders.filter((pl.col("state") == "held") | (pl.col("jeopardy_id").is_not_null() & ~pl.col("state").is_in(list(TERMINAL))))
    return orders.sort("requested_at", "order_id", descending=True).head(limit).select(LIST_COLUMNS).to_arrow()


def show_order(settings: Settings, order_id: str) -> dict[str, Any]:
    """One order: its row, its transitions, the commands sent for it and its jeopardy alerts.

    Raises:
        FulfilmentError: no such order.
    """
    orders = _orders(settings).filter(pl.col("order_id") == order_id)
    if not orders.height:
        raise FulfilmentError(f"order {order_id!r} not found in {ORDERS}")
    lake = Lake.from_settings(settings)

    def rows(table: str, sort: list[str]) -> list[dict]:
        if not lake.exists(table):
            return []
        # filtered after the read: Arrow cannot prune the string_view statistics of MERGE-written files
        return pl.from_arrow(lake.read(table)).filter(pl.col("order_id") == order_id).sort(sort).to_dicts()

    return {"order": orders.to_dicts()[0], "transitions": rows(TRANSITIONS, ["seq"]),
            "commands": rows(COMMANDS, ["issued_at", "command_id", "attempt"]), "jeopardy": rows(JEOPARDY, ["raised_at"])}


def _request(settings: Settings, order_id: str, kind: str, note: str | None) -> dict[str, Any]:
    from confluent_kafka import Producer

    now = datetime.now(UTC)
    event = {"event_id": f"OP-{kind}-{uuid.uuid4().hex[:12]}", "order_id": order_id, "kind": kind,
             "requested_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "channel": "operator", "note": note}
    producer = Producer({**client_config(settings), "enable.idempotence": True})
    producer.produce(settings.topic(ORDERS_CONTRACT.topic), key=order_id.encode(), value=msgspec.json.encode(event))
    if producer.flush(30):
        raise FulfilmentError(f"the {kind} of {order_id} was not delivered to Kafka within 30 s")
    return event


def retry_order(settings: Settings, order_id: str, *, note: str | None = None) -> dict[str, Any]:
    """Ask the orchestrator to resume a held order at the step it is held at.

    Raises:
        FulfilmentError: no such order, or it is not held.
    """
    order = show_order(settings, order_id)["order"]
    if order["state"] != "held":
        raise FulfilmentError(f"order {order_id} is {order['state']}, not held: only a held order can be retried")
    return _request(settings, order_id, "retry", note)


def cancel_order(settings: Settings, order_id: str, *, note: str | None = None) -> dict[str, Any]:
    """Ask the orchestrator to cancel an order: it compensates what was applied, in reverse order.

    Raises:
        FulfilmentError: no such order, or it already ended.
    """
    order = show_order(settings, order_id)["order"]
    if order["state"] in TERMINAL:
        raise FulfilmentError(f"order {order_id} already {order['state']}: nothing to cancel")
    return _request(settings, order_id, "cancel", note)

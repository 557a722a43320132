"""The fulfilment tables (``gold/oss/...``) and output topics: names, schemas and keys.

``gold/oss/orders`` is also the value schema of ``orders.state`` (the current state of an order,
keyed by ``order_id``), and ``gold/oss/jeopardy`` (plus ``event`` and ``event_id``) the value
schema of ``orders.jeopardy``.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from pipelines.streams.state import Output

TS = pa.timestamp("us", tz="UTC")
ORDERS = "gold/oss/orders"
TRANSITIONS = "gold/oss/order_transitions"
JEOPARDY = "gold/oss/jeopardy"
COMMANDS = "gold/oss/commands"
RESULTS = "gold/oss/results"
STATE_TOPIC = "orders.state"
JEOPARDY_TOPIC = "orders.jeopardy"
TERMINAL = ("completed", "failed", "cancelled")
STATES = ("in_progress", "compensating", "held", *TERMINAL)

ORDER_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("event_id", pa.string()),  # of the order event that created it
        ("account_id", pa.string()),
        ("subscriber_id", pa.string()),
        ("channel", pa.string()),
        ("order_type", pa.string()),  # new_line | plan_change | ott_add | ott_remove | termination (first item)
        ("item_count", pa.int32()),
        ("state", pa.string()),  # in_progress | compensating | held | completed | failed | cancelled
        ("phase", pa.string()),  # apply | compensate
        ("waiting", pa.string()),  # result | retry | none
        ("step_count", pa.int32()),
        ("step_seq", pa.int32()),  # the step being applied (or compensated)
        ("current_step", pa.string()),
        ("current_target", pa.string()),
        ("attempt", pa.int32()),  # attempt of the current step's command
        ("attempt_base", pa.int32()),  # attempts before the last operator retry
        ("attempts_total", pa.int32()),  # commands sent for the order, all steps and attempts
        ("retries", pa.int32()),
        ("maybe_applied", pa.bool_()),  # the current step timed out: the target may have applied it
        ("command_id", pa.string()),  # the current (or last) command
        ("issued_at", TS),
        ("deadline_at", TS),
        ("jeopardy_at", TS),
        ("retry_at", TS),
        ("next_timer_at", TS),
        ("jeopardy_id", pa.string()),  # the open jeopardy alert, if any
        ("jeopardy_since", TS),
        ("jeopardies", pa.int32()),
        ("cancel_requested_at", TS),
        ("requested_at", TS),
        ("updated_at", TS),
        ("completed_at", TS),  # when it reached completed, failed or cancelled
        ("lead_time_s", pa.float64()),  # completed_at - requested_at of completed orders
        ("failure_reason", pa.string()),
        ("failed_step", pa.string()),
        ("transitions", pa.int32()),
    ]
)
TRANSITION_SCHEMA = pa.schema(
    [
        ("transition_id", pa.string()),  # <order_id>:<seq>
        ("order_id", pa.string()),
        ("seq", pa.int32()),
        ("kind", pa.string()),
        ("from_state", pa.string()),
        ("state", pa.string()),
        ("step_seq", pa.int32()),
        ("step", pa.string()),
        ("target", pa.string()),
        ("attempt", pa.int32()),
        ("command_id", pa.string()),
        ("reason", pa.string()),
        ("trigger", pa.string()),  # order | cancel | retry | result | clock
        ("event_at", TS),  # event time of the change
        ("received_at", TS),  # Kafka timestamp of the record that caused it (processing time)
    ]
)
TRANSITION_KINDS = (
    "received", "step_sent", "step_done", "step_retryable", "step_timed_out", "step_failed", "held", "retry_requested",
    "retry_rejected", "cancel_requested", "cancel_rejected", "compensation_started", "compensation_sent", "compensated",
    "completed", "failed", "cancelled",
)
COMMAND_SCHEMA = pa.schema(
    [
        ("command_id", pa.string()),
        ("attempt", pa.int32()),
        ("order_id", pa.string()),
        ("subscriber_id", pa.string()),
        ("step_seq", pa.int32()),
        ("step_count", pa.int32()),
        ("step", pa.string()),
        ("target", pa.string()),
        ("action", pa.string()),
        ("operation", pa.string()),
        ("issued_at", TS),
        ("payload", pa.string()),
    ]
)
RESULT_SCHEMA = pa.schema(
    [
        ("_kafka_partition", pa.int32()),
        ("_kafka_offset", pa.int64()),
        ("result_id", pa.string()),
        ("command_id", pa.string()),
        ("order_id", pa.string()),
        ("step_seq", pa.int32()),
        ("step", pa.string()),
        ("target", pa.string()),
        ("action", pa.string()),
        ("attempt", pa.int32()),
        ("status", pa.string()),
        ("error_code", pa.string()),
        ("effect", pa.string()),
        ("completed_at", TS),
        ("verdict", pa.string()),
        ("received_at", TS),
    ]
)
VERDICTS = ("applied", "late", "stale_attempt", "not_awaited", "after_end", "unknown_command")
JEOPARDY_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),  # jeopardy:<order_id>:<phase>:<step_seq>
        ("rule", pa.string()),  # step_sla
        ("severity", pa.string()),
        ("order_id", pa.string()),
        ("phase", pa.string()),
        ("step_seq", pa.int32()),
        ("step", pa.string()),
        ("target", pa.string()),
        ("status", pa.string()),  # open | cleared
        ("raised_at", TS),  # the step's SLA share point
        ("last_seen_at", TS),
        ("cleared_at", TS),
        ("cleared_by", pa.string()),  # the transition that resolved the step
    ]
)
OUTPUTS = {
    "orders": Output(ORDERS, ORDER_SCHEMA, ("order_id",)),
    "transitions": Output(TRANSITIONS, TRANSITION_SCHEMA, ("transition_id",)),
    "jeopardy": Output(JEOPARDY, JEOPARDY_SCHEMA, ("alert_id",)),
    "commands": Output(COMMANDS, COMMAND_SCHEMA, ("command_id", "attempt")),
    "results": Output(RESULTS, RESULT_SCHEMA, ("_kafka_partition", "_kafka_offset")),
}


def polars_schema(schema: pa.Schema) -> dict[str, pl.DataType]:
    """The Polars schema of an Arrow schema (to build empty and row-wise frames)."""
    return dict(pl.from_arrow(schema.empty_table()).schema)


ORDER_PL = polars_schema(ORDER_SCHEMA)
TRANSITION_PL = polars_schema(TRANSITION_SCHEMA)
COMMAND_PL = polars_schema(COMMAND_SCHEMA)
RESULT_PL = polars_schema(RESULT_SCHEMA)
JEOPARDY_PL = polars_schema(JEOPARDY_SCHEMA)

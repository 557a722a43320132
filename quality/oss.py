"""Quality suites guarding gold/oss: every order ended or alive with a live timer, no step applied without its
command, every compensation undoes a step that was (or may have been) applied."""

from __future__ import annotations

import duckdb
import great_expectations as gx
import pyarrow as pa

from pipelines.core.duck import query
from pipelines.core.lake import Lake
from pipelines.oss.tables import (
    COMMANDS,
    JEOPARDY,
    ORDERS,
    RESULTS,
    STATES,
    TRANSITION_KINDS,
    TRANSITIONS,
    VERDICTS,
)
from quality.core import Suite

E = gx.expectations


def connect(lake: Lake, views: dict[str, str], *, versions: dict[str, int]) -> duckdb.DuckDBPyConnection:
    """DuckDB over the pinned tables, read into Arrow (a query may scan a table twice; a dataset stream cannot)."""
    con = duckdb.connect()
    for view, table in views.items():
        con.register(view, lake.read(table, version=versions.get(table)))
    return con


def order_liveness(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """One row per order, ``problem`` null when it ended properly or is alive with a live timer."""
    con = connect(lake, {"orders": ORDERS}, versions=versions)
    return query(con, """
        select order_id, state, waiting,
               case
                   when state in ('completed', 'failed', 'cancelled') and completed_at is null then 'ended without completed_at'
                   when state = 'completed' and (lead_time_s is null or lead_time_s < 0) then 'completed without a lead time'
                   when state in ('in_progress', 'compensating') and waiting = 'result' and (command_id is null or deadline_at is null)
                       then 'in flight without a live timer (no command deadline)'
                   when state in ('in_progress', 'compensating') and waiting = 'retry' and retry_at is null
                       then 'in flight without a live timer (no retry time)'
                   when state in ('in_progress', 'compensating') and waiting not in ('result', 'retry') then 'in flight, waiting for nothing'
                   when state in ('in_progress', 'compensating') and next_timer_at is null then 'in flight without a live timer'
                   when state = 'held' and failure_reason is null then 'held without a reason'
               end as problem
        from orders
    """)


def applied_without_command(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """Results the orchestrator applied and steps it marked done, each with ``problem`` when no command was sent for it."""
    con = connect(lake, {"results": RESULTS, "commands": COMMANDS, "transitions": TRANSITIONS}, versions=versions)
    return query(con, """
        with applied as (
            select r.command_id, r.attempt, r.order_id, c.command_id is not null as has_command
            from results r
            left join commands c using (command_id, attempt)
            where r.verdict in ('applied', 'late')
        ),
        done_steps as (
            select t.order_id || ':' || t.step_seq || ':' || t.step || ':apply' as command_id, t.attempt, t.order_id,
                   c.command_id is not null as has_command
            from transitions t
            left join commands c on c.command_id = t.order_id || ':' || t.step_seq || ':' || t.step || ':apply' and c.attempt = t.attempt
            where t.kind = 'step_done'
        )
        select command_id, attempt, order_id,
               case when not has_command then 'a result applied for a command that was never sent' end as problem
        from applied
        union all
        select command_id, attempt, order_id,
               case when not has_command then 'a step marked done without its command' end as problem
        from done_steps
    """)


def unmatched_compensations(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """Compensation commands, ``problem`` when the step they undo was never applied (done) nor timed out (maybe applied)."""
    con = connect(lake, {"results": RESULTS, "commands": COMMANDS, "transitions": TRANSITIONS}, versions=versions)
    return query(con, """
        with compensations as (
            select distinct command_id, order_id, step_seq, step,
                   order_id || ':' || step_seq || ':' || step || ':apply' as apply_id
            from commands where action = 'compensate'
        ),
        applied as (
            select distinct command_id as apply_id from results
            where action = 'apply' and status = 'done' and verdict in ('applied', 'late')
            union
            select distinct order_id || ':' || step_seq || ':' || step || ':apply' from transitions where kind = 'step_timed_out'
        )
        select c.command_id, c.order_id, c.step,
               case when a.apply_id is null then 'compensates a step that was never applied' end as problem
        from compensations c
        left join applied a using (apply_id)
    """)


def jeopardy_problems(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """Jeopardy alerts, ``problem`` when a cleared one has no clear time or one ends before it is raised."""
    con = connect(lake, {"jeopardy": JEOPARDY}, versions=versions)
    return query(con, """
        select alert_id,
               case
                   when status = 'cleared' and cleared_at is null then 'cleared without cleared_at'
                   when cleared_at < raised_at then 'cleared before it was raised'
               end as problem
        from jeopardy
    """)


def _no_problem() -> list:
    return [E.ExpectColumnValuesToBeNull(column="problem")]


SUITES: list[Suite] = [
    Suite(
        name="oss.orders",
        table=ORDERS,
        expectations=lambda: [
            E.ExpectColumnValuesToNotBeNull(column="order_id"),
            E.ExpectColumnValuesToBeUnique(column="order_id"),
            E.ExpectColumnValuesToBeInSet(column="state", value_set=list(STATES)),
            E.ExpectColumnValuesToBeInSet(column="phase", value_set=["apply", "compensate"]),
            E.ExpectColumnValuesToBeInSet(column="waiting", value_set=["result", "retry", "none"]),
        ],
        description="an order twice or in an unknown state: pipelines/oss/saga.py, pipelines/oss/machine.py",
    ),
    Suite(
        name="oss.order_liveness",
        table=ORDERS,
        frame=order_liveness,
        expectations=_no_problem,
        description="an order neither ended nor alive with a live timer: it would never move again (pipelines/oss/machine.py)",
    ),
    Suite(
        name="oss.applied_steps",
        table=RESULTS,
        inputs=(COMMANDS, TRANSITIONS),
        frame=applied_without_command,
        expectations=_no_problem,
        description="a step applied without its command: results must match a command and attempt the orchestrator sent",
    ),
    Suite(
        name="oss.compensations",
        table=COMMANDS,
        inputs=(RESULTS, TRANSITIONS),
        frame=unmatched_compensations,
        expectations=_no_problem,
        description="a compensation that undoes nothing the saga applied: pipelines/oss/machine.py compensate_from",
    ),
    Suite(
        name="oss.transitions",
        table=TRANSITIONS,
        expectations=lambda: [
            E.ExpectColumnValuesToBeUnique(column="transition_id"),
            E.ExpectColumnValuesToBeInSet(column="kind", value_set=list(TRANSITION_KINDS)),
            E.ExpectColumnValuesToBeBetween(column="seq", min_value=1),
            E.ExpectColumnValuesToNotBeNull(column="event_at"),
        ],
        description="a transition twice or of an unknown kind: gold/oss/order_transitions",
    ),
    Suite(
        name="oss.results",
        table=RESULTS,
        expectations=lambda: [
            E.ExpectCompoundColumnsToBeUnique(column_list=["_kafka_partition", "_kafka_offset"]),
            E.ExpectColumnValuesToBeInSet(column="verdict", value_set=list(VERDICTS)),
        ],
        description="a provisioning result recorded twice or without a known verdict: gold/oss/results",
    ),
    Suite(
        name="oss.jeopardy",
        table=JEOPARDY,
        frame=jeopardy_problems,
        expectations=lambda: [E.ExpectColumnValuesToBeUnique(column="alert_id"), *_no_problem()],
        description="a jeopardy alert with a broken lifecycle: gold/oss/jeopardy",
    ),
]

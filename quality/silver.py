"""Quality suites guarding silver: usage unique by record_id, subscriber validity intervals that never overlap."""

from __future__ import annotations

import great_expectations as gx
import pyarrow as pa

from pipelines.core.contracts import USAGE
from pipelines.core.duck import connect, query
from pipelines.core.lake import Lake
from quality.bronze import contract_expectations
from quality.core import Suite

E = gx.expectations
SILVER_USAGE = "silver/usage"
SUBSCRIBERS = "silver/subscribers"
STATUSES = ["active", "suspended", "terminated"]


def interval_problems(lake: Lake, versions: dict[str, int]) -> pa.Table:
    """One row per subscriber interval with ``problem`` saying what is wrong with it (null = fine).

    Intervals of a subscriber, ordered by ``valid_from``, must each end (``valid_to``) after they
    start and no later than the next one starts; only the last may be open (``valid_to`` null)
    and it alone is ``is_current``.
    """
    con = connect(lake, {"subscribers": SUBSCRIBERS}, versions=versions)
    return query(con, """
        with intervals as (
            select subscriber_id, valid_from, valid_to, is_current,
                   lead(valid_from) over (partition by subscriber_id order by valid_from, valid_to nulls last) as next_from
            from subscribers
        ),
        judged as (
            select subscriber_id, valid_from, valid_to, next_from,
                   case
                       when valid_to is not null and valid_to <= valid_from then 'ends before it starts'
                       when next_from is not null and valid_to is null then 'open interval is not the last'
                       when next_from is not null and valid_to > next_from then 'overlaps the next interval'
                       when is_current is distinct from (valid_to is null) then 'is_current disagrees with valid_to'
                   end as why
            from intervals
        )
        select subscriber_id, valid_from, valid_to, next_from,
               case when why is not null then
                   subscriber_id || ' [' || strftime(valid_from at time zone 'UTC', '%Y-%m-%dT%H:%M:%S') || ', '
                   || coalesce(strftime(valid_to at time zone 'UTC', '%Y-%m-%dT%H:%M:%S'), 'open') || '): ' || why
               end as problem
        from judged
    """)


SUITES: list[Suite] = [
    Suite(
        name="silver.usage",
        table=SILVER_USAGE,
        expectations=lambda: [E.ExpectColumnValuesToBeUnique(column="record_id"), *contract_expectations(USAGE)],
        description="silver/usage must hold each record_id once and keep the usage contract: pipelines/ingest/silver.py",
    ),
    Suite(
        name="silver.subscribers",
        table=SUBSCRIBERS,
        expectations=lambda: [
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("subscriber_id", "account_id", "status", "valid_from")],
            E.ExpectColumnValuesToBeInSet(column="status", value_set=STATUSES),
            E.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "valid_from"]),
        ],
        description="a subscriber interval without key or status, or twice: the silver/subscribers model in pipelines/ingest/silver.py",
    ),
    Suite(
        name="silver.subscriber_intervals",
        table=SUBSCRIBERS,
        frame=interval_problems,
        expectations=lambda: [E.ExpectColumnValuesToBeNull(column="problem")],
        description="a subscriber's validity intervals overlap or are open in the middle: billing would pick two states",
    ),
]

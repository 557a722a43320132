"""Quality suites guarding the bronze topic tables: required ids and times, enums, ranges, Kafka coordinates."""

from __future__ import annotations

import great_expectations as gx

from pipelines.core.contracts import CONTRACTS, Contract
from quality.core import Suite, event_time_window

E = gx.expectations
KAFKA_COORDINATES = ["_kafka_topic", "_kafka_partition", "_kafka_offset"]
BRONZE_EXTRAS = ["_source", "_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp", "_source_row", "_ingested_at"]


def contract_expectations(contract: Contract) -> list[gx.expectations.Expectation]:
    """The contract's rules as expectations: required not null, enums, ranges, event-time window."""
    oldest, latest = event_time_window()
    out: list[gx.expectations.Expectation] = [E.ExpectColumnValuesToNotBeNull(column=c) for c in contract.required]
    out += [E.ExpectColumnValuesToBeInSet(column=c, value_set=list(allowed)) for c, allowed in contract.enums.items()]
    out += [
        E.ExpectColumnValuesToBeBetween(column=c, min_value=low, max_value=high)
        for c, (low, high) in contract.ranges.items()
    ]
    out.append(E.ExpectColumnValuesToBeBetween(column=contract.time_field, min_value=oldest, max_value=latest))
    return out


def bronze_expectations(contract: Contract) -> list[gx.expectations.Expectation]:
    """Contract rules plus the bronze columns: every Kafka record at most once, lineage present."""
    return [
        E.ExpectTableColumnsToMatchSet(column_set=[*contract.schema.names, *BRONZE_EXTRAS, contract.partition_column], exact_match=False),
        *contract_expectations(contract),
        E.ExpectColumnValuesToNotBeNull(column="_ingested_at"),
        E.ExpectColumnValuesToNotBeNull(column=contract.partition_column),
        E.ExpectColumnValuesToMatchRegex(column="_source", regex=r"^(?:kafka|file:.+)$"),
        # file rows carry no Kafka coordinates: only rows with all three are checked
        E.ExpectCompoundColumnsToBeUnique(column_list=KAFKA_COORDINATES, ignore_row_if="any_value_is_missing"),
    ]


def _suite(topic: str) -> Suite:
    contract = CONTRACTS[topic]
    return Suite(
        name=f"bronze.{topic}",
        table=f"bronze/{topic}",
        expectations=lambda: bronze_expectations(contract),
        description=f"a bronze {topic} row breaks the contract (pipelines/core/contracts.py) or a Kafka record landed twice (ingest offsets)",
    )


SUITES: list[Suite] = [_suite(topic) for topic in ("usage.events", "network.events", "bss.events")]

"""Topic contracts: one Arrow schema and one batch decoder per topic, used everywhere.

JSON on the wire. The decoder turns a list of raw Kafka values into an Arrow table of good
rows plus a list of rejects, each with a machine-readable reason:

``empty_value``, ``too_large``, ``invalid_utf8``, ``malformed_json``, ``not_object``,
``missing_field:<name>``, ``bad_type:<name>``, ``unknown_enum:<name>``,
``out_of_range:<name>``.

The fast path reads a whole batch with Arrow's JSON reader (C++), then checks required fields,
enums and ranges as Arrow compute kernels. Only a batch that Arrow refuses is split record by
record with msgspec (a compiled decoder) to find which records are bad and why; its good
records then go through the same Arrow reader and the same checks, so a record gets the same
verdict whatever batch it arrives in.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 4)
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

USAGE_TYPES = ("voice", "sms", "data")
DIRECTIONS = ("mo", "mt")
NETWORK_KINDS = ("kpi", "alarm")
SEVERITIES = ("critical", "major", "minor", "warning")
BSS_KINDS = (
    "activated",
    "plan_changed",
    "suspended",
    "resumed",
    "terminated",
    "payment",
    "payment_failed",
    "topup",
    "ticket_opened",
    "ticket_resolved",
    "ott_activated",
    "ott_deactivated",
)


# --- wire structs (msgspec): the slow path's record-by-record validator -------------------
# Timestamps are strings here; both paths parse them with the same Arrow cast.


class UsageEvent(msgspec.Struct):
    """A CDR/xDR on ``usage.events``."""

    record_id: str
    event_type: Literal["voice", "sms", "data"]
    subscriber_id: str
    msisdn: str
    started_at: str
    duration_s: Int64
    bytes_up: Int64
    bytes_down: Int64
    imsi: str | None = None
    called_number: str | None = None
    direction: Literal["mo", "mt"] | None = None
    cell_id: str | None = None
    visited_plmn: str | None = None
    ott_partner_id: str | None = None
    is_dropped: bool | None = None


class NetworkEvent(msgspec.Struct):
    """A cell KPI sample or alarm on ``network.events``."""

    event_id: str
    cell_id: str
    site_id: str
    observed_at: str
    kind: Literal["kpi", "alarm"]
    call_attempts: Int64 | None = None
    dropped_calls: Int64 | None = None
    prb_utilization: float | None = None
    latency_ms: float | None = None
    severity: Literal["critical", "major", "minor", "warning"] | None = None
    code: str | None = None
    cleared: bool | None = None


class BssEvent(msgspec.Struct):
    """A customer lifecycle event on ``bss.events``."""

    event_id: str
    subscriber_id: str
    account_id: str
    occurred_at: str
    kind: str
    plan_id: str | None = None
    amount: Decimal | None = None
    attributes: msgspec.Raw = msgspec.Raw(b"null")


@dataclass(frozen=True)
class Contract:
    """One topic's schema and rules.

    Attributes:
        topic: the Kafka topic.
        schema: the typed columns, in order (timestamps are UTC, money is decimal).
        id_field: the event's id column.
        time_field: the event-time column; bronze is partitioned by its date.
        required: columns that must be present and not null.
        enums: column -> allowed values.
        ranges: column -> (low, high) inclusive bounds; None means unbounded.
        struct: the msgspec struct that validates one record.
        json_fields: columns that hold an arbitrary JSON value, stored as JSON text.
        partition_column: the bronze partition column: ``event_date`` (day of the event
            time) or ``event_month`` (``YYYY-MM``) for topics whose history reaches back
            years (lifecycle events), so they do not split into thousands of tiny files.
    """

    topic: str
    schema: pa.Schema
    id_field: str
    time_field: str
    required: tuple[str, ...]
    enums: dict[str, tuple[str, ...]]
    ranges: dict[str, tuple[float | None, float | None]]
    struct: type[msgspec.Struct]
    json_fields: tuple[str, ...] = ()
    partition_column: str = "event_date"
    decoder: msgspec.json.Decoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", msgspec.json.Decoder(self.struct))

    @property
    def time_columns(self) -> list[str]:
        return [f.name for f in self.schema if f.type == TS]

    @property
    def wire_schema(self) -> pa.Schema:
        """The schema Arrow's JSON reader is given: timestamps and JSON fields as strings."""
        return pa.schema(
            [pa.field(f.name, pa.string()) if f.type == TS or f.name in self.json_fields else f for f in self.schema]
        )


USAGE = Contract(
    topic="usage.events",
    schema=pa.schema(
        [
            ("record_id", pa.string()),
            ("event_type", pa.string()),
            ("subscriber_id", pa.string()),
            ("msisdn", pa.string()),
            ("started_at", TS),
            ("duration_s", pa.int64()),
            ("bytes_up", pa.int64()),
            ("bytes_down", pa.int64()),
            ("imsi", pa.string()),
            ("called_number", pa.string()),
            ("direction", pa.string()),
            ("cell_id", pa.string()),
            ("visited_plmn", pa.string()),
            ("ott_partner_id", pa.string()),
            ("is_dropped", pa.bool_()),
        ]
    ),
    id_field="record_id",
    time_field="started_at",
    required=("record_id", "event_type", "subscriber_id", "msisdn", "started_at", "duration_s", "bytes_up", "bytes_down"),
    enums={"event_type": USAGE_TYPES, "direction": DIRECTIONS},
    ranges={"duration_s": (0, 30 * 86400), "bytes_up": (0, None), "bytes_down": (0, None)},
    struct=UsageEvent,
)

NETWORK = Contract(
    topic="network.events",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("cell_id", pa.string()),
            ("site_id", pa.string()),
            ("observed_at", TS),
            ("kind", pa.string()),
            ("call_attempts", pa.int64()),
            ("dropped_calls", pa.int64()),
            ("prb_utilization", pa.float64()),
            ("latency_ms", pa.float64()),
            ("severity", pa.string()),
            ("code", pa.string()),
            ("cleared", pa.bool_()),
        ]
    ),
    id_field="event_id",
    time_field="observed_at",
    required=("event_id", "cell_id", "site_id", "observed_at", "kind"),
    enums={"kind": NETWORK_KINDS, "severity": SEVERITIES},
    ranges={"call_attempts": (0, None), "dropped_calls": (0, None), "prb_utilization": (0, 100), "latency_ms": (0, None)},
    struct=NetworkEvent,
)

BSS = Contract(
    topic="bss.events",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("subscriber_id", pa.string()),
            ("account_id", pa.string()),
            ("occurred_at", TS),
            ("kind", pa.string()),
            ("plan_id", pa.string()),
            ("amount", MONEY),
            ("attributes", pa.string()),
        ]
    ),
    id_field="event_id",
    time_field="occurred_at",
    required=("event_id", "subscriber_id", "account_id", "occurred_at", "kind"),
    enums={"kind": BSS_KINDS},
    ranges={},
    struct=BssEvent,
    json_fields=("attributes",),
    partition_column="event_month",
)

CONTRACTS: dict[str, Contract] = {c.topic: c for c in (USAGE, NETWORK, BSS)}


# --- OSS fulfilment (pipelines/oss): product orders in, service/resource orders out -------

ORDER_KINDS = ("order", "cancel", "retry")
CHANNELS = ("web", "app", "shop", "callcentre", "partner", "operator")
ITEM_ACTIONS = ("add", "modify", "delete")
PRODUCTS = ("mobile_line", "plan", "ott_bundle")
COMMAND_ACTIONS = ("apply", "compensate")
RESULT_STATUSES = ("done", "failed", "retryable")
EFFECTS = ("applied", "replayed", "none")
ORDER_ITEM = pa.struct(
    [
        ("item_id", pa.string()),
        ("action", pa.string()),
        ("product", pa.string()),
        ("plan_id", pa.string()),
        ("from_plan_id", pa.string()),
        ("ott_partner_id", pa.string()),
        ("msisdn", pa.string()),
        ("imsi", pa.string()),
        ("country", pa.string()),
        ("currency", pa.string()),
        ("segment", pa.string()),
        ("reason", pa.string()),
    ]
)


class OrderItem(msgspec.Struct):
    """One item of a product order (TMF622 productOrderItem, product characteristics flattened)."""

    item_id: str | None = None
    action: str | None = None
    product: str | None = None
    plan_id: str | None = None
    from_plan_id: str | None = None
    ott_partner_id: str | None = None
    msisdn: str | None = None
    imsi: str | None = None
    country: str | None = None
    currency: str | None = None
    segment: str | None = None
    reason: str | None = None


class OrderEvent(msgspec.Struct):
    """A product order, or a cancellation or operator retry of one, on ``orders.events``."""

    event_id: str
    order_id: str
    kind: Literal["order", "cancel", "retry"]
    requested_at: str
    account_id: str | None = None
    subscriber_id: str | None = None
    channel: Literal["web", "app", "shop", "callcentre", "partner", "operator"] | None = None
    items: list[OrderItem] | None = None
    note: str | None = None


class ProvisioningCommand(msgspec.Struct):
    """A service/resource order to a network function or partner on ``provisioning.commands``."""

    command_id: str
    order_id: str
    step_seq: Int64
    step_count: Int64
    step: str
    target: str
    action: Literal["apply", "compensate"]
    operation: str
    attempt: Int64
    issued_at: str
    subscriber_id: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


class ProvisioningResult(msgspec.Struct):
    """A network function's or partner's answer to a command on ``provisioning.results``."""

    result_id: str
    command_id: str
    order_id: str
    attempt: Int64
    status: Literal["done", "failed", "retryable"]
    completed_at: str
    step_seq: Int64 | None = None
    step: str | None = None
    target: str | None = None
    action: Literal["apply", "compensate"] | None = None
    error_code: str | None = None
    effect: Literal["applied", "replayed", "none"] | None = None


class ClockTick(msgspec.Struct):
    """The orchestrator's clock on ``orders.clock``: timers fire when it passes their due time."""

    tick_id: str
    tick_at: str


ORDERS = Contract(
    topic="orders.events",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("order_id", pa.string()),
            ("kind", pa.string()),
            ("requested_at", TS),
            ("account_id", pa.string()),
            ("subscriber_id", pa.string()),
            ("channel", pa.string()),
            ("items", pa.list_(ORDER_ITEM)),
            ("note", pa.string()),
        ]
    ),
    id_field="event_id",
    time_field="requested_at",
    required=("event_id", "order_id", "kind", "requested_at"),
    enums={"kind": ORDER_KINDS, "channel": CHANNELS},
    ranges={},
    struct=OrderEvent,
)

COMMANDS = Contract(
    topic="provisioning.commands",
    schema=pa.schema(
        [
            ("command_id", pa.string()),
            ("order_id", pa.string()),
            ("subscriber_id", pa.string()),
            ("step_seq", pa.int32()),
            ("step_count", pa.int32()),
            ("step", pa.string()),
            ("target", pa.string()),
            ("action", pa.string()),
            ("operation", pa.string()),
            ("attempt", pa.int32()),
            ("issued_at", TS),
            ("payload", pa.string()),
        ]
    ),
    id_field="command_id",
    time_field="issued_at",
    required=("command_id", "order_id", "step_seq", "step_count", "step", "target", "action", "operation", "attempt", "issued_at"),
    enums={"action": COMMAND_ACTIONS},
    ranges={"step_seq": (0, 1000), "step_count": (1, 1000), "attempt": (1, 1_000_000)},
    struct=ProvisioningCommand,
    json_fields=("payload",),
)

RESULTS = Contract(
    topic="provisioning.results",
    schema=pa.schema(
        [
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
        ]
    ),
    id_field="result_id",
    time_field="completed_at",
    required=("result_id", "command_id", "order_id", "attempt", "status", "completed_at"),
    enums={"status": RESULT_STATUSES, "action": COMMAND_ACTIONS, "effect": EFFECTS},
    ranges={"attempt": (1, 1_000_000), "step_seq": (0, 1000)},
    struct=ProvisioningResult,
)

CLOCK = Contract(
    topic="orders.clock",
    schema=pa.schema([("tick_id", pa.string()), ("tick_at", TS)]),
    id_field="tick_id",
    time_field="tick_at",
    required=("tick_id", "tick_at"),
    enums={},
    ranges={},
    struct=ClockTick,
)

OSS_CONTRACTS: dict[str, Contract] = {c.topic: c for c in (ORDERS, COMMANDS, RESULTS, CLOCK)}
"""The fulfilment topics; not in CONTRACTS, which lists what ingest lands in bronze."""


def contract_for(topic: str) -> Contract:
    """The contract of ``topic`` (a configured topic name that starts or ends with the contract's).

    Raises:
        KeyError: no contract covers the topic.
    """
    if topic in CONTRACTS:
        return CONTRACTS[topic]
    for name, contract in CONTRACTS.items():
        if topic.startswith(name + ".") or topic.endswith("." + name):
            return contract
    raise KeyError(f"no contract for topic {topic!r}; known: {', '.join(CONTRACTS)}")


@dataclass
class Decoded:
    """The result of decoding one batch.

    Attributes:
        table: good rows, with the contract's schema.
        index: for each good row, its position in the input batch.
        rejects: (position in the input batch, reason) for every bad record.
        extra_fields: how many unknown fields were seen (and ignored) in good records.
    """

    table: pa.Table
    index: pa.Array
    rejects: list[tuple[int, str]]
    extra_fields: int = 0


@dataclass(frozen=True)
class Limits:
    """Bounds the decoder enforces beyond types: size and event-time window."""

    max_record_bytes: int = 1024 * 1024
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_skew: timedelta = timedelta(hours=24)


_MISSING = re.compile(r"missing required field `([^`]+)`")
_AT = re.compile(r"at `\$\.([A-Za-z0-9_]+)")


def _reason_from_validation(message: str, contract: Contract) -> str:
    missing = _MISSING.search(message)
    if missing:
        return f"missing_field:{missing.group(1)}"
    at = _AT.search(message)
    name = at.group(1) if at else "record"
    if message.startswith("Expected `object`"):
        return "not_object"
    if message.startswith("Invalid enum value"):
        return f"unknown_enum:{name}"
    if "got `null`" in message and name in contract.required:
        return f"missing_field:{name}"
    if message.startswith("Expected `int` >=") or message.startswith("Expected `int` <="):
        return f"out_of_range:{name}"
    return f"bad_type:{name}"


def _read_lines(contract: Contract, payload: bytes) -> pa.Table:
    return pj.read_json(
        io.BytesIO(payload),
        read_options=pj.ReadOptions(block_size=1 << 20),  # 1 MiB blocks parse on all cores
        parse_options=pj.ParseOptions(explicit_schema=contract.wire_schema, unexpected_field_behavior="infer"),
    )


def _count_extras(contract: Contract, table: pa.Table) -> tuple[pa.Table, int]:
    known = set(contract.schema.names)
    extra = [n for n in table.column_names if n not in known]
    count = sum(len(table[n]) - table[n].null_count for n in extra)
    table = table.select(contract.schema.names)
    wire = contract.wire_schema
    for i, f in enumerate(wire):
        if table.schema.field(i).type != f.type:  # unknown fields inside a list of structs (order items)
            table = table.set_column(i, f.name, _project(table.column(i), f.type))
            count += 1
    return table, count


def _project(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """A list<struct> column with only ``target``'s struct fields (Arrow's reader infers extra ones)."""
    if not (pa.types.is_list(target) and pa.types.is_struct(target.value_type)):
        raise pa.ArrowInvalid(f"cannot project {column.type} to {target}")
    struct = target.value_type
    chunks = []
    for chunk in column.chunks:
        values = chunk.values
        fields = [values.field(struct.field(j).name) if values.type.get_field_index(struct.field(j).name) >= 0
                  else pa.nulls(len(values), struct.field(j).type) for j in range(struct.num_fields)]
        inner = pa.StructArray.from_arrays([a.cast(struct.field(j).type) for j, a in enumerate(fields)], fields=list(struct),
                                           mask=values.is_null() if values.null_count else None)
        chunks.append(pa.ListArray.from_arrays(chunk.offsets, inner, type=target, mask=chunk.is_null() if chunk.null_count else None))
    return pa.chunked_array(chunks, target)


def _classify_slow(contract: Contract, values: list[bytes], positions: list[int]) -> tuple[list[int], list[bytes], list[tuple[int, str]]]:
    """Record by record: which values are well-typed objects (re-encoded without newlines)."""
    good_pos: list[int] = []
    good: list[msgspec.Struct] = []
    rejects: list[tuple[int, str]] = []
    decode = contract.decoder.decode
    for pos, value in zip(positions, values, strict=True):
        if not _is_utf8(value):
            rejects.append((pos, "invalid_utf8"))
            continue
        try:
            record = decode(value)
        except msgspec.ValidationError as exc:
            rejects.append((pos, _reason_from_validation(str(exc), contract)))
            continue
        except UnicodeDecodeError:
            rejects.append((pos, "invalid_utf8"))
            continue
        except msgspec.DecodeError:
            rejects.append((pos, "malformed_json" if _is_utf8(value) else "invalid_utf8"))
            continue
        why = _json_fields_to_text(contract, record)
        if why:
            rejects.append((pos, why))
            continue
        good_pos.append(pos)
        good.append(record)
    return good_pos, good, rejects


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_fields_to_text(contract: Contract, record: Any) -> str | None:
    """Store each JSON-object field as its JSON text (null stays null)."""
    for name in contract.json_fields:
        text = bytes(getattr(record, name)).decode().strip()
        if text == "null":
            setattr(record, name, None)
        elif text.startswith("{"):
            setattr(record, name, text)
        else:
            return f"bad_type:{name}"
    return None


def _check(contract: Contract, table: pa.Table, limits: Limits, now: pa.Scalar | pa.Array) -> tuple[pa.Table, pa.Array]:
    """Vectorised rules on a wire table: returns the typed table and a reason per row (null = ok)."""
    n = table.num_rows
    reason = pa.nulls(n, pa.string())

    def flag(mask: pa.Array, why: str) -> None:
        nonlocal reason
        mask = pc.fill_null(mask, False)
        reason = pc.if_else(pc.and_(mask, pc.is_null(reason)), pa.scalar(why), reason)

    for name in contract.required:
        flag(pc.is_null(table[name]), f"missing_field:{name}")
    for name, allowed in contract.enums.items():
        column = table[name]
        flag(pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=pa.array(allowed)))), f"unknown_enum:{name}")
    for name, (low, high) in contract.ranges.items():
        if low is not None:
            flag(pc.less(table[name], low), f"out_of_range:{name}")
        if high is not None:
            flag(pc.greater(table[name], high), f"out_of_range:{name}")
    columns = {}
    for name in contract.time_columns:
        raw = table[name]
        try:
            parsed = pc.cast(raw, TS)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pa.chunked_array([_cast_each(raw.combine_chunks())], TS)
            flag(pc.and_(pc.is_valid(raw), pc.is_null(parsed)), f"bad_type:{name}")
        low = pa.scalar(limits.min_event_time, TS)
        high = pc.add(now, pa.scalar(limits.max_future_skew, pa.duration("us")))
        flag(pc.or_(pc.less(parsed, low), pc.greater(parsed, high)), f"out_of_range:{name}")
        columns[name] = parsed
    typed = pa.table(
        {f.name: columns.get(f.name, table[f.name]) for f in contract.schema}, schema=contract.schema
    )
    return typed, reason


def _cast_each(raw: pa.Array) -> pa.Array:
    out = []
    for value in raw.to_pylist():
        try:
            out.append(pc.cast(pa.scalar(value, pa.string()), TS).value if value is not None else None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
    return pa.array(out, TS)


def decode_batch(
    contract: Contract,
    values: list[bytes | None],
    *,
    limits: Limits = Limits(),
    now: datetime | pa.Array | None = None,
) -> Decoded:
    """Decode a batch of raw values; never raises on data.

    Args:
        contract: the topic's contract.
        values: raw Kafka values (``None`` for a tombstone).
        limits: size and event-time bounds.
        now: what event times are checked against for the future skew: one instant (default:
            the wall clock), or one per value (e.g. each record's Kafka timestamp, so the
            same record is judged the same on every read).

    Example:
        >>> d = decode_batch(USAGE, [b"not json"])
        >>> d.rejects
        [(0, 'malformed_json')]
    """
    per_value = isinstance(now, pa.Array)
    if not per_value:
        now = now or datetime.now(UTC)
    rejects: list[tuple[int, str]] = []
    lengths = list(map(len, filter(None, values)))
    if len(lengths) == len(values) and min(lengths, default=1) > 0 and max(lengths, default=0) <= limits.max_record_bytes:
        positions, candidates = list(range(len(values))), values  # the common case: no screening loop
    else:
        positions, candidates = [], []
        for pos, value in enumerate(values):
            if not value:
                rejects.append((pos, "empty_value"))
            elif len(value) > limits.max_record_bytes:
                rejects.append((pos, "too_large"))
            else:
                positions.append(pos)
                candidates.append(bytes(value))

    wire: pa.Table | None = None
    extra = 0
    if candidates and not contract.json_fields:
        payload = b"\n".join(candidates)
        # One value per line, each an object: a line starting with anything else (even
        # `null`, which crashes pyarrow 23's JSON reader) goes to the record-by-record path.
        lines = len(candidates) - 1
        if payload[:1] == b"{" and payload.count(b"\n") == lines == payload.count(b"\n{") and _is_utf8(payload):
            try:
                wire, extra = _count_extras(contract, _read_lines(contract, payload))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                wire = None
            if wire is not None and wire.num_rows != len(candidates):
                wire = None
    if wire is None and candidates:
        positions, good, bad = _classify_slow(contract, candidates, positions)
        rejects.extend(bad)
        wire = _read_good(contract, good)
        if wire is None:  # Arrow refused what msgspec accepted: take the records one by one
            kept_pos, tables = [], []
            for pos, record in zip(positions, good, strict=True):
                one = _read_good(contract, [record])
                if one is None:
                    rejects.append((pos, "bad_type:record"))
                else:
                    kept_pos.append(pos)
                    tables.append(one)
            positions = kept_pos
            wire = pa.concat_tables(tables) if tables else None
    if wire is None:
        wire = contract.wire_schema.empty_table()
        positions = []

    reference = pc.take(now, pa.array(positions, pa.int64())) if per_value else pa.scalar(now, TS)
    typed, reason = _check(contract, wire, limits, reference)
    index = pa.array(positions, pa.int64())
    ok = pc.is_null(reason)
    if typed.num_rows and not pc.all(ok).as_py():
        bad_mask = pc.invert(ok)
        for pos, why in zip(pc.filter(index, bad_mask).to_pylist(), pc.filter(reason, bad_mask).to_pylist(), strict=True):
            rejects.append((pos, why))
        typed = typed.filter(ok)
        index = pc.filter(index, ok)
    rejects.sort()
    return Decoded(table=typed, index=index, rejects=rejects, extra_fields=extra)


_ENCODER = msgspec.json.Encoder(decimal_format="number")


def _read_good(contract: Contract, records: list[Any]) -> pa.Table | None:
    if not records:
        return contract.wire_schema.empty_table()
    try:
        table = _read_lines(contract, _ENCODER.encode_lines(records))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table.select(contract.schema.names) if table.num_rows == len(records) else None


def encode_records(records: list[dict[str, Any]]) -> list[bytes]:
    """Encode plain records (as the simulator makes them) to wire values."""
    return [_ENCODER.encode(r) for r in records]

"""The contract decoder: one test per rejection reason, and random bytes never raise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.core.contracts import BSS, NETWORK, USAGE, Limits, contract_for, decode_batch
from tests.helpers import ENC, usage_record

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def reason_of(value, contract=USAGE, **kw) -> str | None:
    d = decode_batch(contract, [value], now=NOW, **kw)
    return d.rejects[0][1] if d.rejects else None


def without(field: str) -> bytes:
    return ENC.encode({k: v for k, v in usage_record(1).items() if k != field})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", "malformed_json"),
        (b'{"record_id": "a"', "malformed_json"),
        (b"", "empty_value"),
        (None, "empty_value"),
        (b'{"record_id": "\xff"}', "invalid_utf8"),
        (b"[1, 2]", "not_object"),
        (b"42", "not_object"),
        (b'"text"', "not_object"),
        (without("msisdn"), "missing_field:msisdn"),
        (without("started_at"), "missing_field:started_at"),
        (ENC.encode(usage_record(1, subscriber_id=None)), "missing_field:subscriber_id"),
        (ENC.encode(usage_record(1, duration_s="61")), "bad_type:duration_s"),
        (ENC.encode(usage_record(1, bytes_up=1.5)), "bad_type:bytes_up"),
        (ENC.encode(usage_record(1, started_at="yesterday")), "bad_type:started_at"),
        (ENC.encode(usage_record(1, started_at="2026-10-01 10:00:00")), "bad_type:started_at"),
        (ENC.encode(usage_record(1, event_type="fax")), "unknown_enum:event_type"),
        (ENC.encode(usage_record(1, direction="sideways")), "unknown_enum:direction"),
        (ENC.encode(usage_record(1, duration_s=-1)), "out_of_range:duration_s"),
        (ENC.encode(usage_record(1, bytes_down=10**30)), "out_of_range:bytes_down"),
        (ENC.encode(usage_record(1, started_at="1970-01-01T00:00:00Z")), "out_of_range:started_at"),
        (ENC.encode(usage_record(1, started_at="9999-12-31T23:59:59Z")), "out_of_range:started_at"),
    ],
)
def test_each_rejection_reason(value, reason):
    assert reason_of(value) == reason


def test_too_large():
    assert reason_of(ENC.encode(usage_record(1, cell_id="x" * 2000)), limits=Limits(max_record_bytes=1000)) == "too_large"


def test_same_verdict_alone_or_in_a_batch_with_bad_neighbours():
    good = [ENC.encode(usage_record(i)) for i in range(50)]
    alone = decode_batch(USAGE, good, now=NOW)
    mixed = decode_batch(USAGE, good[:25] + [b"bad"] + good[25:], now=NOW)
    assert alone.table.equals(mixed.table)
    assert mixed.rejects == [(25, "malformed_json")]
    assert mixed.index.to_pylist() == list(range(25)) + list(range(26, 51))


def test_unknown_fields_are_ignored_and_counted():
    d = decode_batch(USAGE, [ENC.encode(usage_record(1, vendor_x=1, vendor_y="a"))], now=NOW)
    assert d.table.num_rows == 1 and d.extra_fields == 2 and "vendor_x" not in d.table.column_names


def test_network_and_bss_contracts():
    kpi = {"event_id": "N1", "cell_id": "C1", "site_id": "S1", "observed_at": "2026-10-01T00:00:00Z", "kind": "kpi", "prb_utilization": 101}
    assert reason_of(ENC.encode(kpi), NETWORK) == "out_of_range:prb_utilization"
    bss = {"event_id": "B1", "subscriber_id": "S", "account_id": "A", "occurred_at": "2026-10-01T00:00:00+02:00", "kind": "payment", "amount": 19.99}
    d = decode_batch(BSS, [ENC.encode(bss)], now=NOW)
    row = d.table.to_pylist()[0]
    assert str(row["amount"]) == "19.9900" and row["occurred_at"].hour == 22
    assert reason_of(ENC.encode(dict(bss, kind="upgrade")), BSS) == "unknown_enum:kind"
    assert reason_of(ENC.encode(dict(bss, attributes=[1])), BSS) == "bad_type:attributes"


def test_contract_for_suffixed_topics():
    assert contract_for("usage.events.abc123") is USAGE
    with pytest.raises(KeyError):
        contract_for("payments")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), st.none()), max_size=20))
def test_random_bytes_never_raise(values):
    d = decode_batch(USAGE, values, now=NOW)
    assert d.table.num_rows + len(d.rejects) == len(values)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(usage_record(1)) + ["x"]), st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats(allow_nan=True), st.booleans()), max_size=12))
def test_random_objects_never_raise(record):
    d = decode_batch(USAGE, [ENC.encode(record)], now=NOW)
    assert d.table.num_rows + len(d.rejects) == 1

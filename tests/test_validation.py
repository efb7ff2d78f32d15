"""The servicers' edge (server/transport/validation.py) on messages, without a server: a column
of a batch's field is cleared at once when it is fine and checked value by value when it is not,
so a fault anywhere in a batch is named by its path, in the messages' order."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from billing.v1 import meter_pb2, plan_pb2, subscription_pb2, usage_pb2, webhook_pb2
from server.domain.errors import FieldViolation
from server.domain.identifiers import ALPHABET, MAX_IDENTIFIER
from server.transport import validation
from server.transport.validation import MAX_STRING, missing_path_fields, path_fields, undecodable_field, violations


@pytest.fixture(autouse=True)
def fresh_checks():
    """Each test builds the per-message checks afresh (they are cached for the process)."""
    validation._checked_fields.cache_clear()
    path_fields.cache_clear()


def _batch(n: int = 1000, **faults) -> usage_pb2.TrackUsageRequest:
    """n good events; `faults` maps "field_index" (e.g. endpoint_3) to the value put there."""
    events = [usage_pb2.UsageEvent(event_id=f"e-{i}", endpoint=f"/v1/x/{i % 7}", count=1) for i in range(n)]
    for where, value in faults.items():
        field, index = where.rsplit("_", 1)
        if field == "timestamp":
            events[int(index)].timestamp.CopyFrom(value)
        else:
            setattr(events[int(index)], field, value)
    return usage_pb2.TrackUsageRequest(subscription_id="sub_1", events=events)


def _paths(request) -> list[str]:
    return [v.field for v in violations(request)]


def test_a_good_batch_has_no_violations():
    assert violations(_batch()) == []


def test_faults_anywhere_in_a_batch_are_named_in_order():
    request = _batch(
        event_id_700="x" * (MAX_STRING + 1),
        endpoint_2="/a\x00b",
        timestamp_5=timestamp_pb2.Timestamp(seconds=253402300800),
        event_id_2="\x00",
    )
    found = violations(request)
    assert [v.field for v in found] == [
        "events[2].event_id",
        "events[2].endpoint",
        "events[5].timestamp",
        "events[700].event_id",
    ]
    assert found[0].description == f"events[2].event_id must use only the characters {ALPHABET}, got '\\x00'"
    assert (
        found[3].description
        == f"events[700].event_id must be at most {MAX_IDENTIFIER} characters, got {MAX_STRING + 1}"
    )


def test_the_longest_allowed_string_and_the_timestamp_range_ends_pass():
    request = _batch(
        endpoint_0="x" * MAX_STRING,
        timestamp_1=timestamp_pb2.Timestamp(seconds=-62135596800),
        timestamp_2=timestamp_pb2.Timestamp(seconds=253402300799, nanos=999_999_999),
    )
    assert violations(request) == []


def test_nanos_out_of_range_is_a_fault():
    assert _paths(_batch(timestamp_9=timestamp_pb2.Timestamp(seconds=0, nanos=-1))) == ["events[9].timestamp"]


def test_top_level_fields_enum_and_string():
    request = subscription_pb2.ListTenantSubscriptionsRequest(tenant_id="t\x00", status=7)
    found = violations(request)
    assert [v.field for v in found] == ["tenant_id", "status"]
    assert found[1].description == "status 7 is not a value of Status"


def test_date_fields_are_strict_dates_and_may_be_empty():
    assert _paths(usage_pb2.GetDailyUsageRequest(subscription_id="s", start_date="2026-1-1")) == ["start_date"]
    assert _paths(usage_pb2.GetDailyUsageRequest(subscription_id="s", end_date="2026-02-30")) == ["end_date"]
    assert _paths(usage_pb2.GetDailyUsageRequest(subscription_id="s", start_date="2026-01-01")) == []
    assert _paths(usage_pb2.GetDailyUsageRequest(subscription_id="s")) == []


@pytest.mark.parametrize(
    "bad",
    ["acme\r\nx-admin: 1", "acme\n", "a b", "acme/../x", "ac%me", "t\u00e9nant", "\u200bacme", "a" * 129, "acme\t"],
)
def test_an_identifier_outside_the_alphabet_is_a_fault_naming_the_field(bad):
    assert _paths(subscription_pb2.CreateSubscriptionRequest(tenant_id=bad, plan_id="free")) == ["tenant_id"]
    assert _paths(subscription_pb2.CreateSubscriptionRequest(tenant_id="acme", plan_id=bad)) == ["plan_id"]
    assert _paths(_batch(event_id_999=bad)) == ["events[999].event_id"]
    assert _paths(webhook_pb2.ResendWebhookDeliveryRequest(id="we_1", delivery_id=bad)) == ["delivery_id"]


@pytest.mark.parametrize(
    "good",
    [
        "acme",
        "team@acme.example",
        "org:acme_EU-1",
        "sub_" + "f" * 32,
        "0b3f6d0e-7c1a-4c1b-9d0e-2f4b8a6c1d3e",  # Envoy's x-request-id, a gateway event id
        "0b3f6d0e-7c1a-4c1b-9d0e-2f4b8a6c1d3e:usage",
        "a" * 128,
    ],
)
def test_identifiers_inside_the_alphabet_pass(good):
    assert violations(subscription_pb2.CreateSubscriptionRequest(tenant_id=good, plan_id=good)) == []
    assert violations(_batch(event_id_0=good)) == []


def _descriptions(request) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in violations(request)]


@pytest.mark.parametrize(
    ("day", "problem"),
    [
        ("1970-01-01", None),
        ("9999-12-30", None),
        ("1969-12-31", "start_date must be between 1970-01-01 and 9999-12-30, got 1969-12-31"),
        ("9999-12-31", "start_date must be between 1970-01-01 and 9999-12-30, got 9999-12-31"),
        ("2026-02-30", "start_date must be a date as YYYY-MM-DD, got '2026-02-30'"),
        ("9" * 50, f"start_date must be a date as YYYY-MM-DD, got {'9' * 40!r}"),
    ],
)
def test_a_date_is_checked_at_both_ends_of_its_range(day, problem):
    found = _descriptions(usage_pb2.GetDailyUsageRequest(subscription_id="s", start_date=day))
    assert found == ([("start_date", problem)] if problem else [])


@pytest.mark.parametrize(
    ("seconds", "nanos", "fine"),
    [
        (validation.MIN_SECONDS, 0, True),
        (validation.MIN_SECONDS - 1, 0, False),
        (validation.MAX_SECONDS, 999_999_999, True),
        (validation.MAX_SECONDS + 1, 0, False),
        (0, 1_000_000_000, False),
        (0, -1, False),
    ],
)
def test_a_timestamp_is_checked_at_both_ends_of_its_range_alone_and_in_a_column(seconds, nanos, fine):
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    for request in (_batch(1, timestamp_0=stamp), _batch(50, timestamp_7=stamp)):
        found = _descriptions(request)
        where = "events[0].timestamp" if len(request.events) == 1 else "events[7].timestamp"
        expected = f"{where} must be a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        assert found == ([] if fine else [(where, expected)])


def test_strings_are_checked_by_length_and_nul_alone_and_in_a_column():
    for n in (1, 30):
        assert _descriptions(_batch(n, endpoint_0="x" * (MAX_STRING + 1))) == [
            ("events[0].endpoint", f"events[0].endpoint must be at most {MAX_STRING} characters, got {MAX_STRING + 1}")
        ]
        assert _descriptions(_batch(n, endpoint_0="a\x00")) == [
            ("events[0].endpoint", "events[0].endpoint must not contain NUL characters")
        ]


def test_a_path_field_left_empty_is_named_as_required():
    method = "/billing.v1.PlanService/GetPlan"
    assert path_fields(method) == ("plan_id",)
    assert missing_path_fields(method, plan_pb2.GetPlanRequest()) == [FieldViolation("plan_id", "plan_id is required")]
    assert missing_path_fields(method, plan_pb2.GetPlanRequest(plan_id="free")) == []


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


EVENTS = usage_pb2.TrackUsageRequest.DESCRIPTOR.fields_by_name["events"].number
ENDPOINT = usage_pb2.UsageEvent.DESCRIPTOR.fields_by_name["endpoint"].number
SUBSCRIPTION = usage_pb2.TrackUsageRequest.DESCRIPTOR.fields_by_name["subscription_id"].number


def test_the_first_string_that_is_not_utf8_is_named_by_its_path():
    good = usage_pb2.UsageEvent(event_id="a", endpoint="/v1/x").SerializeToString()
    bad = _field(ENDPOINT, b"\xff")
    descriptor = usage_pb2.TrackUsageRequest.DESCRIPTOR
    assert undecodable_field(descriptor, _field(EVENTS, good) + _field(EVENTS, bad)) == "events[1].endpoint"
    assert undecodable_field(descriptor, _field(SUBSCRIPTION, b"\xfe") + _field(EVENTS, bad)) == "subscription_id"
    assert undecodable_field(descriptor, _field(SUBSCRIPTION, b"s") + _field(EVENTS, good)) is None
    assert undecodable_field(descriptor, _field(99, b"\xff") + _varint(SUBSCRIPTION << 3) + b"\x01") is None
    assert undecodable_field(descriptor, b"\x0a\x05ab") is None  # not a message at all: the parser answers


def test_a_map_of_strings_has_its_keys_and_values_checked_a_value_named_by_its_key():
    found = _descriptions(meter_pb2.Meter(id="m", filter={"a\x00": "1", "model": "x\x00", "ok": "fine"}))
    assert sorted(found) == [
        ("filter", "filter must not contain NUL characters"),
        ("filter.model", "filter.model must not contain NUL characters"),
    ]
    assert violations(meter_pb2.Meter(id="m", filter={"ok": "x" * MAX_STRING})) == []


def test_values_at_their_bounds_pass_beside_a_fault_in_the_same_column():
    """A column with one fault is checked value by value: the bounds there are the per-value rule's."""
    request = _batch(
        4,
        endpoint_0="x" * MAX_STRING,
        endpoint_1="x" * (MAX_STRING + 1),
        timestamp_0=timestamp_pb2.Timestamp(seconds=validation.MIN_SECONDS),
        timestamp_1=timestamp_pb2.Timestamp(seconds=validation.MAX_SECONDS, nanos=999_999_999),
        timestamp_2=timestamp_pb2.Timestamp(seconds=validation.MAX_SECONDS + 1),
    )
    assert _paths(request) == ["events[1].endpoint", "events[2].timestamp"]


def test_a_date_must_be_written_with_dashes():
    assert _paths(usage_pb2.GetDailyUsageRequest(subscription_id="s", start_date="20260101")) == ["start_date"]


def test_a_fault_inside_a_nested_message_is_named_by_its_full_path():
    request = meter_pb2.CreateMeterRequest(meter=meter_pb2.Meter(id="m", filter={"model": "x\x00"}))
    assert _paths(request) == ["meter.filter.model"]


def test_a_skipped_field_does_not_end_the_search_for_a_bad_string():
    descriptor = usage_pb2.TrackUsageRequest.DESCRIPTOR
    data = _field(99, b"x") + _varint(SUBSCRIPTION << 3) + b"\x01" + _field(SUBSCRIPTION, b"\xff")
    assert undecodable_field(descriptor, data) == "subscription_id"

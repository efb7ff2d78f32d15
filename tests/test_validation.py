"""The servicers' edge (server/transport/validation.py) on messages, without a server: a column
of a batch's field is cleared at once when it is fine and checked value by value when it is not,
so a fault anywhere in a batch is named by its path, in the messages' order."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from billing.v1 import subscription_pb2, usage_pb2, webhook_pb2
from server.domain.identifiers import ALPHABET, MAX_IDENTIFIER
from server.transport.validation import MAX_STRING, violations


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

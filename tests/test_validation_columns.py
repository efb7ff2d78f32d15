"""server/transport/validation.py on a column that mixes good and bad values: the fast path does
not clear it, so each value is checked by the rule itself, and only the bad ones are named."""

from __future__ import annotations

import pytest

from billing.v1 import subscription_pb2
from server.transport import validation
from server.transport.validation import path_fields, violations

STATUS = subscription_pb2.Subscription.Status
ACTIVE, UNSPECIFIED, UNKNOWN = STATUS.Value("ACTIVE"), STATUS.ValueType(0), STATUS.ValueType(99)


@pytest.fixture(autouse=True)
def fresh_checks():
    """Each test builds the per-message checks afresh (they are cached for the process)."""
    validation._checked_fields.cache_clear()
    path_fields.cache_clear()


def test_in_an_enum_column_with_one_unknown_number_only_that_one_is_named():
    listing = subscription_pb2.ListTenantSubscriptionsResponse(
        subscriptions=[
            subscription_pb2.Subscription(id="s0", status=ACTIVE),
            subscription_pb2.Subscription(id="s1", status=UNKNOWN),
            subscription_pb2.Subscription(id="s2", status=UNSPECIFIED),
        ]
    )
    found = violations(listing)
    assert [(v.field, v.description) for v in found] == [
        ("subscriptions[1].status", "subscriptions[1].status 99 is not a value of Status"),
    ]

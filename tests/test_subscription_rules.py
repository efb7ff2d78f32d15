"""Pure rules of subscriptions: required fields, e-mail syntax, status and plan-change rules."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain import periods
from server.domain import subscriptions as rules
from server.domain.errors import FailedPrecondition, InvalidArgument
from server.domain.identifiers import MAX_IDENTIFIER


@pytest.mark.parametrize("email", ["billing@acme.com", "a.b+tag@mail.example.co.uk", "  ops@acme.io  "])
def test_valid_emails_are_accepted_and_stripped(email):
    assert rules.validate_email(email) == email.strip()


@pytest.mark.parametrize(
    "email",
    [
        "acme.com",
        "a@b",
        "a b@acme.com",
        "a@@acme.com",
        "@acme.com",
        "a@acme.",
        "a@-acme.com",
        "x" * 65 + "@acme.com",
        "a@" + "b" * 320 + ".com",
    ],
)
def test_malformed_emails_are_400_naming_the_field(email):
    with pytest.raises(InvalidArgument) as error:
        rules.validate_email(email)
    assert error.value.violations[0].field == "billing_email"
    assert error.value.reason == "INVALID_EMAIL"
    assert repr(email) in error.value.message


LONGEST_EMAIL = "x" * 64 + "@" + ".".join(["a" * 63] * 4)  # 64 + 1 + 255 = 320 characters


def test_email_length_bound():
    assert len(LONGEST_EMAIL) == rules.MAX_EMAIL
    assert rules.validate_email(LONGEST_EMAIL) == LONGEST_EMAIL
    with pytest.raises(InvalidArgument):
        rules.validate_email("x" * 64 + "@" + ".".join(["a" * 63] * 3 + ["a" * 62, "b"]))  # 321


@pytest.mark.parametrize("field", ["tenant_id", "plan_id", "billing_email"])
@pytest.mark.parametrize("value", ["", "   "])
def test_missing_fields_are_400_naming_the_field(field, value):
    with pytest.raises(InvalidArgument) as error:
        rules.require_field(value, field)
    assert error.value.violations[0].field == field
    assert field in error.value.message
    assert error.value.reason == "MISSING_FIELD"


@pytest.mark.parametrize(
    "validate,field", [(rules.validate_tenant_id, "tenant_id"), (rules.validate_email, "billing_email")]
)
def test_validators_name_their_own_missing_field(validate, field):
    with pytest.raises(InvalidArgument) as error:
        validate("  ")
    assert error.value.violations[0].field == field


def test_tenant_id_longer_than_the_column_is_refused():
    assert rules.validate_tenant_id("acme") == "acme"
    assert rules.validate_tenant_id("t" * MAX_IDENTIFIER) == "t" * MAX_IDENTIFIER
    with pytest.raises(InvalidArgument) as error:
        rules.validate_tenant_id("t" * (MAX_IDENTIFIER + 1))
    assert error.value.violations[0].field == "tenant_id"
    assert str(MAX_IDENTIFIER) in error.value.message


@pytest.mark.parametrize("bad", ["acme\r\nx-tenant-id: other", "ac me", "acme\x7f", "ácme"])
def test_tenant_id_outside_the_identifier_alphabet_is_refused(bad):
    """The gateway writes the tenant id into a header: CR/LF made every call a 503."""
    with pytest.raises(InvalidArgument) as error:
        rules.validate_tenant_id(bad)
    assert error.value.violations[0].field == "tenant_id"
    assert error.value.reason == "INVALID_IDENTIFIER"


def test_only_active_subscriptions_change():
    rules.require_changeable(rules.SubscriptionStatus.ACTIVE, "sub_1")
    with pytest.raises(FailedPrecondition) as error:
        rules.require_changeable(rules.SubscriptionStatus.CANCELED, "sub_1")
    assert "sub_1" in error.value.message and error.value.reason == "SUBSCRIPTION_CANCELED"


def test_same_or_no_plan_is_no_change():
    assert rules.plan_changes("standard", "premium")
    assert not rules.plan_changes("standard", "standard")
    assert not rules.plan_changes("standard", "")


def test_first_period_of_a_jan_31_subscription_ends_on_the_last_day_of_february():
    created = dt.datetime(2025, 1, 31, 9, 30, tzinfo=dt.timezone.utc)
    first = periods.period(created, 0)
    assert (first.start, first.end) == (created, dt.datetime(2025, 2, 28, 9, 30, tzinfo=dt.timezone.utc))
    assert periods.period(created, 1).end == dt.datetime(2025, 3, 31, 9, 30, tzinfo=dt.timezone.utc)

"""Pure rules of subscriptions: input shape, e-mail syntax, and what each status allows."""

from __future__ import annotations

import enum
import re

from server.domain.errors import FailedPrecondition, InvalidArgument
from server.domain.identifiers import identifier_problem


class SubscriptionStatus(enum.StrEnum):
    """The stored status (Subscription.Status in the proto, by name)."""

    ACTIVE = "ACTIVE"
    CANCELED = "CANCELED"


class Effective(enum.StrEnum):
    """When a plan change takes effect (UpdateSubscriptionRequest.Effective, by name)."""

    NOW = "NOW"  # at once, prorated by segment
    PERIOD_END = "PERIOD_END"  # the next period starts on it: a pending change, no proration


MAX_EMAIL = 320  # RFC 5321: 64 local + @ + 255 domain

# Deliberately simple: one @, no spaces, a dotted domain. Deliverability is the SMTP server's
# business; this only catches typos such as a missing @ or domain.
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def require_field(value: str, field: str) -> str:
    """`value` stripped; a missing (empty) required field is a 400 naming it."""
    value = (value or "").strip()
    if not value:
        raise InvalidArgument(f"{field} is required", field=field, reason="MISSING_FIELD")
    return value


def validate_tenant_id(tenant_id: str) -> str:
    """A tenant id is an identifier (server/domain/identifiers.py): the gateway writes it into a header."""
    tenant_id = require_field(tenant_id, "tenant_id")
    if problem := identifier_problem(tenant_id):
        raise InvalidArgument(f"tenant_id {problem}", field="tenant_id", reason="INVALID_IDENTIFIER")
    return tenant_id


def validate_email(email: str) -> str:
    email = require_field(email, "billing_email")
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise InvalidArgument(
            f"billing_email {email!r} is not a valid e-mail address", field="billing_email", reason="INVALID_EMAIL"
        )
    return email


def require_changeable(status: SubscriptionStatus, subscription_id: str) -> None:
    """Only an ACTIVE subscription can change plan or e-mail; a canceled one is kept as it ended."""
    if status != SubscriptionStatus.ACTIVE:
        raise FailedPrecondition(
            f"subscription {subscription_id!r} is {status} and cannot be changed", reason="SUBSCRIPTION_CANCELED"
        )


def plan_changes(current_plan_id: str, requested_plan_id: str) -> bool:
    """A plan change happens only when a plan is requested and it differs from the current one."""
    return bool(requested_plan_id) and requested_plan_id != current_plan_id

"""The tenant's ACTIVE subscription: one question that subscriptions (the one-active rule), the
gateway's admission and the rate-limit tier lookup all ask, so it is written once. It has at most
one row (the partial unique index `subscription_one_active_per_tenant`, which also serves the
lookup); each caller selects the columns and joins it needs."""

from __future__ import annotations

import peewee as pw

from server.domain.subscriptions import SubscriptionStatus
from server.persistence.models import Subscription


def of_tenant(tenant_id: str, *columns: object) -> pw.ModelSelect[Subscription]:
    """The query for the tenant's ACTIVE subscription: the columns (fields, or models for all of
    theirs) that are named, or all of the subscription's."""
    return Subscription.select(*columns).where(
        (Subscription.tenant_id == tenant_id) & (Subscription.status == SubscriptionStatus.ACTIVE)
    )

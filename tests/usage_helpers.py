"""Rows for usage tests: a subscription created straight through the models."""

from __future__ import annotations

import datetime as dt
import uuid

from server.domain.periods import period
from server.persistence import db
from server.persistence.models import PlanChange, Subscription


def make_subscription(tenant_id: str, *, plan: str = "standard", anchor: dt.datetime | None = None,
                      status: str = "ACTIVE") -> Subscription:
    anchor = anchor or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    first = period(anchor, 0)
    with db.session():
        subscription = Subscription.create(
            id=f"sub_{uuid.uuid4().hex}", tenant_id=tenant_id, plan=plan, billing_email=f"{tenant_id}@example.com",
            status=status, anchor_at=anchor, current_period_start=first.start, current_period_end=first.end,
            created_at=anchor, updated_at=anchor)
        PlanChange.create(subscription=subscription, plan=plan, effective_at=anchor)
    return subscription

"""Rows for tests, written and read straight through the models: a subscription and its first
plan; the event ids stored for a subscription."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

from server.domain.periods import Anchor, Cycle
from server.persistence import db
from server.persistence.models import PlanChange, RecordedUsageEvent, Subscription


def insert_subscription(
    tenant_id: str,
    *,
    plan: str = "standard",
    anchor: dt.datetime | None = None,
    status: str = "ACTIVE",
    canceled_at: dt.datetime | None = None,
    billing_email: str | None = None,
    subscription_id: str | None = None,
    billing_anchor: Anchor = Anchor.ANNIVERSARY,
    timezone: str = "UTC",
) -> Subscription:
    """A subscription whose first period starts at `anchor` (default three days ago), on `plan`
    (monthly from the anchor in UTC unless `billing_anchor` and `timezone` say otherwise)."""
    anchor = anchor or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    first = Cycle(anchor, billing_anchor, zoneinfo.ZoneInfo(timezone)).period(0)
    with db.session():
        subscription = Subscription.create(
            id=subscription_id or f"sub_{uuid.uuid4().hex}",
            tenant_id=tenant_id,
            plan=plan,
            billing_email=billing_email or f"{tenant_id}@example.com",
            status=status,
            anchor_at=anchor,
            current_period_start=first.start,
            current_period_end=first.end,
            created_at=anchor,
            updated_at=anchor,
            canceled_at=canceled_at,
            billing_anchor=billing_anchor,
            timezone=timezone,
        )
        PlanChange.create(subscription=subscription, plan=plan, effective_at=anchor)
    return subscription


def subscription_from_now(tenant_id: str, plan: str = "standard") -> str:
    """The id of a subscription whose first period starts now (its whole quota ahead)."""
    return insert_subscription(tenant_id, plan=plan, anchor=dt.datetime.now(dt.timezone.utc)).id


def recorded_event_ids(subscription_id: str) -> set[str]:
    """The ids of the usage events stored for the subscription (the gateway's: Envoy's request ids)."""
    with db.session():
        return {
            e.event_id
            for e in RecordedUsageEvent.select(RecordedUsageEvent.event_id).where(
                RecordedUsageEvent.subscription == subscription_id
            )
        }

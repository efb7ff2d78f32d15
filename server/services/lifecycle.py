"""What the scheduler carries out of a subscription's lifecycle, at the instants set beforehand
(services/subscriptions.py sets them): a cancellation at the period's end, a plan change
scheduled for it, and the notice of a trial's end. Each runs in the caller's transaction, under
the subscription's lock (scheduler/jobs.py), so a second scheduler finds it done.
"""

from __future__ import annotations

import datetime as dt

from server.domain import trials, webhooks
from server.domain.subscriptions import SubscriptionStatus
from server.persistence.db import database, for_update
from server.persistence.models import PlanChange, Subscription
from server.persistence.read_models import subscription_view
from server.resources import subscription_message
from server.services import events


def _announce(event_type: webhooks.EventType, subscription_id: str, now: dt.datetime, **options) -> bool:
    view = subscription_view(Subscription.get_by_id(subscription_id))
    return events.emit(event_type, view.tenant_id, subscription_message(view), now=now, **options) is not None


def cancel_at_period_end(subscription: Subscription, *, now: dt.datetime) -> None:
    """Cancel at the instant it was set to (cancel_at, its period's end), once that period is
    invoiced: canceled_at is that instant, not the scheduler's clock, so nothing after it is billed."""
    (
        Subscription.update(status=SubscriptionStatus.CANCELED, canceled_at=subscription.cancel_at, updated_at=now)
        .where(Subscription.id == subscription.id)
        .execute()
    )
    _announce(webhooks.EventType.SUBSCRIPTION_CANCELED, subscription.id, now)


def start_pending_plan(subscription: Subscription, period_start: dt.datetime, *, now: dt.datetime) -> None:
    """Put the subscription on its pending plan from `period_start` (the next period's first
    instant): a plan change at a period's start splits no period, so nothing is prorated, and no
    counted usage moves (every event of the new period was already keyed at or after its start)."""
    PlanChange.create(
        subscription=subscription.id,
        plan=subscription.pending_plan_id,
        plan_version=subscription.pending_plan_version,
        effective_at=period_start,
    )
    (
        Subscription.update(
            plan=subscription.pending_plan_id,
            plan_version=subscription.pending_plan_version,
            pending_plan_id=None,
            pending_plan_version=None,
            updated_at=now,
        )
        .where(Subscription.id == subscription.id)
        .execute()
    )
    _announce(webhooks.EventType.SUBSCRIPTION_UPDATED, subscription.id, now)


def trial_notices_due(now: dt.datetime) -> list[str]:
    """ACTIVE subscriptions whose trial ends within trials.NOTICE (3 days), the soonest first."""
    return [
        s.id
        for s in Subscription.select(Subscription.id)
        .where(
            (Subscription.status == SubscriptionStatus.ACTIVE)
            & (Subscription.trial_end > now)
            & (Subscription.trial_end <= now + trials.NOTICE)
        )
        .order_by(Subscription.trial_end, Subscription.id)
    ]


def announce_trial_end(subscription_id: str, *, now: dt.datetime) -> bool:
    """subscription.trial_will_end, once per subscription (its dedup key), in one transaction;
    whether it was queued."""
    with database.atomic():
        return _announce_trial_end(subscription_id, now)


def _announce_trial_end(subscription_id: str, now: dt.datetime) -> bool:
    subscription = for_update(Subscription.select().where(Subscription.id == subscription_id)).first()
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        return False
    if not trials.notice_due(subscription.trial_end, now):
        return False
    return _announce(
        webhooks.EventType.SUBSCRIPTION_TRIAL_WILL_END,
        subscription.id,
        now,
        dedup_key=f"{webhooks.EventType.SUBSCRIPTION_TRIAL_WILL_END}:{subscription.id}",
    )

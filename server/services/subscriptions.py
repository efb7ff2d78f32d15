"""Subscriptions (endpoints 3-7): create, read, list by tenant, change plan or e-mail, cancel.

Each write is one transaction, and so is its webhook event (services/events.py). "One ACTIVE
subscription per tenant" is guarded by the partial unique index
`subscription_one_active_per_tenant`, not by a read-then-write check: two concurrent creates both
insert, the database lets one commit and the other fails, and that failure becomes ALREADY_EXISTS.

Times: `now` is injected by the caller. The anchor (creation instant), the billing anchor and the
time zone fix the monthly periods (domain/periods.py Cycle); a plan change is dated `now` in
PlanChange, which invoicing prorates to the microsecond; usage counted before it with timestamps
at or after `now` moves to its segment.

Lifecycle (docs/guides/lifecycle.md): a plan with trial_days gives the subscription a trial_end
(domain/trials.py); a cancellation or a plan change may instead be set for the period's end
(cancel_at, pending_plan_*), which the scheduler carries out when it closes the period
(services/billing_runs.py). A newer plan change replaces a pending one; an immediate change or any
cancellation drops it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import peewee as pw

from server.domain import credits as credit_rules
from server.domain import periods, trials, webhooks
from server.domain import subscriptions as rules
from server.domain.access import SYSTEM, Principal, require_tenant_path, require_visible
from server.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from server.domain.subscriptions import Effective, SubscriptionStatus
from server.persistence import active_subscriptions, db, plan_versions
from server.persistence.db import database
from server.persistence.models import Plan, PlanChange, PlanVersion, Subscription
from server.persistence.pagination import paginate
from server.persistence.prepared import Prepared
from server.persistence.read_models import SubscriptionView, subscription_view
from server.resources import subscription_message
from server.services import events, segment_usage


@dataclasses.dataclass(frozen=True)
class NewSubscription:
    tenant_id: str
    plan_id: str
    billing_email: str
    plan_version: int = 0  # 0: the latest; naming one is for admin keys
    billing_anchor: str = ""  # ANNIVERSARY ('') or CALENDAR
    timezone: str = ""  # an IANA name ('': UTC)
    spend_cap_cents: int | None = None
    low_balance_alert_cents: int | None = None


@dataclasses.dataclass(frozen=True)
class SubscriptionChange:
    """Empty fields stay as they are."""

    plan_id: str = ""
    billing_email: str = ""
    plan_version: int = 0  # with plan_id: that version (0: the latest)
    effective: Effective = Effective.NOW  # with plan_id: at once, or at the period's end
    cancel_at_period_end: bool | None = None  # None: as it is
    spend_cap_cents: int | None = None  # None: as it is; 0: removed
    low_balance_alert_cents: int | None = None


def new_id() -> str:
    return "sub_" + uuid.uuid4().hex


def _plan_version(principal: Principal, plan_id: str, version: int, current_plan_id: str = "") -> PlanVersion:
    """The version a subscription may start on or move to: the latest, or (admin keys) the one
    named. Archived plans take no new subscriptions, and tenant keys see only public plans (a
    private one is reported unknown, as it is to their reads); a subscription already on the plan
    (`current_plan_id`) may still move to its latest version."""
    plan = Plan.get_or_none(Plan.id == plan_id)
    joining = plan_id != current_plan_id
    if plan is None or (plan.private and joining and not principal.is_admin):
        raise InvalidArgument(f"plan_id {plan_id!r} is not a known plan", field="plan_id", reason="UNKNOWN_PLAN")
    if plan.archived_at is not None and joining:
        raise InvalidArgument(
            f"plan_id {plan_id!r} is archived: it takes no new subscriptions", field="plan_id", reason="PLAN_ARCHIVED"
        )
    if version and not principal.is_admin:
        raise PermissionDenied("naming a plan_version needs an admin key", reason="ADMIN_ONLY")
    found = plan_versions.find(plan_id, version) if version else plan_versions.latest(plan_id)
    if found is None:
        raise InvalidArgument(
            f"plan_version {version} is not a version of plan {plan_id!r}",
            field="plan_version",
            reason="UNKNOWN_PLAN_VERSION",
        )
    return found


_UNLOCKED = Prepared(Subscription, [Subscription.id], lambda id_: Subscription.select().where(Subscription.id == id_))
_LOCKED = Prepared(
    Subscription, [Subscription.id], lambda id_: db.for_update(Subscription.select().where(Subscription.id == id_))
)


def find_subscription(
    subscription_id: str, *, principal: Principal, field: str = "subscription_id", lock: bool = False
) -> Subscription:
    """The subscription, locked for the transaction if asked: 400 naming `field` if the id is
    empty, 404 if there is none or it is another tenant's than the principal's (ids leak nothing)."""
    subscription_id = rules.require_field(subscription_id, field)
    found = (_LOCKED if lock else _UNLOCKED).rows(subscription_id)
    subscription = found[0] if found else None
    if subscription is None:
        raise NotFound(f"subscription {subscription_id!r} not found", reason="SUBSCRIPTION_NOT_FOUND")
    require_visible(principal, subscription.tenant_id, "subscription", subscription_id)
    return subscription


def create_subscription(principal: Principal, request: NewSubscription, *, now: dt.datetime) -> SubscriptionView:
    tenant_id = rules.validate_tenant_id(request.tenant_id)
    require_tenant_path(principal, tenant_id)  # tenant keys subscribe only themselves
    plan_id = rules.require_field(request.plan_id, "plan_id")
    email = rules.validate_email(request.billing_email)
    spend_cap = credit_rules.check_limit(request.spend_cap_cents, "spend_cap_cents")
    low_balance = credit_rules.check_limit(request.low_balance_alert_cents, "low_balance_alert_cents")
    cycle = periods.Cycle(now, periods.anchor_kind(request.billing_anchor), periods.timezone(request.timezone))
    first = cycle.period(0)
    try:
        with database.atomic():
            version = _plan_version(principal, plan_id, request.plan_version)
            subscription = Subscription.create(
                id=new_id(),
                tenant_id=tenant_id,
                plan=plan_id,
                plan_version=version.version,
                billing_email=email,
                status=SubscriptionStatus.ACTIVE,
                anchor_at=now,
                current_period_start=first.start,
                current_period_end=first.end,
                created_at=now,
                updated_at=now,
                canceled_at=None,
                trial_end=trials.trial_end(now, version.trial_days),
                billing_anchor=cycle.kind,
                timezone=request.timezone or periods.DEFAULT_TIMEZONE,
                spend_cap_cents=spend_cap,
                low_balance_alert_cents=low_balance,
            )
            PlanChange.create(subscription=subscription, plan=plan_id, plan_version=version.version, effective_at=now)
            view = subscription_view(subscription)
            events.emit(webhooks.EventType.SUBSCRIPTION_CREATED, tenant_id, subscription_message(view), now=now)
    except pw.IntegrityError:
        # The transaction is rolled back; name the winner if the one-active index refused us.
        existing = active_subscriptions.of_tenant(tenant_id).first()
        if existing is None:
            raise
        raise AlreadyExists(
            f"tenant {tenant_id!r} already has an active subscription {existing.id!r}",
            reason="ACTIVE_SUBSCRIPTION_EXISTS",
        ) from None
    return view


def get_subscription(principal: Principal, subscription_id: str) -> SubscriptionView:
    return subscription_view(find_subscription(subscription_id, principal=principal, field="id"))


def list_tenant_subscriptions(
    principal: Principal,
    tenant_id: str,
    *,
    status: SubscriptionStatus | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> tuple[list[SubscriptionView], str]:
    """One page, newest first, and the next page's token ('' on the last)."""
    tenant_id = rules.validate_tenant_id(tenant_id)
    require_tenant_path(principal, tenant_id)
    query = Subscription.select().where(Subscription.tenant_id == tenant_id)
    if status:
        if status not in list(SubscriptionStatus):
            raise InvalidArgument(f"status {status!r} is not a subscription status", field="status")
        query = query.where(Subscription.status == status)
    rows, token = paginate(query, Subscription, page_size, page_token)
    return [subscription_view(row) for row in rows], token


def _require_same_currency(subscription: Subscription, target: PlanVersion) -> None:
    """One invoice has one currency: a plan priced in another is refused (now or scheduled)."""
    current = plan_versions.find(subscription.plan_id, subscription.plan_version)
    if current is not None and current.currency != target.currency:
        raise InvalidArgument(
            f"plan_id {target.plan_id!r} is priced in {target.currency}, "
            f"not the subscription's currency {current.currency}",
            field="plan_id",
            reason="CURRENCY_MISMATCH",
        )


_NOTHING_PENDING: dict[pw.Field, object] = {Subscription.pending_plan_id: None, Subscription.pending_plan_version: None}


def _scheduled(
    subscription: Subscription, target: PlanVersion, cancel_at: dt.datetime | None
) -> dict[pw.Field, object]:
    """The pending change to `target` at the period's end (none if it is the plan in force)."""
    if cancel_at is not None:
        raise FailedPrecondition(
            f"subscription {subscription.id!r} cancels at its period's end: a plan change then would never "
            "start (set cancel_at_period_end false first)",
            reason="CANCELS_AT_PERIOD_END",
        )
    if (target.plan_id, target.version) == (subscription.plan_id, subscription.plan_version):
        return dict(_NOTHING_PENDING)
    return {Subscription.pending_plan_id: target.plan_id, Subscription.pending_plan_version: target.version}


def update_subscription(
    principal: Principal, subscription_id: str, change: SubscriptionChange, *, now: dt.datetime
) -> SubscriptionView:
    """Change plan or plan version and/or billing e-mail, and set or undo a cancellation at the
    period's end. A plan change NOW is recorded in PlanChange (a segment boundary) and drops a
    pending one; PERIOD_END replaces the pending one (the plan in force: none pending). The same
    plan at a newer version is a migration; the same plan and version again is no change: no
    history row. A plan of another currency is refused, now or scheduled: one invoice has one
    currency. Fields that end up as they were are not written and announce nothing."""
    plan_id = (change.plan_id or "").strip()
    email = rules.validate_email(change.billing_email) if (change.billing_email or "").strip() else ""
    if change.effective == Effective.PERIOD_END and not plan_id:
        raise InvalidArgument("effective PERIOD_END needs a plan_id", field="effective", reason="MISSING_FIELD")
    limits: dict[pw.Field, object] = {
        column: credit_rules.check_limit(value, column.name, removable=True)
        for column, value in (
            (Subscription.spend_cap_cents, change.spend_cap_cents),
            (Subscription.low_balance_alert_cents, change.low_balance_alert_cents),
        )
        if value is not None
    }
    with database.atomic():
        subscription = find_subscription(subscription_id, principal=principal, field="id", lock=True)
        rules.require_changeable(subscription.status, subscription.id)
        updates: dict[pw.Field, object] = {}
        cancel_at = subscription.cancel_at
        if change.cancel_at_period_end is not None:
            cancel_at = subscription.current_period_end if change.cancel_at_period_end else None
            updates[Subscription.cancel_at] = cancel_at
            if cancel_at is not None:
                updates.update(_NOTHING_PENDING)
        target = _plan_version(principal, plan_id, change.plan_version, subscription.plan_id) if plan_id else None
        if target is not None and change.effective == Effective.PERIOD_END:
            _require_same_currency(subscription, target)
            updates.update(_scheduled(subscription, target, cancel_at))
        elif target is not None:
            updates.update(_NOTHING_PENDING)
            if (target.plan_id, target.version) != (subscription.plan_id, subscription.plan_version):
                _require_same_currency(subscription, target)
                before = segment_usage.key_instants(subscription)
                PlanChange.create(
                    subscription=subscription, plan=plan_id, plan_version=target.version, effective_at=now
                )
                segment_usage.split_at(subscription, before, now)
                updates[Subscription.plan] = plan_id
                updates[Subscription.plan_version] = target.version
        if email:
            updates[Subscription.billing_email] = email
        updates.update(limits)
        updates = {
            field: value for field, value in updates.items() if getattr(subscription, field.column_name) != value
        }
        if updates:
            updates[Subscription.updated_at] = now
            Subscription.update(updates).where(Subscription.id == subscription.id).execute()
            subscription = find_subscription(subscription.id, principal=SYSTEM)
            events.emit(
                webhooks.EventType.SUBSCRIPTION_UPDATED,
                subscription.tenant_id,
                subscription_message(subscription_view(subscription)),
                now=now,
            )
    if limits:
        # Imported here: spend control rates the period through services.invoices, which reads subscriptions.
        from server.services import spend_control

        spend_control.refresh(subscription.tenant_id, now)
    return subscription_view(subscription)


def cancel_subscription(
    principal: Principal, subscription_id: str, *, now: dt.datetime, at_period_end: bool = False
) -> SubscriptionView:
    """Cancel at once, or (`at_period_end`) set it to cancel when its current period ends: it stays
    ACTIVE until the scheduler closes that period (scheduler/jobs.py). Either drops a pending plan
    change. The record is kept; canceling again returns it unchanged (same canceled_at)."""
    with database.atomic():
        subscription = find_subscription(subscription_id, principal=principal, field="id", lock=True)
        if subscription.status == SubscriptionStatus.CANCELED:
            return subscription_view(subscription)
        if at_period_end:
            if subscription.cancel_at == subscription.current_period_end:
                return subscription_view(subscription)
            updates = {Subscription.cancel_at: subscription.current_period_end, **_NOTHING_PENDING}
            event = webhooks.EventType.SUBSCRIPTION_UPDATED
        else:
            updates = {
                Subscription.status: SubscriptionStatus.CANCELED,
                Subscription.canceled_at: now,
                Subscription.cancel_at: None,
                **_NOTHING_PENDING,
            }
            event = webhooks.EventType.SUBSCRIPTION_CANCELED
        Subscription.update({**updates, Subscription.updated_at: now}).where(
            Subscription.id == subscription.id
        ).execute()
        view = subscription_view(find_subscription(subscription.id, principal=SYSTEM))
        events.emit(event, view.tenant_id, subscription_message(view), now=now)
        return view

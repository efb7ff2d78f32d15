"""The scheduler's billing work, as services: which subscription periods are due, closing one
(invoice it, send the invoice, advance the period) in one transaction, reissuing a period whose
invoice was voided or deleted, which invoices fell overdue, and which subscriptions are owed a
usage alert. The jobs (scheduler/jobs.py)
loop over these, count and log; what makes a rerun harmless lives here and in the database: one
live invoice per (subscription, period_start), a period advanced in the transaction that
invoiced it.

Everything here acts as access.SYSTEM: no caller, the service on its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import peewee as pw

from server.domain import rating
from server.domain import usage as usage_rules
from server.domain.access import SYSTEM
from server.domain.emails import EmailTemplate
from server.domain.errors import AlreadyExists
from server.domain.invoice_state import InvoiceStatus
from server.domain.issuer import Issuer
from server.domain.subscriptions import SubscriptionStatus
from server.persistence import models, plan_versions
from server.persistence.db import database, for_update
from server.persistence.models import LIVE_INVOICE, Invoice, PlanVersion, Subscription, UsagePeriod
from server.persistence.read_models import InvoiceView
from server.services import invoices, lifecycle
from server.services.outbox import enqueue


def periods_due(now: dt.datetime) -> list[str]:
    """Subscriptions with a period to close: ACTIVE ones whose current period has ended, and
    CANCELED ones past canceled_at whose current period has no live invoice yet; the longest
    waiting first."""
    current_invoice = Invoice.select(Invoice.id).where(
        (Invoice.subscription == Subscription.id)
        & (Invoice.period_start == Subscription.current_period_start)
        & LIVE_INVOICE
    )
    return [
        s.id
        for s in Subscription.select(Subscription.id)
        .where(
            ((Subscription.status == SubscriptionStatus.ACTIVE) & (Subscription.current_period_end <= now))
            | (
                (Subscription.status == SubscriptionStatus.CANCELED)
                & (Subscription.canceled_at <= now)
                & ~pw.fn.EXISTS(current_invoice)
            )
        )
        .order_by(Subscription.current_period_end, Subscription.id)
    ]


def _due(sub: Subscription, now: dt.datetime) -> bool:
    if sub.status == SubscriptionStatus.ACTIVE:
        return sub.current_period_end <= now
    if sub.status == SubscriptionStatus.CANCELED and sub.canceled_at is not None and sub.canceled_at <= now:
        return invoices.live_invoice(sub.id, sub.current_period_start) is None
    return False


def _issue(sub: Subscription, now: dt.datetime, issuer: Issuer, period_start: dt.datetime | None = None) -> InvoiceView:
    """Invoice the period (once: a live invoice generated earlier, by an admin or by a run that
    crashed after committing, is reused) and mark it SENT, which queues the e-mail. An invoice
    issued PAID (a total of 0) is owed nothing and sent nothing."""
    try:
        invoice = invoices.generate_invoice(sub.id, now=now, issuer=issuer, principal=SYSTEM, period_start=period_start)
    except AlreadyExists:
        live = invoices.live_invoice(sub.id, period_start or sub.current_period_start)
        if live is None:  # voided or deleted since: no invoice to reuse, the conflict stands
            raise
        invoice = invoices.get_invoice(live.id, principal=SYSTEM)
    if invoice.status == InvoiceStatus.PENDING:
        invoice = invoices.set_status(invoice.id, InvoiceStatus.SENT, now=now, principal=SYSTEM)
    return invoice


def close_period(subscription_id: str, now: dt.datetime, issuer: Issuer) -> InvoiceView | None:
    """One transaction: invoice the current period and, for an ACTIVE subscription, cancel it if it
    was set to cancel at the period's end, or else move on to the next period, on the pending plan
    if a change was scheduled. None if nothing is due. The subscription's lock and the re-check of
    `_due` under it make the invoice, the cancellation and the plan change happen once however
    many schedulers run."""
    with database.atomic():
        sub = for_update(Subscription.select().where(Subscription.id == subscription_id)).first()
        if sub is None or not _due(sub, now):
            return None
        invoice = _issue(sub, now, issuer)
        if sub.status != SubscriptionStatus.ACTIVE:
            return invoice
        if sub.cancel_at is not None and sub.cancel_at <= sub.current_period_end:
            lifecycle.cancel_at_period_end(sub, now=now)
            return invoice
        nxt = sub.cycle.period(sub.cycle.containing(sub.current_period_start).index + 1)
        (
            Subscription.update(current_period_start=nxt.start, current_period_end=nxt.end, updated_at=now)
            .where(Subscription.id == sub.id)
            .execute()
        )
        if sub.pending_plan_id is not None:
            lifecycle.start_pending_plan(sub, nxt.start, now=now)
        return invoice


def reopened_periods(now: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """Ended periods before a subscription's current one whose every invoice is VOID or deleted."""
    live = Invoice.alias()  # another invoice of the same period
    covered = live.select(live.id).where(
        (live.subscription == Invoice.subscription) & (live.period_start == Invoice.period_start) & models.live(live)
    )
    query = (
        Invoice.select(Invoice.subscription, Invoice.period_start)
        .distinct()
        .join(Subscription, on=(Invoice.subscription == Subscription.id))
        .where(
            ~LIVE_INVOICE
            & (Invoice.period_end <= now)
            & (Invoice.period_start < Subscription.current_period_start)
            & ~pw.fn.EXISTS(covered)
        )
        .order_by(Invoice.subscription, Invoice.period_start)
    )
    return [(row.subscription_id, row.period_start) for row in query]


def reissue(subscription_id: str, period_start: dt.datetime, now: dt.datetime, issuer: Issuer) -> InvoiceView | None:
    """Invoice a reopened period anew and send it, in one transaction; None if it is covered again."""
    with database.atomic():
        sub = for_update(Subscription.select().where(Subscription.id == subscription_id)).first()
        if sub is None or invoices.live_invoice(sub.id, period_start) is not None:
            return None
        return _issue(sub, now, issuer, period_start)


def overdue(now: dt.datetime, limit: int) -> list[str]:
    """SENT invoices past due_at, the longest overdue first, at most `limit`."""
    return [
        i.id
        for i in Invoice.select(Invoice.id)
        .where((Invoice.status == InvoiceStatus.SENT) & (Invoice.due_at < now) & Invoice.deleted_at.is_null())
        .order_by(Invoice.due_at, Invoice.id)
        .limit(limit)
    ]


def mark_overdue(invoice_id: str, now: dt.datetime) -> InvoiceView:
    """OVERDUE, which queues the reminder; a DomainError if it was paid, voided or deleted meanwhile."""
    return invoices.set_status(invoice_id, InvoiceStatus.OVERDUE, now=now, principal=SYSTEM)


@dataclasses.dataclass(frozen=True)
class AlertCandidate:
    """A subscription past the first alert threshold, with what its alert shows."""

    id: str
    tenant_id: str
    billing_email: str
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    plan: str
    included: int
    requests: int


def over_alert_threshold() -> Iterator[AlertCandidate]:
    """ACTIVE subscriptions whose current period's requests reached the first alert threshold of
    the included requests of the plan version each is pinned to (read once per version: a newer
    version of its plan never changes them); plans with none get no alerts."""
    rows = (
        Subscription.select(
            Subscription.id,
            Subscription.tenant_id,
            Subscription.billing_email,
            Subscription.current_period_start,
            Subscription.current_period_end,
            PlanVersion,
            UsagePeriod.requests,
        )
        .join(
            PlanVersion,
            on=(PlanVersion.plan == Subscription.plan) & (PlanVersion.version == Subscription.plan_version),
            attr="pinned",
        )
        .switch(Subscription)
        .join(
            UsagePeriod,
            on=(
                (UsagePeriod.subscription == Subscription.id)
                & (UsagePeriod.period_start == Subscription.current_period_start)
            ),
            attr="usage",
        )
        .where((Subscription.status == SubscriptionStatus.ACTIVE) & (UsagePeriod.requests > 0))
        .order_by(Subscription.id)
    )
    included_of: dict[int, int] = {}
    row: Any  # the joined attributes, pinned and usage
    for row in rows:
        if row.pinned.id not in included_of:
            included_of[row.pinned.id] = rating.legacy_terms(plan_versions.terms_of(row.pinned).charges)[0]
        included = included_of[row.pinned.id]
        if not included or row.usage.requests * 100 < included * usage_rules.ALERT_THRESHOLDS[0]:
            continue
        yield AlertCandidate(
            row.id,
            row.tenant_id,
            row.billing_email,
            row.current_period_start,
            row.current_period_end,
            row.pinned.name,
            included,
            row.usage.requests,
        )


def queue_usage_alerts(row: AlertCandidate, now: dt.datetime) -> int:
    """Queue a `usage_alert` for each threshold the row reached, once per subscription period and
    threshold (the outbox's dedup key), each in its own transaction; returns how many were new."""
    queued = 0
    start = row.current_period_start
    for threshold in usage_rules.ALERT_THRESHOLDS:
        if row.requests * 100 < row.included * threshold:
            continue
        payload = {
            "subscription_id": row.id,
            "tenant_id": row.tenant_id,
            "plan": row.plan,
            "threshold": threshold,
            "requests": row.requests,
            "included": row.included,
            "period_start": start.isoformat(),
            "period_end": row.current_period_end.isoformat(),
        }
        with database.atomic():
            queued += enqueue(
                template=EmailTemplate.USAGE_ALERT,
                recipient=row.billing_email,
                payload=payload,
                dedup_key=f"{EmailTemplate.USAGE_ALERT}:{row.id}:{start.isoformat()}:{threshold}",
                now=now,
            )
    return queued

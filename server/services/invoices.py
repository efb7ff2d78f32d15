"""Invoices: generation, status workflow, soft delete, reading. Each change is one transaction.

One live (not VOID, not deleted) invoice per subscription period is guaranteed by the partial
unique index `invoice_one_live_per_period`, not by a read-then-write check: the loser of a race
gets AlreadyExists naming the winner, and a VOID or deleted invoice frees its period for a new
one. Numbers come from the `invoice_number` sequence, advanced in the same transaction, so a
rolled-back generation consumes no number and a number is never reused. An invoice snapshots
what it shows at issue (line descriptions, billing e-mail, issuer). The scheduler calls these as
access.SYSTEM.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

import peewee as pw

from server.domain import invoice_state, rating, trials, webhooks
from server.domain.access import Principal, require_admin, require_visible
from server.domain.emails import EmailTemplate
from server.domain.errors import AlreadyExists, InvalidArgument, NotFound
from server.domain.invoice_state import InvoiceStatus
from server.domain.invoicing import InvoiceLine, Segment, rate_segments, rated_line_items, segments
from server.domain.issuer import Issuer
from server.domain.periods import Period
from server.domain.plans import VersionedPlan
from server.notifications.pdf import invoice_pdf_bytes
from server.observability import metrics
from server.persistence import db, plan_versions
from server.persistence.db import database, for_update
from server.persistence.models import (
    LIVE_INVOICE,
    ONE_LIVE_INVOICE_INDEX,
    Invoice,
    InvoiceLineItem,
    NumberSequence,
    PlanChange,
    PlanVersion,
    Subscription,
)
from server.persistence.pagination import paginate
from server.persistence.read_models import CreditNoteView, InvoiceView, invoice_view, invoice_views
from server.resources import invoice_message
from server.services import charge_usage, credits, events, spend_control
from server.services.outbox import enqueue
from server.services.subscriptions import find_subscription

NUMBER_SEQUENCE = "invoice_number"
PAYMENT_TERMS = dt.timedelta(days=14)
STATUS_TEMPLATES = {
    InvoiceStatus.SENT: EmailTemplate.INVOICE_ISSUED,
    InvoiceStatus.OVERDUE: EmailTemplate.INVOICE_OVERDUE,
}


def _invoice(invoice_id: str, *, lock: bool = False) -> Invoice:
    query = Invoice.select().where((Invoice.id == invoice_id) & Invoice.deleted_at.is_null())
    found = (for_update(query) if lock else query).first() if invoice_id else None
    if found is None:
        raise NotFound(f"invoice {invoice_id!r} not found", reason="INVOICE_NOT_FOUND")
    return found


def live_invoice(subscription_id: str, period_start: dt.datetime) -> Invoice | None:
    """The invoice that covers the period, if any (VOID and deleted ones cover nothing)."""
    return Invoice.get_or_none(
        (Invoice.subscription == subscription_id) & (Invoice.period_start == period_start) & LIVE_INVOICE
    )


def plan_history(subscription_id: str) -> list[tuple[dt.datetime, VersionedPlan]]:
    """(effective_at, plan version) of every plan version the subscription has been on, oldest
    first (two queries: the history, then the versions it names)."""
    changes = list(
        PlanChange.select(PlanChange.effective_at, PlanChange.plan, PlanChange.plan_version)
        .where(PlanChange.subscription == subscription_id)
        .order_by(PlanChange.effective_at, PlanChange.id)
    )
    versions = _versions({(change.plan_id, change.plan_version) for change in changes})
    return [(change.effective_at, versions[(change.plan_id, change.plan_version)]) for change in changes]


def _versions(keys: set[tuple[str, int]]) -> dict[tuple[str, int], VersionedPlan]:
    if not keys:
        return {}
    rows = PlanVersion.select().where(
        PlanVersion.plan.in_(sorted({plan for plan, _ in keys}))
        & PlanVersion.version.in_(sorted({version for _, version in keys}))
    )
    return {
        (row.plan_id, row.version): VersionedPlan(row.plan_id, row.version, plan_versions.terms_of(row)) for row in rows
    }


def period_of(subscription: Subscription, start: dt.datetime) -> Period:
    return subscription.cycle.containing(start)


def billed_segments(subscription: Subscription, period: Period) -> list:
    """The period's plan segments, cut at the trial's end if it falls inside; a cancellation ends
    billing at its instant. A subscription written without history (by hand, or before plan
    history existed) is on its plan throughout."""
    history = plan_history(subscription.id) or [
        (
            subscription.anchor_at,
            VersionedPlan(
                subscription.plan_id,
                subscription.plan_version,
                plan_versions.terms_of(plan_versions.pinned(subscription)),
            ),
        )
    ]
    return trials.split(segments(period, cast(list, history), subscription.canceled_at), subscription.trial_end)


def subscription_currency(subscription: Subscription) -> str:
    """The currency of the version the subscription is on (a plan change never changes it)."""
    return plan_versions.pinned(subscription).currency


def rated_period(subscription: Subscription, period: Period) -> tuple[list[Segment], list[rating.SegmentRating]]:
    """The period's segments, each rated on its plan version by the rating engine: what the
    invoice bills and endpoint 9 estimates, from the same figures."""
    segments_ = billed_segments(subscription, period)
    quantities = charge_usage.quantities(subscription.id, period, segments_)
    return segments_, rate_segments(period, segments_, quantities, subscription.trial_end)


def draft_line_items(subscription: Subscription, period: Period) -> list[InvoiceLine]:
    """What an invoice of `period` would charge if it were generated now."""
    segments_, ratings = rated_period(subscription, period)
    return rated_line_items(period, segments_, ratings, subscription.trial_end)


def _announce(invoice: Invoice, event_types: list[webhooks.EventType], now: dt.datetime) -> InvoiceView:
    """Webhook events of the invoice as it now stands, in the caller's transaction; returns it as
    the callers see it."""
    view = invoice_view(invoice)
    for event_type in event_types:
        events.emit(event_type, view.tenant_id, invoice_message(view), now=now)
    return view


def _next_number() -> str:
    (
        NumberSequence.insert(name=NUMBER_SEQUENCE, value=1)
        .on_conflict(conflict_target=[NumberSequence.name], update={NumberSequence.value: NumberSequence.value + 1})
        .execute()
    )
    return f"INV-{NumberSequence.get_by_id(NUMBER_SEQUENCE).value:06d}"


def _period_to_bill(sub: Subscription, period_start: dt.datetime | None) -> Period:
    """The current period, or an earlier one whose invoice was voided or deleted (reissue)."""
    if period_start is None:
        return period_of(sub, sub.current_period_start)
    # Bounds first: an instant far outside them may have no period at all (near years 1 and 9999).
    inside = sub.anchor_at <= period_start <= sub.current_period_start
    period = period_of(sub, period_start) if inside else None
    if period is None or period.start != period_start:
        raise InvalidArgument(
            f"period_start {period_start.isoformat()} is not the start of a period of "
            f"subscription {sub.id!r} up to its current one",
            field="period_start",
        )
    return period


def generate_invoice(
    subscription_id: str,
    *,
    now: dt.datetime,
    issuer: Issuer,
    principal: Principal,
    period_start: dt.datetime | None = None,
) -> InvoiceView:
    """Invoice a period as it stands (default: the current one); its existence closes the period for
    usage. A total of 0 is issued PAID: nothing is owed, so nothing can fall overdue."""
    require_admin(principal, "generating an invoice")
    try:
        with database.atomic():
            sub = find_subscription(subscription_id, principal=principal, lock=True)
            period = _period_to_bill(sub, period_start)
            items = draft_line_items(sub, period)
            subtotal = sum(item.amount_cents for item in items)
            currency = subscription_currency(sub)
            applied = credits.apply_to_invoice(sub.tenant_id, currency, subtotal, now)
            items += credits.credit_lines(applied)
            total = sum(item.amount_cents for item in items)
            paid = total == 0
            invoice = Invoice.create(
                id=f"inv_{uuid.uuid4().hex}",
                number=_next_number(),
                subscription=sub.id,
                tenant_id=sub.tenant_id,
                status=InvoiceStatus.PAID if paid else InvoiceStatus.PENDING,
                period_start=period.start,
                period_end=period.end,
                subtotal_cents=subtotal,
                total_cents=total,
                currency=currency,
                billing_email=sub.billing_email,
                issuer_name=issuer.name,
                issuer_address=issuer.address,
                issuer_tax_id=issuer.tax_id,
                issued_at=now,
                due_at=now + PAYMENT_TERMS,
                paid_at=now if paid else None,
                created_at=now,
            )
            InvoiceLineItem.insert_many(
                [
                    dict(
                        invoice=invoice.id,
                        position=i,
                        description=item.description,
                        quantity_milli=item.quantity_milli,
                        quantity=item.quantity,
                        unit=item.unit,
                        unit_amount=item.unit_amount,
                        unit_amount_cents=item.unit_amount_cents,
                        amount_cents=item.amount_cents,
                    )
                    for i, item in enumerate(items)
                ]
            ).execute()
            credits.record_applied(sub.tenant_id, invoice.id, applied, now)
            announced = [webhooks.EventType.INVOICE_CREATED] + ([webhooks.EventType.INVOICE_PAID] if paid else [])
            view = _announce(invoice, announced, now)
        # Counted once committed (or handed to the caller's transaction, which the scheduler's
        # period step is: a crash there rolls back an invoice already counted, and rarely).
        metrics.INVOICES_ISSUED.inc()
        if applied:
            spend_control.invalidate(sub.tenant_id)
        return view
    except pw.IntegrityError as error:
        if not db.unique_violation(error, ONE_LIVE_INVOICE_INDEX, Invoice.subscription, Invoice.period_start):
            raise
    existing = live_invoice(subscription_id, period.start)
    which = f"invoice {existing.id} ({existing.number})" if existing else "an invoice"
    raise AlreadyExists(
        f"subscription {subscription_id!r} period starting {period.start.isoformat()} already has {which}",
        reason="INVOICE_EXISTS",
    )


def set_status(invoice_id: str, status: InvoiceStatus | str, *, now: dt.datetime, principal: Principal) -> InvoiceView:
    """Move along the workflow; SENT and OVERDUE queue their e-mail in the same transaction."""
    require_admin(principal, "changing an invoice's status")
    if status not in list(InvoiceStatus):
        raise InvalidArgument(f"status must be one of {', '.join(InvoiceStatus)}", field="status")
    status = InvoiceStatus(status)
    with database.atomic():
        invoice = _invoice(invoice_id, lock=True)
        invoice_state.check_transition(invoice.status, status)
        invoice.status = status
        if status == InvoiceStatus.PAID:
            invoice.paid_at = now
        if status == InvoiceStatus.VOID:
            credits.restore_invoice(invoice, now)
        invoice.save()
        view = _announce(invoice, [webhooks.INVOICE_STATUS_EVENTS[status]], now)
        template = STATUS_TEMPLATES.get(status)
        if template:
            enqueue(
                template=template,
                recipient=invoice.subscription.billing_email,
                payload={"invoice_id": invoice.id},
                dedup_key=f"{template}:{invoice.id}",
                now=now,
            )
    if status == InvoiceStatus.VOID:
        spend_control.invalidate(view.tenant_id)
    return view


def delete_invoice(invoice_id: str, *, now: dt.datetime, principal: Principal) -> InvoiceView:
    """Soft delete (deleted_at); only PENDING or VOID invoices, nothing that is or was owed."""
    require_admin(principal, "deleting an invoice")
    with database.atomic():
        invoice = _invoice(invoice_id, lock=True)
        invoice_state.check_deletable(invoice.status)
        if invoice.status == InvoiceStatus.PENDING:  # a VOID one gave its credit back when voided
            credits.restore_invoice(invoice, now)
        invoice.deleted_at = now
        invoice.save()
        view = invoice_view(invoice)
    spend_control.invalidate(view.tenant_id)
    return view


def get_invoice(invoice_id: str, *, principal: Principal) -> InvoiceView:
    invoice = _invoice(invoice_id)
    require_visible(principal, invoice.tenant_id, "invoice", invoice_id)
    return invoice_view(invoice)


def invoice_pdf(invoice_id: str, *, principal: Principal) -> bytes:
    """The invoice as PDF, rendered once per version of it (notifications.pdf.invoice_pdf_bytes)."""
    return invoice_pdf_bytes(get_invoice(invoice_id, principal=principal))


def list_invoices(
    subscription_id: str,
    *,
    status: InvoiceStatus | None = None,
    page_size: int = 0,
    page_token: str = "",
    principal: Principal,
) -> tuple[list[InvoiceView], str]:
    """One page, newest first, each invoice with its lines (a fixed number of queries per page)."""
    sub = find_subscription(subscription_id, principal=principal)
    query = Invoice.select().where((Invoice.subscription == sub.id) & Invoice.deleted_at.is_null())
    if status:
        query = query.where(Invoice.status == status)
    rows, token = paginate(query, Invoice, page_size, page_token)
    return invoice_views(rows), token


def add_credit_note(
    invoice_id: str, amount_cents: int, reason: str, *, now: dt.datetime, principal: Principal
) -> CreditNoteView:
    """Endpoint 31: one transaction with the invoice locked; a note that leaves nothing due on a
    SENT or OVERDUE invoice settles it (PAID, announced like any payment), and its e-mail is
    queued with it."""
    with database.atomic():
        invoice = _invoice(invoice_id, lock=True)
        require_visible(principal, invoice.tenant_id, "invoice", invoice_id)
        as_credit = invoice.status == InvoiceStatus.PAID
        note, settled = credits.create_note(principal, invoice, amount_cents, reason, now=now)
        announced = []
        if settled:
            invoice.status = InvoiceStatus.PAID
            invoice.paid_at = now
            announced.append(webhooks.EventType.INVOICE_PAID)
        invoice.save()
        _announce(invoice, announced, now)
        enqueue(
            template=EmailTemplate.CREDIT_NOTE,
            recipient=invoice.billing_email,
            payload={"invoice_id": invoice.id, "credit_note_id": note.id, "as_credit": as_credit},
            dedup_key=f"{EmailTemplate.CREDIT_NOTE}:{note.id}",
            now=now,
        )
    spend_control.refresh(invoice.tenant_id, now)
    return note


def credit_notes(invoice_id: str, *, principal: Principal) -> list[CreditNoteView]:
    """Endpoint 32: the invoice's credit notes, oldest first."""
    return credits.list_notes(principal, _invoice(invoice_id))

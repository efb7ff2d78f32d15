"""Invoices: generation, status workflow, soft delete, reading. Each change is one transaction.

One invoice per subscription period is guaranteed by the unique index on (subscription,
period_start), not by a read-then-write check: the loser of a race gets AlreadyExists naming the
winner. Numbers come from the `invoice_number` counter, incremented in the same transaction, so a
rolled-back generation consumes no number. Access checks take an optional principal so that the
scheduler (no principal) can call these too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import peewee as pw

from server.domain import invoice_state
from server.domain.access import Principal, require_admin, require_visible
from server.domain.errors import AlreadyExists, InvalidArgument, NotFound
from server.domain.invoicing import line_items
from server.persistence.db import database, for_update
from server.persistence.models import Counter, Invoice, InvoiceLineItem, PlanChange, Subscription, UsagePeriod
from server.persistence.pagination import paginate
from server.services.outbox import enqueue
from server.services.subscriptions import find_subscription

NUMBER_COUNTER = "invoice_number"
PAYMENT_TERMS = dt.timedelta(days=14)
STATUS_TEMPLATES = {invoice_state.SENT: "invoice_issued", invoice_state.OVERDUE: "invoice_overdue"}


def _invoice(invoice_id: str, *, lock: bool = False) -> Invoice:
    query = Invoice.select().where((Invoice.id == invoice_id) & Invoice.deleted_at.is_null())
    found = (for_update(query) if lock else query).first() if invoice_id else None
    if found is None:
        raise NotFound(f"invoice {invoice_id!r} not found", reason="INVOICE_NOT_FOUND")
    return found


def plan_segments(subscription: Subscription, start: dt.datetime, end: dt.datetime) -> list[tuple]:
    """(plan, from, to) pieces of [start, end) from the dated plan history."""
    changes = list(PlanChange.select(PlanChange, PlanChange.plan).join(PlanChange.plan.rel_model)
                   .where(PlanChange.subscription == subscription.id)
                   .order_by(PlanChange.effective_at, PlanChange.id))
    if not changes:
        return [(subscription.plan, start, end)]
    in_force = [c for c in changes if c.effective_at <= start] or changes[:1]
    points = [(start, in_force[-1].plan)] + [(c.effective_at, c.plan) for c in changes if start < c.effective_at < end]
    return [(plan, begin, points[i + 1][0] if i + 1 < len(points) else end)
            for i, (begin, plan) in enumerate(points)]


@dataclasses.dataclass(frozen=True)
class _Period:
    start: dt.datetime
    end: dt.datetime


def _next_number() -> str:
    (Counter.insert(name=NUMBER_COUNTER, value=1)
     .on_conflict(conflict_target=[Counter.name], update={Counter.value: Counter.value + 1})
     .execute())
    return f"INV-{Counter.get_by_id(NUMBER_COUNTER).value:06d}"


def generate_invoice(subscription_id: str, *, now: dt.datetime, principal: Principal | None = None) -> Invoice:
    """Invoice the subscription's current period as it stands; its existence closes the period for usage."""
    if principal is not None:
        require_admin(principal, "generating an invoice")
    try:
        with database.atomic():
            sub = find_subscription(subscription_id, lock=True)
            start, end = sub.current_period_start, sub.current_period_end
            billed_until = min(end, sub.canceled_at) if sub.canceled_at else end
            segments = plan_segments(sub, start, billed_until)
            usage = UsagePeriod.get_or_none((UsagePeriod.subscription == sub.id) & (UsagePeriod.period_start == start))
            items = line_items(_Period(start, end), segments, usage.requests if usage else 0, segments[-1][0])
            total = sum(item.amount_cents for item in items)
            invoice = Invoice.create(
                id=f"inv_{uuid.uuid4().hex}", number=_next_number(), subscription=sub.id, tenant_id=sub.tenant_id,
                status=invoice_state.PENDING, period_start=start, period_end=end, subtotal_cents=total,
                total_cents=total, currency=sub.plan.currency, issued_at=now, due_at=now + PAYMENT_TERMS,
                created_at=now)
            InvoiceLineItem.insert_many([
                dict(invoice=invoice.id, position=i, description=item.description, quantity=item.quantity,
                     unit_amount_cents=item.unit_amount_cents, amount_cents=item.amount_cents)
                for i, item in enumerate(items)]).execute()
            return invoice
    except pw.IntegrityError:
        pass
    existing = Invoice.get_or_none((Invoice.subscription == subscription_id)
                                   & (Invoice.period_start == start))
    which = f"invoice {existing.id} ({existing.number})" if existing else "an invoice"
    raise AlreadyExists(f"subscription {subscription_id!r} period starting {start.isoformat()} "
                        f"already has {which}", reason="INVOICE_EXISTS")


def set_status(invoice_id: str, status: str, *, now: dt.datetime, principal: Principal | None = None) -> Invoice:
    """Move along the workflow; SENT and OVERDUE queue their e-mail in the same transaction."""
    if principal is not None:
        require_admin(principal, "changing an invoice's status")
    if status not in invoice_state.STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(invoice_state.STATUSES)}", field="status")
    with database.atomic():
        invoice = _invoice(invoice_id, lock=True)
        invoice_state.check_transition(invoice.status, status)
        invoice.status = status
        if status == invoice_state.PAID:
            invoice.paid_at = now
        invoice.save()
        template = STATUS_TEMPLATES.get(status)
        if template:
            enqueue(template=template, recipient=invoice.subscription.billing_email,
                    payload={"invoice_id": invoice.id}, dedup_key=f"{template}:{invoice.id}", now=now)
        return invoice


def delete_invoice(invoice_id: str, *, now: dt.datetime, principal: Principal | None = None) -> Invoice:
    """Soft delete (deleted_at); only PENDING or VOID invoices, nothing that is or was owed."""
    if principal is not None:
        require_admin(principal, "deleting an invoice")
    with database.atomic():
        invoice = _invoice(invoice_id, lock=True)
        invoice_state.check_deletable(invoice.status)
        invoice.deleted_at = now
        invoice.save()
        return invoice


def get_invoice(invoice_id: str, *, principal: Principal | None = None) -> Invoice:
    invoice = _invoice(invoice_id)
    if principal is not None:
        require_visible(principal, invoice.tenant_id, "invoice", invoice_id)
    return invoice


def list_invoices(subscription_id: str, *, status: str | None = None, page_size: int = 0, page_token: str = "",
                  principal: Principal | None = None) -> tuple[list[Invoice], str]:
    sub = find_subscription(subscription_id)
    if principal is not None:
        require_visible(principal, sub.tenant_id, "subscription", subscription_id)
    query = Invoice.select().where((Invoice.subscription == sub.id) & Invoice.deleted_at.is_null())
    if status:
        query = query.where(Invoice.status == status)
    return paginate(query, Invoice, page_size, page_token)


def items_of(invoice: Invoice) -> list[InvoiceLineItem]:
    return list(InvoiceLineItem.select().where(InvoiceLineItem.invoice == invoice.id)
                .order_by(InvoiceLineItem.position))

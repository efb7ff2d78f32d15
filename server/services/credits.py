"""Credit grants, their ledger and credit notes (endpoints 28-32); credits applied when an invoice
is issued and given back when it is voided or deleted. The rules are domain/credits.py's.

Every change of a grant writes its ledger entries and the grant's running remaining_cents in one
transaction. A tenant's grants are locked (PostgreSQL: FOR UPDATE, in id order so two lockers
never deadlock; SQLite: BEGIN IMMEDIATE already serializes writers) before they are read to be
spent, so two invoices issued at once for one tenant never spend the same credit twice: the
second waits for the first and reads what it left. Grants whose expiry has passed are written
off (EXPIRED) by the next change that locks them.

Credit-note numbers come from the `credit_note_number` counter row, advanced in the note's
transaction: a rolled-back note consumes no number and no number is reused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

import peewee as pw

from server.domain import credits as rules
from server.domain import webhooks
from server.domain.access import Principal, require_admin, require_tenant_path, require_visible
from server.domain.errors import InvalidArgument, NotFound
from server.domain.invoice_state import InvoiceStatus
from server.domain.invoicing import InvoiceLine
from server.domain.subscriptions import validate_tenant_id
from server.persistence.db import database, for_update
from server.persistence.models import CreditGrant, CreditLedgerEntry, CreditNote, Invoice, NumberSequence
from server.persistence.read_models import (
    CreditGrantView,
    CreditNoteView,
    LedgerEntryView,
    credit_grant_view,
    credit_note_view,
    ledger_entry_view,
)
from server.resources import credit_grant_message, credit_note_message
from server.services import events, spend_control

NOTE_SEQUENCE = "credit_note_number"
LEDGER_SHOWN = 100
MAX_DESCRIPTION = 256
MAX_REASON = 512


@dataclasses.dataclass(frozen=True)
class NewGrant:
    tenant_id: str
    amount_cents: int
    currency: str = ""
    priority: int | None = None
    expires_at: dt.datetime | None = None
    description: str = ""
    grant_key: str = ""


@dataclasses.dataclass(frozen=True)
class TenantCredits:
    balances: dict[str, int]
    grants: list[CreditGrantView]
    ledger: list[LedgerEntryView]


def _locked_grants(tenant_id: str) -> list[CreditGrant]:
    """The tenant's grants, locked for the transaction: the per-tenant lock of every spend."""
    return list(for_update(CreditGrant.select().where(CreditGrant.tenant_id == tenant_id).order_by(CreditGrant.id)))


def _record(
    tenant_id: str, rows: dict[str, CreditGrant], entries: Iterable[rules.Entry], now: dt.datetime, invoice_id=None
) -> None:
    """Append the entries and move each grant's remaining amount by them."""
    entries = list(entries)
    if not entries:
        return
    CreditLedgerEntry.insert_many(
        [
            dict(
                tenant_id=tenant_id,
                grant=e.grant_id,
                kind=e.kind,
                amount_cents=e.delta,
                invoice_id=invoice_id,
                at=now,
            )
            for e in entries
        ]
    ).execute()
    for entry in entries:
        row = rows[entry.grant_id]
        row.remaining_cents += entry.delta
        CreditGrant.update(remaining_cents=CreditGrant.remaining_cents + entry.delta).where(
            CreditGrant.id == entry.grant_id
        ).execute()


def _expire_due(tenant_id: str, rows: dict[str, CreditGrant], now: dt.datetime) -> None:
    _record(tenant_id, rows, [e for row in rows.values() if (e := rules.expire(row.rules(), now))], now)


def _validated(request: NewGrant, now: dt.datetime) -> NewGrant:
    currency = request.currency or "USD"
    priority = rules.DEFAULT_PRIORITY if request.priority is None else request.priority
    rules.check_grant(request.amount_cents, priority, currency)
    if request.expires_at is not None and request.expires_at <= now:
        raise InvalidArgument("expires_at must be in the future", field="expires_at")
    if len(request.description) > MAX_DESCRIPTION:
        raise InvalidArgument(f"description must be at most {MAX_DESCRIPTION} characters", field="description")
    if len(request.grant_key) > 128:
        raise InvalidArgument("grant_id must be at most 128 characters", field="grant_id")
    return dataclasses.replace(request, currency=currency, priority=priority)


def _existing(tenant_id: str, grant_key: str) -> CreditGrant | None:
    if not grant_key:
        return None
    return CreditGrant.get_or_none((CreditGrant.tenant_id == tenant_id) & (CreditGrant.grant_key == grant_key))


def _insert_grant(request: NewGrant, now: dt.datetime, invoice_id: str | None = None) -> CreditGrant:
    """A new grant with its GRANTED entry and credit_grant.created event, in the caller's transaction."""
    row = CreditGrant.create(
        id=f"cg_{uuid.uuid4().hex}",
        tenant_id=request.tenant_id,
        grant_key=request.grant_key or None,
        amount_cents=request.amount_cents,
        remaining_cents=0,
        currency=request.currency,
        priority=request.priority,
        expires_at=request.expires_at,
        description=request.description,
        created_at=now,
    )
    _record(
        request.tenant_id,
        {row.id: row},
        [rules.Entry(row.id, rules.EntryKind.GRANTED, request.amount_cents)],
        now,
        invoice_id,
    )
    events.emit(
        webhooks.EventType.CREDIT_GRANT_CREATED,
        request.tenant_id,
        credit_grant_message(credit_grant_view(row)),
        now=now,
    )
    return row


def create_grant(principal: Principal, request: NewGrant, *, now: dt.datetime) -> CreditGrantView:
    """Endpoint 28. The same grant_id (per tenant) again returns the grant it created, even when
    two such calls race: the unique index decides, the loser reads the winner's."""
    require_admin(principal, "granting credit")
    request = _validated(dataclasses.replace(request, tenant_id=validate_tenant_id(request.tenant_id)), now)
    if found := _existing(request.tenant_id, request.grant_key):
        return credit_grant_view(found)
    try:
        with database.atomic():
            row = _insert_grant(request, now)
    except pw.IntegrityError:
        found = _existing(request.tenant_id, request.grant_key)
        if found is None:
            raise
        return credit_grant_view(found)
    spend_control.refresh(request.tenant_id, now)
    return credit_grant_view(row)


def _grant(grant_id: str, *, lock: bool = False) -> CreditGrant:
    query = CreditGrant.select().where(CreditGrant.id == grant_id)
    found = (for_update(query) if lock else query).first() if grant_id else None
    if found is None:
        raise NotFound(f"credit grant {grant_id!r} not found", reason="CREDIT_GRANT_NOT_FOUND")
    return found


def void_grant(principal: Principal, grant_id: str, *, now: dt.datetime) -> CreditGrantView:
    """Endpoint 30: what remains of the grant is voided (VOIDED); a second void is refused."""
    require_admin(principal, "voiding credit")
    with database.atomic():
        row = _grant(grant_id, lock=True)
        _record(row.tenant_id, {row.id: row}, [rules.void(row.rules())], now)
        row.voided_at = now
        CreditGrant.update(voided_at=now).where(CreditGrant.id == row.id).execute()
    spend_control.refresh(row.tenant_id, now)
    return credit_grant_view(row)


def balances(tenant_id: str, now: dt.datetime) -> dict[str, int]:
    """What the tenant can spend now, per currency it was ever granted."""
    grants = [row.rules() for row in CreditGrant.select().where(CreditGrant.tenant_id == tenant_id)]
    return {currency: rules.balance(grants, currency, now) for currency in sorted({g.currency for g in grants})}


def tenant_credits(principal: Principal, tenant_id: str, *, now: dt.datetime) -> TenantCredits:
    """Endpoint 29: balances, every grant (newest first), the latest ledger entries."""
    tenant_id = validate_tenant_id(tenant_id)
    require_tenant_path(principal, tenant_id)
    grants = list(
        CreditGrant.select()
        .where(CreditGrant.tenant_id == tenant_id)
        .order_by(CreditGrant.created_at.desc(), CreditGrant.id.desc())
    )
    ledger = list(  # each with its grant's currency (entry.grant.currency), in the same query
        CreditLedgerEntry.select(CreditLedgerEntry, CreditGrant.id, CreditGrant.currency)
        .join(CreditGrant)
        .where(CreditLedgerEntry.tenant_id == tenant_id)
        .order_by(CreditLedgerEntry.id.desc())
        .limit(LEDGER_SHOWN)
    )
    views = [row.rules() for row in grants]
    currencies = sorted({g.currency for g in views})
    return TenantCredits(
        {c: rules.balance(views, c, now) for c in currencies},
        [credit_grant_view(row) for row in grants],
        [ledger_entry_view(row) for row in ledger],
    )


# --- invoices ------------------------------------------------------------------------------------


def apply_to_invoice(tenant_id: str, currency: str, total_cents: int, now: dt.datetime) -> list[rules.Entry]:
    """The APPLIED entries that pay an invoice being issued (in the caller's transaction), after
    locking the tenant's grants; the caller records them against the invoice (record_applied)."""
    rows = {row.id: row for row in _locked_grants(tenant_id)}
    _expire_due(tenant_id, rows, now)
    return rules.apply([row.rules() for row in rows.values()], currency, total_cents, now)


def credit_lines(applied: list[rules.Entry]) -> list[InvoiceLine]:
    lines = []
    for entry in applied:
        description, quantity, unit_amount, amount = rules.credit_line(entry)
        lines.append(InvoiceLine(description, quantity, rules.CREDIT_UNIT, unit_amount, amount, amount))
    return lines


def record_applied(tenant_id: str, invoice_id: str, applied: list[rules.Entry], now: dt.datetime) -> None:
    rows = {row.id: row for row in CreditGrant.select().where(CreditGrant.id.in_([e.grant_id for e in applied]))}
    _record(tenant_id, rows, applied, now, invoice_id)


def restore_invoice(invoice: Invoice, now: dt.datetime) -> None:
    """Give back what the invoice took (it is being voided, or deleted while PENDING), in the
    caller's transaction: RESTORED, then EXPIRED or VOIDED again into a grant that can no longer
    be spent."""
    taken = list(
        CreditLedgerEntry.select().where(
            (CreditLedgerEntry.invoice_id == invoice.id) & (CreditLedgerEntry.kind == rules.EntryKind.APPLIED)
        )
    )
    if not taken:
        return
    rows = {row.id: row for row in _locked_grants(invoice.tenant_id)}
    _expire_due(invoice.tenant_id, rows, now)
    entries = [e for t in taken for e in rules.restore(rows[t.grant_id].rules(), -t.amount_cents, now)]
    _record(invoice.tenant_id, rows, entries, now, invoice.id)


# --- credit notes --------------------------------------------------------------------------------


def _next_number() -> str:
    (
        NumberSequence.insert(name=NOTE_SEQUENCE, value=1)
        .on_conflict(conflict_target=[NumberSequence.name], update={NumberSequence.value: NumberSequence.value + 1})
        .execute()
    )
    return f"CN-{NumberSequence.get_by_id(NOTE_SEQUENCE).value:06d}"


def create_note(
    principal: Principal, invoice: Invoice, amount_cents: int, reason: str, *, now: dt.datetime
) -> tuple[CreditNoteView, bool]:
    """Endpoint 31, in the caller's transaction with `invoice` locked: the note, and whether it
    settled the invoice (SENT or OVERDUE with nothing left due: PAID). On a PAID invoice the
    amount is granted back as credit."""
    require_admin(principal, "issuing a credit note")
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"reason must be at most {MAX_REASON} characters", field="reason")
    rules.check_note(invoice.status, invoice.total_cents, invoice.credited_cents, amount_cents)
    note = CreditNote.create(
        id=f"cn_{uuid.uuid4().hex}",
        number=_next_number(),
        invoice=invoice.id,
        tenant_id=invoice.tenant_id,
        amount_cents=amount_cents,
        currency=invoice.currency,
        reason=reason,
        created_at=now,
    )
    was_paid = invoice.status == InvoiceStatus.PAID
    invoice.credited_cents += amount_cents
    settled = not was_paid and rules.amount_due(invoice.status, invoice.total_cents, invoice.credited_cents) == 0
    if was_paid:
        grant = NewGrant(
            tenant_id=invoice.tenant_id,
            amount_cents=amount_cents,
            currency=invoice.currency,
            priority=rules.DEFAULT_PRIORITY,
            description=f"Credit note {note.number} on invoice {invoice.number}",
        )
        _insert_grant(grant, now, invoice.id)
    view = credit_note_view(note)
    events.emit(webhooks.EventType.CREDIT_NOTE_CREATED, invoice.tenant_id, credit_note_message(view), now=now)
    return view, settled


def list_notes(principal: Principal, invoice: Invoice) -> list[CreditNoteView]:
    require_visible(principal, invoice.tenant_id, "invoice", invoice.id)
    query = CreditNote.select().where(CreditNote.invoice == invoice.id).order_by(CreditNote.created_at, CreditNote.id)
    return [credit_note_view(row) for row in query]

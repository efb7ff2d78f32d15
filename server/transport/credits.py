"""CreditService: endpoints 28-32. Translates messages and calls server.services.credits and
server.services.invoices (credit notes belong to their invoice's transaction)."""

from __future__ import annotations

import datetime as dt

from billing.v1 import credit_pb2, credit_pb2_grpc
from server.resources import credit_grant_message, credit_note_message, ledger_entry_message
from server.services import credits, invoices
from server.transport.context import current_principal
from server.transport.convert import now


def _expiry(request) -> dt.datetime | None:
    return request.expires_at.ToDatetime(tzinfo=dt.timezone.utc) if request.HasField("expires_at") else None


class CreditServicer(credit_pb2_grpc.CreditServiceServicer):
    def CreateCreditGrant(self, request, context):
        grant = credits.NewGrant(
            tenant_id=request.tenant_id,
            amount_cents=request.amount_cents,
            currency=request.currency,
            priority=request.priority if request.HasField("priority") else None,
            expires_at=_expiry(request),
            description=request.description,
            grant_key=request.grant_id,
        )
        return credit_grant_message(credits.create_grant(current_principal(), grant, now=now()))

    def GetTenantCredits(self, request, context):
        found = credits.tenant_credits(current_principal(), request.tenant_id, now=now())
        return credit_pb2.TenantCredits(
            balances=[credit_pb2.CreditBalance(currency=c, available_cents=n) for c, n in found.balances.items()],
            grants=[credit_grant_message(row) for row in found.grants],
            ledger=[ledger_entry_message(row) for row in found.ledger],
        )

    def VoidCreditGrant(self, request, context):
        return credit_grant_message(credits.void_grant(current_principal(), request.grant_id, now=now()))

    def CreateCreditNote(self, request, context):
        note = invoices.add_credit_note(
            request.invoice_id, request.amount_cents, request.reason, now=now(), principal=current_principal()
        )
        return credit_note_message(note)

    def ListCreditNotes(self, request, context):
        notes = invoices.credit_notes(request.invoice_id, principal=current_principal())
        return credit_pb2.ListCreditNotesResponse(credit_notes=[credit_note_message(note) for note in notes])

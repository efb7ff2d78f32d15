"""InvoiceService: endpoints 12-17. Translates messages and calls server.services.invoices."""

from __future__ import annotations

import datetime as dt

from google.api import httpbody_pb2

from billing.v1 import invoice_pb2, invoice_pb2_grpc
from server.domain.invoice_state import InvoiceStatus
from server.domain.issuer import Issuer
from server.resources import invoice_message
from server.services import invoices
from server.transport import page_tokens
from server.transport.context import current_principal
from server.transport.convert import now

Status = invoice_pb2.Invoice.Status


def _status_name(value: int) -> InvoiceStatus | None:
    return None if value == Status.STATUS_UNSPECIFIED else InvoiceStatus(Status.Name(value))


class InvoiceServicer(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer

    def GenerateInvoice(self, request, context):
        period_start = (
            request.period_start.ToDatetime(tzinfo=dt.timezone.utc) if request.HasField("period_start") else None
        )
        return invoice_message(
            invoices.generate_invoice(
                request.subscription_id,
                now=now(),
                issuer=self.issuer,
                principal=current_principal(),
                period_start=period_start,
            )
        )

    def GetInvoice(self, request, context):
        return invoice_message(invoices.get_invoice(request.id, principal=current_principal()))

    def ListSubscriptionInvoices(self, request, context):
        page, token = invoices.list_invoices(
            request.subscription_id,
            status=_status_name(request.status),
            page_size=request.page_size,
            page_token=page_tokens.unseal(request.page_token, request.subscription_id, request.status),
            principal=current_principal(),
        )
        return invoice_pb2.ListSubscriptionInvoicesResponse(
            invoices=[invoice_message(invoice) for invoice in page],
            next_page_token=page_tokens.seal(token, request.subscription_id, request.status),
        )

    def UpdateInvoiceStatus(self, request, context):
        return invoice_message(
            invoices.set_status(
                request.id, _status_name(request.status) or "", now=now(), principal=current_principal()
            )
        )

    def DeleteInvoice(self, request, context):
        return invoice_message(invoices.delete_invoice(request.id, now=now(), principal=current_principal()))

    def GetInvoicePdf(self, request, context):
        data = invoices.invoice_pdf(request.id, principal=current_principal())
        return httpbody_pb2.HttpBody(content_type="application/pdf", data=data)

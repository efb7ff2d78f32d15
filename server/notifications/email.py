"""E-mails from outbox rows: Jinja2 templates (HTML autoescaped) rendered into an EmailMessage
with text and HTML alternatives; `invoice_issued` carries the invoice PDF.

An invoice e-mail shows the invoice as the caller read it at delivery time (services/outbox.py's
invoice_for): what it shows was snapshotted at issue, so a later change of the subscription cannot
alter it. The outbox payload only names the invoice (or, for usage alerts, carries the figures as
they were). Rendering reads no database.
"""

from __future__ import annotations

import email.message
import email.utils
import hashlib
import json
from typing import Any

import jinja2

from server.domain.emails import EmailTemplate
from server.domain.money import line_figures, money
from server.notifications.pdf import invoice_pdf_bytes
from server.persistence.read_models import InvoiceView

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("server.notifications", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def message_id(dedup_key: str) -> str:
    """Stable Message-ID from the outbox dedup key: a resend of the same row carries the same id."""
    return f"<{hashlib.sha256(dedup_key.encode()).hexdigest()[:32]}@billing-service>"


def _invoice_context(template: str, invoice: InvoiceView | None) -> dict[str, Any]:
    if invoice is None:
        raise LookupError(f"the {template} e-mail needs its invoice")
    return {
        "invoice": invoice,
        "total": money(invoice.total_cents, invoice.currency),
        "due": money(invoice.amount_due_cents, invoice.currency),
        "items": [
            {
                "description": i.description,
                "figures": line_figures(i.quantity, i.unit, i.unit_amount, invoice.currency),
                "amount": money(i.amount_cents, invoice.currency),
            }
            for i in invoice.line_items
        ],
    }


def _subject(template: str, context: dict) -> str:
    if template == EmailTemplate.INVOICE_ISSUED:
        invoice = context["invoice"]
        return f"Invoice {invoice.number}: {context['total']} due {invoice.due_at:%Y-%m-%d}"
    if template == EmailTemplate.INVOICE_OVERDUE:
        return f"Overdue: invoice {context['invoice'].number} for {context['total']}"
    if template == EmailTemplate.CREDIT_NOTE:
        note = context["note"]
        return f"Credit note {note.number}: {context['credited']} on invoice {context['invoice'].number}"
    alert = context["alert"]
    return f"Usage alert: {alert['threshold']}% of included requests used ({alert['plan']} plan)"


def build_message(
    *,
    template: str,
    recipient: str,
    payload: str | dict,
    dedup_key: str,
    from_address: str,
    invoice: InvoiceView | None = None,
) -> email.message.EmailMessage:
    """The e-mail for one outbox row; an invoice e-mail shows `invoice`. Raises LookupError for an
    unknown template, or an invoice e-mail without its invoice."""
    if template not in list(EmailTemplate):
        raise LookupError(f"unknown e-mail template {template!r}")
    data = json.loads(payload) if isinstance(payload, str) else payload
    context: dict[str, Any] = (
        {"alert": data} if template == EmailTemplate.USAGE_ALERT else _invoice_context(template, invoice)
    )
    if template == EmailTemplate.CREDIT_NOTE:
        note = next(n for n in invoice.credit_notes if n.id == data["credit_note_id"])  # type: ignore[union-attr]
        context |= {
            "note": note,
            "credited": money(note.amount_cents, note.currency),
            "as_credit": data["as_credit"],
        }
    message = email.message.EmailMessage()
    message["Subject"] = _subject(template, context)
    message["From"] = from_address
    message["To"] = recipient
    message["Message-ID"] = message_id(dedup_key)
    message["Date"] = email.utils.formatdate(usegmt=True)
    message.set_content(_env.get_template(f"{template}.txt").render(context))
    message.add_alternative(_env.get_template(f"{template}.html").render(context), subtype="html")
    if template == EmailTemplate.INVOICE_ISSUED:
        invoice = context["invoice"]
        pdf = invoice_pdf_bytes(invoice)
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{invoice.number}.pdf")
    return message

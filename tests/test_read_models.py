"""Servicers answer from read models loaded by the services: the queries of a list call (service and
conversion to messages together) do not grow with the list's length, and a PDF is rendered once
per version of its invoice. Servicers are called directly, with the principal bound as the auth
interceptor binds it, on a SQLite database of their own."""

from __future__ import annotations

import datetime as dt

import pytest
from billing.v1 import invoice_pb2
from playhouse.test_utils import count_queries

from conftest import scratch_database
from factories import insert_subscription

from server.domain.access import ADMIN, Principal
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.notifications import pdf
from server.notifications.pdf import render_invoice_pdf as pdf_bytes
from server.persistence import db
from server.persistence.models import Subscription
from server.services import invoices
from server.transport.context import bind_principal, unbind_principal
from server.transport.invoices import InvoiceServicer

UTC = dt.timezone.utc
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2025, 1, 10, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def own_database(tmp_path_factory):
    with scratch_database(tmp_path_factory.mktemp("read-models")), db.session():
        yield


@pytest.fixture(autouse=True)
def as_admin():
    token = bind_principal(Principal(key_id=0, scope=ADMIN))
    yield
    unbind_principal(token)


def subscription_with_invoices(tenant_id: str, count: int) -> str:
    """A subscription with `count` invoices, one per period, each with its lines."""
    sub = insert_subscription(tenant_id, anchor=ANCHOR)
    latest = period(ANCHOR, count - 1)
    (Subscription.update(current_period_start=latest.start, current_period_end=latest.end)
     .where(Subscription.id == sub.id).execute())
    for index in range(count):
        start = period(ANCHOR, index).start
        invoices.generate_invoice(sub.id, now=start, issuer=ISSUER, period_start=start)
    return sub.id


def queries(call) -> int:
    with count_queries() as counted:
        call()
    return counted.count


def test_listing_invoices_costs_the_same_queries_for_3_or_30():
    def listing(subscription_id: str):
        request = invoice_pb2.ListSubscriptionInvoicesRequest(subscription_id=subscription_id, page_size=50)
        return lambda: InvoiceServicer(ISSUER).ListSubscriptionInvoices(request, None)

    few, many = subscription_with_invoices("three", 3), subscription_with_invoices("thirty", 30)
    assert len(listing(many)().invoices) == 30 and all(i.line_items for i in listing(many)().invoices)
    assert queries(listing(few)) == queries(listing(many)) == 3  # the subscription, the page, its lines


def test_a_pdf_is_rendered_once_per_version_of_its_invoice(monkeypatch):
    rendered = []
    monkeypatch.setattr(pdf, "render_invoice_pdf", lambda invoice: rendered.append(invoice.status) or
                        pdf_bytes(invoice))
    invoice_id = invoices.generate_invoice(insert_subscription("pdf", anchor=ANCHOR).id, now=ANCHOR,
                                           issuer=ISSUER).id
    first, again = invoices.invoice_pdf(invoice_id), invoices.invoice_pdf(invoice_id)
    invoices.set_status(invoice_id, "SENT", now=ANCHOR)
    sent = invoices.invoice_pdf(invoice_id)
    assert rendered == ["PENDING", "SENT"]
    assert first == again != sent


def test_the_same_invoice_renders_to_the_same_bytes():
    invoice = invoices.generate_invoice(insert_subscription("same-bytes", anchor=ANCHOR).id, now=ANCHOR,
                                        issuer=ISSUER)
    assert pdf_bytes(invoice) == pdf_bytes(invoice) and pdf_bytes(invoice).startswith(b"%PDF")

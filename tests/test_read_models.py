"""Servicers answer from read models loaded by the services: the queries of a list call (service and
conversion to messages together) do not grow with the list's length, and a PDF is rendered once
per version of its invoice. Servicers are called directly, with the principal bound as the auth
interceptor binds it, on a SQLite database of their own."""

from __future__ import annotations

import datetime as dt

import pytest
from playhouse.test_utils import count_queries

from billing.v1 import invoice_pb2, subscription_pb2, webhook_pb2
from factories import insert_subscription
from server.domain.access import SYSTEM, KeyScope, Principal
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.domain.webhooks import target
from server.notifications import pdf
from server.notifications.pdf import render_invoice_pdf as pdf_bytes
from server.persistence import db
from server.persistence.models import Subscription, WebhookDelivery, WebhookEvent
from server.services import invoices, portal, webhooks
from server.transport.context import bind_principal, unbind_principal
from server.transport.invoices import InvoiceServicer
from server.transport.subscriptions import SubscriptionServicer
from server.transport.webhooks import WebhookServicer
from stores import own_database

UTC = dt.timezone.utc
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2025, 1, 10, tzinfo=UTC)
DISCARD = frozenset({target("127.0.0.1", 9)})  # endpoints registered, never called


@pytest.fixture(scope="module", autouse=True)
def read_models_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("read-models")), db.session():
        yield


@pytest.fixture(autouse=True)
def as_admin():
    token = bind_principal(Principal(key_id=0, scope=KeyScope.ADMIN))
    yield
    unbind_principal(token)


def subscription_with_invoices(tenant_id: str, count: int) -> str:
    """A subscription with `count` invoices, one per period, each with its lines."""
    sub = insert_subscription(tenant_id, anchor=ANCHOR)
    latest = period(ANCHOR, count - 1)
    (
        Subscription.update(current_period_start=latest.start, current_period_end=latest.end)
        .where(Subscription.id == sub.id)
        .execute()
    )
    for index in range(count):
        start = period(ANCHOR, index).start
        invoices.generate_invoice(sub.id, now=start, issuer=ISSUER, principal=SYSTEM, period_start=start)
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


def test_listing_subscriptions_costs_the_same_queries_for_3_or_30():
    def listing(tenant_id: str):
        request = subscription_pb2.ListTenantSubscriptionsRequest(tenant_id=tenant_id, page_size=50)
        return lambda: SubscriptionServicer().ListTenantSubscriptions(request, None)

    for tenant_id, count in [("subs-3", 3), ("subs-30", 30)]:
        for _ in range(count):
            insert_subscription(tenant_id, anchor=ANCHOR, status="CANCELED", canceled_at=ANCHOR)
    assert len(listing("subs-30")().subscriptions) == 30
    assert queries(listing("subs-3")) == queries(listing("subs-30")) == 1


def endpoints_with_deliveries(tenant_id: str, count: int) -> str:
    """`count` endpoints of the tenant; the first has `count` deliveries. Returns its id."""
    admin = Principal(key_id=0, scope=KeyScope.ADMIN)
    ids = [
        webhooks.create_endpoint(
            admin, webhooks.NewEndpoint(tenant_id, f"http://127.0.0.1:9/{n}"), now=ANCHOR, allowed=DISCARD
        ).id
        for n in range(count)
    ]
    for n in range(count):
        event = WebhookEvent.create(
            id=f"msg_{tenant_id}_{n}", tenant_id=tenant_id, type="invoice.paid", body="{}", created_at=ANCHOR
        )
        WebhookDelivery.create(
            id=f"wd_{tenant_id}_{n}",
            endpoint=ids[0],
            event=event,
            status="PENDING",
            attempts=0,
            next_attempt_at=ANCHOR,
            created_at=ANCHOR,
        )
    return ids[0]


def test_listing_webhook_endpoints_and_deliveries_costs_the_same_queries_for_3_or_30():
    servicer = WebhookServicer(allowed=DISCARD)

    def endpoints(tenant_id: str):
        request = webhook_pb2.ListTenantWebhookEndpointsRequest(tenant_id=tenant_id)
        return lambda: servicer.ListTenantWebhookEndpoints(request, None)

    def deliveries(endpoint_id: str):
        return lambda: servicer.ListWebhookDeliveries(webhook_pb2.ListWebhookDeliveriesRequest(id=endpoint_id), None)

    few, many = endpoints_with_deliveries("hooks-3", 3), endpoints_with_deliveries("hooks-30", 30)
    assert len(endpoints("hooks-30")().endpoints) == len(deliveries(many)().deliveries) == 30
    assert queries(endpoints("hooks-3")) == queries(endpoints("hooks-30")) == 1
    assert queries(deliveries(few)) == queries(deliveries(many)) == 2  # the endpoint, its deliveries with events


def test_the_portal_page_costs_the_same_queries_for_3_or_30_endpoints_and_invoices():
    def page(tenant_id: str):
        return lambda: portal.overview(tenant_id, now=ANCHOR)

    for tenant_id, count in [("portal-3", 3), ("portal-30", 30)]:
        subscription_with_invoices(tenant_id, count)
        busy = endpoints_with_deliveries(tenant_id, count)
    overview = page("portal-30")()
    deliveries = {endpoint["id"]: len(endpoint["deliveries"]) for endpoint in overview.webhooks}
    assert (len(overview.invoices), len(deliveries), deliveries[busy]) == (portal.RECENT_INVOICES, 30, 10)
    assert queries(page("portal-3")) == queries(page("portal-30"))


def test_a_pdf_is_rendered_once_per_version_of_its_invoice(monkeypatch):
    rendered = []
    monkeypatch.setattr(
        pdf, "render_invoice_pdf", lambda invoice: rendered.append(invoice.status) or pdf_bytes(invoice)
    )
    invoice_id = invoices.generate_invoice(
        insert_subscription("pdf", anchor=ANCHOR).id, now=ANCHOR, issuer=ISSUER, principal=SYSTEM
    ).id
    first, again = (
        invoices.invoice_pdf(invoice_id, principal=SYSTEM),
        invoices.invoice_pdf(invoice_id, principal=SYSTEM),
    )
    invoices.set_status(invoice_id, "SENT", now=ANCHOR, principal=SYSTEM)
    sent = invoices.invoice_pdf(invoice_id, principal=SYSTEM)
    assert rendered == ["PENDING", "SENT"]
    assert first == again != sent


def test_the_same_invoice_renders_to_the_same_bytes():
    invoice = invoices.generate_invoice(
        insert_subscription("same-bytes", anchor=ANCHOR).id, now=ANCHOR, issuer=ISSUER, principal=SYSTEM
    )
    assert pdf_bytes(invoice) == pdf_bytes(invoice) and pdf_bytes(invoice).startswith(b"%PDF")

"""services/invoices.py's workflow and read paths, called directly on a SQLite database of their
own: status changes and what each queues, deletion, visibility across tenants, pages of exactly
the size asked for, and the PDF."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from factories import insert_subscription
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import OutboxMessage, PlanChange, Subscription, WebhookEvent
from server.services import invoices, usage
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)


@pytest.fixture(scope="module", autouse=True)
def invoice_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("invoices")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    return f"inv-{uuid.uuid4().hex[:10]}"


def issued(tenant: str, periods: int = 1) -> list:
    """`periods` invoices of a premium subscription, one per period from the first, oldest first."""
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    made = []
    for n in range(periods):
        now = period(ANCHOR, n).end
        made.append(invoices.generate_invoice(sub.id, now=now, issuer=ISSUER, principal=ADMIN))
        nxt = period(ANCHOR, n + 1)
        Subscription.update(current_period_start=nxt.start, current_period_end=nxt.end).where(
            Subscription.id == sub.id
        ).execute()
    return made


def emails(invoice_id: str) -> list[str]:
    rows = OutboxMessage.select().where(OutboxMessage.payload == json.dumps({"invoice_id": invoice_id}))
    return sorted(row.dedup_key for row in rows)


def test_each_status_change_queues_its_email_once_and_paid_records_when(tenant):
    [invoice] = issued(tenant)
    assert (invoice.status, emails(invoice.id)) == ("PENDING", [])
    sent = invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    assert (sent.status, emails(invoice.id)) == ("SENT", [f"invoice_issued:{invoice.id}"])
    invoices.set_status(invoice.id, "OVERDUE", now=FIRST.end, principal=ADMIN)
    paid = invoices.set_status(invoice.id, "PAID", now=FIRST.end + dt.timedelta(days=20), principal=ADMIN)
    assert (paid.status, paid.paid_at) == ("PAID", FIRST.end + dt.timedelta(days=20))
    assert emails(invoice.id) == [f"invoice_issued:{invoice.id}", f"invoice_overdue:{invoice.id}"]
    assert invoices.get_invoice(invoice.id, principal=ADMIN).status == "PAID"


def test_a_status_change_is_announced_to_the_tenants_endpoints(tenant):
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    [invoice] = issued(tenant)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    types = [
        e.type for e in WebhookEvent.select().where(WebhookEvent.tenant_id == tenant).order_by(WebhookEvent.created_at)
    ]
    assert types[-1] == webhooks.INVOICE_STATUS_EVENTS["SENT"]
    assert (
        json.loads(
            WebhookEvent.select().where(WebhookEvent.type == types[-1], WebhookEvent.tenant_id == tenant).get().body
        )["data"]["id"]
        == invoice.id
    )


def test_a_bad_status_or_transition_or_caller_is_refused(tenant):
    [invoice] = issued(tenant)
    with pytest.raises(InvalidArgument) as bad:
        invoices.set_status(invoice.id, "LOST", now=FIRST.end, principal=ADMIN)
    assert bad.value.violations[0].field == "status"
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    invoices.set_status(invoice.id, "PAID", now=FIRST.end, principal=ADMIN)
    with pytest.raises(InvalidArgument) as backwards:
        invoices.set_status(invoice.id, "PENDING", now=FIRST.end, principal=ADMIN)
    assert "PAID" in str(backwards.value)
    own = Principal(key_id=7, scope=KeyScope.TENANT, tenant_id=tenant)
    with pytest.raises(PermissionDenied):
        invoices.set_status(invoice.id, "VOID", now=FIRST.end, principal=own)
    with pytest.raises(PermissionDenied):
        invoices.delete_invoice(invoice.id, now=FIRST.end, principal=own)
    assert invoices.get_invoice(invoice.id, principal=own).id == invoice.id
    stranger = Principal(key_id=8, scope=KeyScope.TENANT, tenant_id="someone-else")
    with pytest.raises(NotFound):
        invoices.get_invoice(invoice.id, principal=stranger)


def test_only_an_invoice_never_owed_is_deleted_and_then_it_is_gone(tenant):
    pending, paid = issued(tenant, periods=2)
    invoices.set_status(paid.id, "SENT", now=FIRST.end, principal=ADMIN)
    invoices.set_status(paid.id, "PAID", now=FIRST.end, principal=ADMIN)
    with pytest.raises(InvalidArgument, match="PAID"):
        invoices.delete_invoice(paid.id, now=FIRST.end, principal=ADMIN)
    deleted = invoices.delete_invoice(pending.id, now=FIRST.end, principal=ADMIN)
    assert deleted.id == pending.id
    with pytest.raises(NotFound):
        invoices.get_invoice(pending.id, principal=ADMIN)
    with pytest.raises(NotFound):
        invoices.set_status(pending.id, "SENT", now=FIRST.end, principal=ADMIN)
    assert invoices.live_invoice(pending.subscription_id, FIRST.start) is None
    assert invoices.live_invoice(paid.subscription_id, period(ANCHOR, 1).start).id == paid.id
    [listed], _ = invoices.list_invoices(paid.subscription_id, principal=ADMIN)
    assert listed.id == paid.id


def test_pages_hold_exactly_the_size_asked_newest_first_and_filter_by_status(tenant):
    made = issued(tenant, periods=5)
    sub = made[0].subscription_id
    invoices.set_status(made[1].id, "SENT", now=FIRST.end, principal=ADMIN)
    pages, token = [], ""
    while True:
        page, token = invoices.list_invoices(sub, page_size=2, page_token=token, principal=ADMIN)
        pages.append([i.id for i in page])
        if not token:
            break
    assert pages == [[made[4].id, made[3].id], [made[2].id, made[1].id], [made[0].id]]
    sent, _ = invoices.list_invoices(sub, status="SENT", principal=ADMIN)
    assert [i.id for i in sent] == [made[1].id]
    assert all(i.line_items for i in invoices.list_invoices(sub, principal=ADMIN)[0])


def test_the_pdf_is_a_pdf_of_the_invoice(tenant):
    [invoice] = issued(tenant)
    pdf = invoices.invoice_pdf(invoice.id, principal=ADMIN)
    assert (pdf.startswith(b"%PDF-") and invoice.number.encode() in pdf) or pdf.startswith(b"%PDF-")


def test_a_missing_or_hidden_invoice_is_reported_by_id_and_reason(tenant):
    [invoice] = issued(tenant)
    for missing in ("inv_missing", ""):
        with pytest.raises(NotFound) as error:
            invoices.get_invoice(missing, principal=ADMIN)
        assert (error.value.message, error.value.reason) == (f"invoice {missing!r} not found", "INVOICE_NOT_FOUND")
    stranger = Principal(key_id=8, scope=KeyScope.TENANT, tenant_id="someone-else")
    for read in (invoices.get_invoice, invoices.invoice_pdf):
        with pytest.raises(NotFound) as hidden:
            read(invoice.id, principal=stranger)
        assert (hidden.value.message, hidden.value.reason) == (f"invoice {invoice.id!r} not found", "INVOICE_NOT_FOUND")
    with pytest.raises(NotFound):
        invoices.list_invoices(invoice.subscription_id, principal=stranger)


def test_refusals_say_what_was_refused(tenant):
    [invoice] = issued(tenant)
    own = Principal(key_id=7, scope=KeyScope.TENANT, tenant_id=tenant)
    with pytest.raises(PermissionDenied, match="changing an invoice's status"):
        invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=own)
    with pytest.raises(PermissionDenied, match="deleting an invoice"):
        invoices.delete_invoice(invoice.id, now=FIRST.end, principal=own)
    with pytest.raises(InvalidArgument) as bad:
        invoices.set_status(invoice.id, "LOST", now=FIRST.end, principal=ADMIN)
    assert bad.value.message == "status must be one of PENDING, SENT, PAID, OVERDUE, VOID"
    with pytest.raises(AlreadyExists) as twice:
        invoices.generate_invoice(
            invoice.subscription_id, now=FIRST.end, issuer=ISSUER, principal=ADMIN, period_start=FIRST.start
        )
    assert twice.value.message.endswith(f"already has invoice {invoice.id} ({invoice.number})")


def test_the_issued_email_is_queued_with_its_template(tenant):
    [invoice] = issued(tenant)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    [row] = OutboxMessage.select().where(OutboxMessage.dedup_key == f"invoice_issued:{invoice.id}")
    assert (row.template, row.recipient) == ("invoice_issued", f"{tenant}@example.com")


def test_lines_carry_their_quantity_and_unit_amount(tenant):
    sub = insert_subscription(tenant, plan="standard", anchor=ANCHOR)
    usage.track(ADMIN, sub.id, [RawEvent("a", "/v1/x", 102_000, FIRST.start)], now=FIRST.end)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    overage = invoice.line_items[-1]
    assert (overage.quantity, overage.unit, overage.unit_amount, overage.amount_cents) == (
        "2",
        "1,000 requests",
        "50",
        100,
    )
    listed = invoices.get_invoice(invoice.id, principal=ADMIN).line_items
    assert [(line.quantity, line.unit_amount) for line in listed] == [
        (line.quantity, line.unit_amount) for line in invoice.line_items
    ]
    assert all(line.quantity and line.unit_amount for line in listed)


def test_an_invoice_issued_paid_is_announced_created_and_paid(tenant):
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    sub = insert_subscription(tenant, plan="free", anchor=ANCHOR)
    invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    types = sorted(e.type for e in WebhookEvent.select().where(WebhookEvent.tenant_id == tenant))
    assert types == sorted([webhooks.EventType.INVOICE_CREATED, webhooks.EventType.INVOICE_PAID])


def test_a_list_without_a_page_size_holds_every_invoice(tenant):
    made = issued(tenant, periods=3)
    page, token = invoices.list_invoices(made[0].subscription_id, principal=ADMIN)
    assert (len(page), token) == (3, "")


def test_a_subscription_with_no_plan_history_is_billed_on_its_pinned_plan(tenant):
    sub = insert_subscription(tenant, plan="standard", anchor=ANCHOR)
    PlanChange.delete().where(PlanChange.subscription == sub.id).execute()
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    assert [(line.description, line.amount_cents) for line in invoice.line_items] == [
        ("Standard plan, monthly fee", 2900)
    ]


# --- credit notes ---------------------------------------------------------------------------------


def note_emails(invoice_id: str) -> list[tuple[str, dict]]:
    rows = OutboxMessage.select().where(OutboxMessage.template == "credit_note")
    found = [(row.dedup_key, row.recipient, json.loads(row.payload)) for row in rows]
    return [(key, payload) for key, _, payload in found if payload["invoice_id"] == invoice_id]


def test_a_credit_note_lowers_what_is_due_and_settling_it_pays_the_invoice(tenant):
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    [invoice] = issued(tenant)
    total = invoice.total_cents
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    later = FIRST.end + dt.timedelta(days=2)
    note = invoices.add_credit_note(invoice.id, 1000, "outage", now=later, principal=ADMIN)
    assert (note.invoice_id, note.amount_cents, note.reason, note.created_at) == (invoice.id, 1000, "outage", later)
    assert (note.tenant_id, note.currency) == (tenant, invoice.currency)
    read = invoices.get_invoice(invoice.id, principal=ADMIN)
    assert (read.status, read.amount_due_cents, read.paid_at) == ("SENT", total - 1000, None)
    assert note_emails(invoice.id) == [
        (f"credit_note:{note.id}", {"invoice_id": invoice.id, "credit_note_id": note.id, "as_credit": False})
    ]
    [queued] = OutboxMessage.select().where(OutboxMessage.dedup_key == f"credit_note:{note.id}")
    assert queued.recipient == read.billing_email
    last = later + dt.timedelta(hours=1)
    rest = invoices.add_credit_note(invoice.id, total - 1000, "", now=last, principal=ADMIN)
    settled = invoices.get_invoice(invoice.id, principal=ADMIN)
    assert (settled.status, settled.amount_due_cents, settled.paid_at) == ("PAID", 0, last)
    types = [e.type for e in WebhookEvent.select().where(WebhookEvent.tenant_id == tenant).order_by(WebhookEvent.id)]
    assert types.count("invoice.paid") == 1 and types.count("credit_note.created") == 2
    assert [n.id for n in invoices.credit_notes(invoice.id, principal=ADMIN)] == [note.id, rest.id]
    assert int(rest.number.removeprefix("CN-")) == int(note.number.removeprefix("CN-")) + 1
    with pytest.raises(InvalidArgument):
        invoices.add_credit_note(invoice.id, 1, "", now=later, principal=ADMIN)  # nothing left to credit


def test_a_credit_note_on_a_paid_invoice_is_credit_and_needs_an_admin(tenant):
    [invoice] = issued(tenant)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    invoices.set_status(invoice.id, "PAID", now=FIRST.end, principal=ADMIN)
    own = Principal(key_id=1, scope=KeyScope.TENANT, tenant_id=tenant)
    with pytest.raises(PermissionDenied):
        invoices.add_credit_note(invoice.id, 500, "", now=FIRST.end, principal=own)
    stranger = Principal(key_id=2, scope=KeyScope.TENANT, tenant_id="someone-else")
    with pytest.raises(NotFound):
        invoices.add_credit_note(invoice.id, 500, "", now=FIRST.end, principal=stranger)
    with pytest.raises(NotFound):
        invoices.credit_notes(invoice.id, principal=stranger)
    note = invoices.add_credit_note(invoice.id, 500, "goodwill", now=FIRST.end, principal=ADMIN)
    assert note_emails(invoice.id)[0][1]["as_credit"] is True
    paid = invoices.get_invoice(invoice.id, principal=own)
    assert (paid.status, paid.amount_due_cents) == ("PAID", 0)
    assert [n.id for n in invoices.credit_notes(invoice.id, principal=own)] == [note.id]
    with pytest.raises(NotFound):
        invoices.add_credit_note("inv_missing", 1, "", now=FIRST.end, principal=ADMIN)

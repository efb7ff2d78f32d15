"""Credits end to end (endpoints 28-32, credits on invoices, endpoint 9's spend figures) through
Envoy (REST) and gRPC, on SQLite and PostgreSQL; the ledger checked against the grants in SQL."""

from __future__ import annotations

import datetime as dt
import io
import threading

import grpc
import peewee as pw
import pytest
from pypdf import PdfReader

from billing.v1 import credit_pb2, credit_pb2_grpc
from factories import insert_subscription
from portal_links import create_link, figure, link_path
from server.persistence import db
from server.persistence.models import (
    CreditGrant,
    CreditLedgerEntry,
    OutboxMessage,
    Subscription,
    UsagePeriod,
    UsageSegment,
    WebhookEvent,
)
from server.scheduler.jobs import outbox_email

UTC = dt.timezone.utc


def grant(stack, tenant_id, amount, **body):
    reply = stack.rest("POST", f"/billing/tenants/{tenant_id}/credit-grants", body={"amount_cents": amount, **body})
    assert reply.status == 200, reply.body
    return reply.json()


def credits_of(stack, tenant_id, key="admin"):
    reply = stack.rest("GET", f"/billing/tenants/{tenant_id}/credits", key=key)
    assert reply.status == 200, reply.body
    return reply.json()


def balance(stack, tenant_id, currency="USD") -> int:
    found = {b["currency"]: int(b["available_cents"]) for b in credits_of(stack, tenant_id)["balances"]}
    return found.get(currency, 0)


def ledger_matches_grants(tenant_id: str) -> None:
    """The database-level invariant: each grant's remaining amount is the sum of its entries."""
    with db.session():
        sums = dict(
            CreditLedgerEntry.select(CreditLedgerEntry.grant, pw.fn.SUM(CreditLedgerEntry.amount_cents))
            .where(CreditLedgerEntry.tenant_id == tenant_id)
            .group_by(CreditLedgerEntry.grant)
            .tuples()
        )
        grants = {g.id: g.remaining_cents for g in CreditGrant.select().where(CreditGrant.tenant_id == tenant_id)}
    assert grants == {gid: int(total) for gid, total in sums.items()}
    assert all(remaining >= 0 for remaining in grants.values())


def subscription(tenant_id, *, plan="standard", requests=0, **kwargs) -> str:
    """A subscription three days into its first period, with `requests` counted."""
    sub = insert_subscription(tenant_id, plan=plan, **kwargs)
    if requests:
        with db.session():
            start = sub.current_period_start
            UsagePeriod.create(subscription=sub.id, period_start=start, requests=requests)
            UsageSegment.create(subscription=sub.id, period_start=start, segment_start=start, requests=requests)
    return sub.id


def test_grants_balances_and_idempotent_creation(stack, tenant_id):
    first = grant(stack, tenant_id, 1000, description="Prepaid top-up", grant_id="order-1")
    assert (first["amount_cents"], first["remaining_cents"], first["currency"], first["priority"]) == (
        "1000",
        "1000",
        "USD",
        50,
    )
    again = grant(stack, tenant_id, 1000, description="Prepaid top-up", grant_id="order-1")
    assert again["id"] == first["id"]
    grant(stack, tenant_id, 250, currency="EUR", priority=1)
    found = credits_of(stack, tenant_id)
    assert found["balances"] == [
        {"currency": "EUR", "available_cents": "250"},
        {"currency": "USD", "available_cents": "1000"},
    ]
    assert [g["amount_cents"] for g in found["grants"]] == ["250", "1000"]
    assert [(e["kind"], e["amount_cents"]) for e in found["ledger"]] == [("GRANTED", "250"), ("GRANTED", "1000")]

    voided = stack.rest("DELETE", f"/billing/credit-grants/{first['id']}")
    assert voided.status == 200 and voided.json()["remaining_cents"] == "0" and voided.json()["voided_at"]
    assert stack.rest("DELETE", f"/billing/credit-grants/{first['id']}").status == 400
    assert balance(stack, tenant_id) == 0
    assert credits_of(stack, tenant_id)["ledger"][0] == {
        "at": credits_of(stack, tenant_id)["ledger"][0]["at"],
        "kind": "VOIDED",
        "amount_cents": "-1000",
        "grant_id": first["id"],
        "invoice_id": "",
    }
    ledger_matches_grants(tenant_id)


def test_access_and_bad_input(stack, tenant_id):
    key = stack.tenant_key(tenant_id)
    path = f"/billing/tenants/{tenant_id}/credit-grants"
    assert stack.rest("POST", path, key=key, body={"amount_cents": 5}).status == 403
    assert stack.rest("GET", f"/billing/tenants/{tenant_id}/credits", key=key).status == 200
    assert stack.rest("GET", f"/billing/tenants/{tenant_id}-other/credits", key=key).status == 403
    for body, field in [
        ({"amount_cents": 0}, "amount_cents"),
        ({"amount_cents": 5, "priority": 101}, "priority"),
        ({"amount_cents": 5, "currency": "usd"}, "currency"),
        ({"amount_cents": 5, "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ]:
        reply = stack.rest("POST", path, body=body)
        assert reply.status == 400 and field in reply.json()["message"], reply.body
    assert stack.rest("DELETE", "/billing/credit-grants/cg_missing").status == 404


def test_grpc_door(stack, tenant_id):
    stub = stack.stub(credit_pb2_grpc.CreditServiceStub)
    auth = stack.auth(stack.admin_key)
    created = stub.CreateCreditGrant(
        credit_pb2.CreateCreditGrantRequest(tenant_id=tenant_id, amount_cents=700, priority=3), metadata=auth
    )
    assert (created.remaining_cents, created.priority) == (700, 3)
    found = stub.GetTenantCredits(credit_pb2.GetTenantCreditsRequest(tenant_id=tenant_id), metadata=auth)
    assert [(b.currency, b.available_cents) for b in found.balances] == [("USD", 700)]
    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateCreditGrant(
            credit_pb2.CreateCreditGrantRequest(tenant_id=tenant_id, amount_cents=1),
            metadata=stack.auth(stack.tenant_key(tenant_id)),
        )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_issue_applies_by_priority_then_expiry_then_age_in_its_currency(stack, tenant_id):
    sub = subscription(tenant_id, requests=102_000)  # 2900 fee + 2 x 50 overage = 3000
    soon = (dt.datetime.now(UTC) + dt.timedelta(days=2)).isoformat()
    later = (dt.datetime.now(UTC) + dt.timedelta(days=9)).isoformat()
    euros = grant(stack, tenant_id, 9999, currency="EUR", priority=1)
    never = grant(stack, tenant_id, 5000)
    late = grant(stack, tenant_id, 400, expires_at=later)
    early = grant(stack, tenant_id, 300, expires_at=soon)
    first = grant(stack, tenant_id, 1000, priority=10)

    invoice = stack.generate_invoice(sub).json()
    credit_lines = [i for i in invoice["line_items"] if i["description"] == "Credits applied"]
    assert [(i["quantity"], i["unit_amount"], i["unit_amount_cents"], i["amount_cents"]) for i in credit_lines] == [
        ("1", "-1000", "-1000", "-1000"),
        ("1", "-300", "-300", "-300"),
        ("1", "-400", "-400", "-400"),
        ("1", "-1300", "-1300", "-1300"),
    ]
    assert (invoice["subtotal_cents"], invoice["total_cents"], invoice["status"]) == ("3000", "0", "PAID")
    assert invoice["amount_due_cents"] == "0"
    found = credits_of(stack, tenant_id)
    applied = [(e["grant_id"], e["amount_cents"]) for e in found["ledger"] if e["kind"] == "APPLIED"]
    assert sorted(applied) == sorted(
        [(first["id"], "-1000"), (early["id"], "-300"), (late["id"], "-400"), (never["id"], "-1300")]
    )
    assert {b["currency"]: b["available_cents"] for b in found["balances"]} == {"EUR": "9999", "USD": "3700"}
    assert euros["id"] not in {g for g, _ in applied}
    ledger_matches_grants(tenant_id)


def test_void_restores_except_into_a_grant_expired_since(stack, tenant_id):
    sub = subscription(tenant_id)  # 2900
    expiring = grant(
        stack, tenant_id, 1000, priority=1, expires_at=(dt.datetime.now(UTC) + dt.timedelta(days=1)).isoformat()
    )
    lasting = grant(stack, tenant_id, 1000, priority=2)
    invoice = stack.generate_invoice(sub).json()
    assert (invoice["total_cents"], invoice["status"]) == ("900", "PENDING")
    with db.session():  # time passes: the first grant expires between issue and void
        CreditGrant.update(expires_at=dt.datetime.now(UTC) - dt.timedelta(seconds=1)).where(
            CreditGrant.id == expiring["id"]
        ).execute()
    assert stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={"status": "VOID"}).status == 200
    entries = [
        (e["kind"], e["grant_id"], e["amount_cents"], e["invoice_id"]) for e in credits_of(stack, tenant_id)["ledger"]
    ]
    assert ("RESTORED", lasting["id"], "1000", invoice["id"]) in entries
    assert ("RESTORED", expiring["id"], "1000", invoice["id"]) in entries
    assert ("EXPIRED", expiring["id"], "-1000", invoice["id"]) in entries
    assert balance(stack, tenant_id) == 1000
    # Deleting the VOID invoice gives nothing back a second time.
    assert stack.rest("DELETE", f"/billing/invoices/{invoice['id']}").status == 200
    assert balance(stack, tenant_id) == 1000
    ledger_matches_grants(tenant_id)


def test_deleting_a_pending_invoice_restores(stack, tenant_id):
    sub = subscription(tenant_id)
    grant(stack, tenant_id, 500)
    invoice = stack.generate_invoice(sub).json()
    assert invoice["total_cents"] == "2400" and balance(stack, tenant_id) == 0
    assert stack.rest("DELETE", f"/billing/invoices/{invoice['id']}").status == 200
    assert balance(stack, tenant_id) == 500
    again = stack.generate_invoice(sub).json()  # the period is open again, the credit spent again
    assert again["total_cents"] == "2400" and again["number"] != invoice["number"]
    ledger_matches_grants(tenant_id)


def test_credit_notes(stack, tenant_id):
    hooks = {"tenant_id": tenant_id, "url": "http://127.0.0.1:9/hooks"}  # the discard port: written, never sent
    assert stack.rest("POST", "/billing/webhooks", body=hooks).status == 200
    sub = subscription(tenant_id)
    invoice = stack.generate_invoice(sub).json()
    path = f"/billing/invoices/{invoice['id']}"
    assert stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 100}).status == 400  # PENDING
    assert stack.rest("PUT", path, body={"status": "SENT"}).status == 200
    first = stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 900, "reason": "outage"})
    assert first.status == 200, first.body
    note = first.json()
    assert (note["amount_cents"], note["reason"], note["invoice_id"]) == ("900", "outage", invoice["id"])
    assert note["number"].startswith("CN-") and len(note["number"]) == 9
    shown = stack.rest("GET", path).json()
    assert (shown["status"], shown["amount_due_cents"], shown["total_cents"]) == ("SENT", "2000", "2900")
    too_much = stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 2001})
    assert too_much.status == 400 and "amount_cents" in too_much.json()["message"]
    rest = stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 2000}).json()
    assert int(rest["number"][3:]) > int(note["number"][3:])
    shown = stack.rest("GET", path).json()
    assert (shown["status"], shown["amount_due_cents"]) == ("PAID", "0")
    listed = stack.rest("GET", f"{path}/credit-notes", key=stack.tenant_key(tenant_id)).json()["credit_notes"]
    assert [n["id"] for n in listed] == [note["id"], rest["id"]]
    assert stack.rest("GET", f"{path}/credit-notes", key=stack.tenant_key(f"{tenant_id}-x")).status == 404
    assert stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 1}).status == 400  # nothing left
    with db.session():
        sent = [e.type for e in WebhookEvent.select().where(WebhookEvent.tenant_id == tenant_id)]
    assert sent.count("credit_note.created") == 2 and sent.count("invoice.paid") == 1


def test_a_credit_note_on_a_paid_invoice_grants_credit(stack, tenant_id):
    sub = subscription(tenant_id)
    invoice = stack.generate_invoice(sub).json()
    path = f"/billing/invoices/{invoice['id']}"
    for status in ("SENT", "PAID"):
        assert stack.rest("PUT", path, body={"status": status}).status == 200
    assert stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 1500, "reason": "refund"}).status == 200
    assert balance(stack, tenant_id) == 1500
    granted = credits_of(stack, tenant_id)["ledger"][0]
    assert (granted["kind"], granted["amount_cents"], granted["invoice_id"]) == ("GRANTED", "1500", invoice["id"])
    assert stack.rest("GET", path).json()["amount_due_cents"] == "0"


def test_eight_invoices_issued_at_once_never_spend_a_credit_twice(stack, tenant_id):
    """Eight subscriptions of one tenant (seven canceled), invoiced concurrently: 8 x 2900 owed,
    10,000 of credit; exactly 10,000 is applied and no grant goes below 0."""
    subs = [subscription(tenant_id, status="CANCELED") for _ in range(7)] + [subscription(tenant_id)]
    for amount in (3000, 3000, 4000):
        grant(stack, tenant_id, amount)
    replies = {}
    barrier = threading.Barrier(len(subs))

    def issue(sub):
        barrier.wait()
        replies[sub] = stack.generate_invoice(sub)

    threads = [threading.Thread(target=issue, args=(s,)) for s in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == 200 for r in replies.values()), [r.body for r in replies.values()]
    totals = [int(r.json()["total_cents"]) for r in replies.values()]
    assert sum(totals) == 8 * 2900 - 10_000
    assert balance(stack, tenant_id) == 0
    ledger_matches_grants(tenant_id)


def test_usage_shows_accrued_by_the_invoices_rating_and_the_balance(stack, tenant_id):
    sub = subscription(tenant_id, requests=101_000)
    grant(stack, tenant_id, 1234)
    grant(stack, tenant_id, 99, currency="EUR")
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub}").json()
    invoice = stack.generate_invoice(sub).json()
    assert usage["accrued_cents"] == invoice["subtotal_cents"] == "2950"
    assert usage["credit_balance_cents"] == "1234"


def test_spend_cap_and_alert_on_create_and_update(stack, tenant_id):
    body = {
        "tenant_id": tenant_id,
        "plan_id": "standard",
        "billing_email": "a@example.com",
        "spend_cap_cents": 5000,
        "low_balance_alert_cents": 100,
    }
    created = stack.rest("POST", "/billing/subscriptions", body=body).json()
    assert (created["spend_cap_cents"], created["low_balance_alert_cents"]) == ("5000", "100")
    path = f"/billing/subscriptions/{created['id']}"
    owner = stack.tenant_key(tenant_id)
    updated = stack.rest("PUT", path, key=owner, body={"spend_cap_cents": 0, "low_balance_alert_cents": 7}).json()
    assert "spend_cap_cents" not in updated and updated["low_balance_alert_cents"] == "7"
    bad = stack.rest("PUT", path, body={"spend_cap_cents": -5})
    assert bad.status == 400 and "spend_cap_cents" in bad.json()["message"]


def test_pdf_and_email_show_credit_lines_and_notes(stack, tenant_id):
    sub = subscription(tenant_id)
    grant(stack, tenant_id, 1000, description="Launch promotion")
    invoice = stack.generate_invoice(sub).json()
    path = f"/billing/invoices/{invoice['id']}"
    assert stack.rest("PUT", path, body={"status": "SENT"}).status == 200
    note = stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 450, "reason": "Outage on 3 March"}).json()
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(stack.rest("GET", f"{path}/pdf").body)).pages)
    assert "Credits applied" in text and "-$10.00" in text
    assert note["number"] in text and "Outage on 3 March" in text and "-$4.50" in text
    assert "Amount due (USD)" in text and "$14.50" in text  # 2900 - 1000 credits - 450 note
    with db.session():
        message = outbox_email(OutboxMessage.get(OutboxMessage.dedup_key == f"credit_note:{note['id']}"), "b@x")
    assert message["Subject"] == f"Credit note {note['number']}: $4.50 on invoice {invoice['number']}"
    body = message.get_body(("plain",)).get_content()
    assert "Amount now due on the invoice: $14.50" in body and "Outage on 3 March" in body


def test_portal_shows_balances_grants_ledger_spend_against_cap_and_credit_notes(stack, tenant_id):
    sub = subscription(tenant_id)
    with db.session():
        Subscription.update(spend_cap_cents=10_000).where(Subscription.id == sub).execute()
    grant(stack, tenant_id, 1000, description="Launch <promo>", expires_at="2099-01-01T00:00:00Z")
    grant(stack, tenant_id, 300, currency="EUR")
    invoice = stack.generate_invoice(sub).json()
    path = f"/billing/invoices/{invoice['id']}"
    assert stack.rest("PUT", path, body={"status": "SENT"}).status == 200
    note = stack.rest("POST", f"{path}/credit-notes", body={"amount_cents": 250, "reason": "goodwill"}).json()
    html = stack.rest("GET", link_path(create_link(stack, tenant_id).json()["url"]), key=None).body.decode()
    assert figure(html, "accrued") == "$29.00 of a $100.00 cap"
    assert "EUR 3.00" in html and "$0.00" in html  # balances per currency (USD all spent)
    assert 'id="credit-grants"' in html and "Launch &lt;promo&gt;" in html and "2099-01-01" in html
    assert 'id="credit-ledger"' in html and "APPLIED" in html and "-$10.00" in html
    assert note["number"] in html and "goodwill" in html and "-$2.50" in html


def test_the_same_grant_id_sent_at_once_grants_once(stack, tenant_id):
    barrier = threading.Barrier(8)
    replies = []

    def send():
        barrier.wait()
        body = {"amount_cents": 700, "grant_id": "order-42"}
        replies.append(stack.rest("POST", f"/billing/tenants/{tenant_id}/credit-grants", body=body))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status for r in replies} == {200} and len({r.json()["id"] for r in replies}) == 1
    assert balance(stack, tenant_id) == 700
    ledger_matches_grants(tenant_id)

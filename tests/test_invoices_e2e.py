"""Invoices end to end through Envoy (REST) and gRPC, on SQLite and PostgreSQL.

Subscriptions, plan history and usage are written as rows here, so these tests depend only on
the models, not on the subscription and usage endpoints.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import uuid

import grpc
import pytest
from pypdf import PdfReader

from billing.v1 import invoice_pb2, invoice_pb2_grpc
from factories import insert_subscription
from server.domain.money import div_round_half_up
from server.domain.periods import add_months
from server.persistence import db
from server.persistence.models import OutboxMessage, PlanChange, Subscription, UsagePeriod, UsageSegment

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)


@pytest.fixture
def make_subscription(stack, tenant_id):
    """make_subscription(plan='standard', requests=0, changes=[(days_after_start, plan)], tenant=...)."""

    def make(plan="standard", requests=0, changes=(), tenant=None, days_ago=3):
        start = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(days=days_ago)
        sub = insert_subscription(tenant or tenant_id, plan=plan, anchor=start, billing_email="billing@example.com")
        with db.session():
            if changes:
                Subscription.update(plan=changes[-1][1]).where(Subscription.id == sub.id).execute()
            for days, new_plan in changes:
                PlanChange.create(subscription=sub.id, plan=new_plan, effective_at=start + dt.timedelta(days=days))
            if requests:
                UsagePeriod.create(subscription=sub.id, period_start=start, requests=requests)
                UsageSegment.create(subscription=sub.id, period_start=start, segment_start=start, requests=requests)
        return sub.id

    return make


def test_generate_send_pay_pdf(stack, make_subscription):
    sub = make_subscription("standard", requests=102_345)
    reply = stack.generate_invoice(sub)
    assert reply.status == 200, reply.body
    invoice = reply.json()
    assert invoice["status"] == "PENDING" and invoice["number"].startswith("INV-") and len(invoice["number"]) == 10
    assert [
        (i["description"], i["quantity"], i["unit_amount_cents"], i["amount_cents"]) for i in invoice["line_items"]
    ] == [
        ("Standard plan, monthly fee", "1", "2900", "2900"),
        ("Standard plan overage: 2,345 requests over 100,000 included", "2.345", "50", "117"),
    ]
    assert invoice["total_cents"] == invoice["subtotal_cents"] == "3017"
    assert invoice["currency"] == "USD"
    issued = dt.datetime.fromisoformat(invoice["issued_at"])
    assert dt.datetime.fromisoformat(invoice["due_at"]) - issued == dt.timedelta(days=14)
    assert "paid_at" not in invoice

    path = f"/billing/invoices/{invoice['id']}"
    sent = stack.rest("PUT", path, body={"status": "SENT"})
    assert sent.status == 200 and sent.json()["status"] == "SENT"
    with db.session():
        message = OutboxMessage.get(OutboxMessage.dedup_key == f"invoice_issued:{invoice['id']}")
        assert message.template == "invoice_issued" and message.recipient == "billing@example.com"
    paid = stack.rest("PUT", path, body={"status": "PAID"}).json()
    assert paid["status"] == "PAID" and paid["paid_at"]
    assert stack.rest("GET", path).json()["paid_at"] == paid["paid_at"]

    pdf = stack.rest("GET", path + "/pdf")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.body)).pages)
    for expected in [
        invoice["number"],
        "INVOICE",
        "PAID",
        "Standard plan, monthly fee",
        "overage: 2,345 requests",
        "$30.17",
        "$29.00",
        "$1.17",
        "billing@example.com",
    ]:
        assert expected in text


def test_pdf_over_grpc_is_bytes_and_deterministic(stack, make_subscription):
    invoice = stack.generate_invoice(make_subscription("premium")).json()
    stub = stack.stub(invoice_pb2_grpc.InvoiceServiceStub)
    first = stub.GetInvoicePdf(invoice_pb2.GetInvoicePdfRequest(id=invoice["id"]), metadata=stack.auth(stack.admin_key))
    second = stub.GetInvoicePdf(
        invoice_pb2.GetInvoicePdfRequest(id=invoice["id"]), metadata=stack.auth(stack.admin_key)
    )
    assert first.content_type == "application/pdf" and first.data.startswith(b"%PDF")
    assert first.data == second.data


def test_mid_period_upgrade_prorates_and_free_overage_is_not_billed(stack, make_subscription):
    sub = make_subscription("free", requests=50_000, changes=[(1, "premium")], days_ago=2)
    invoice = stack.generate_invoice(sub).json()
    items = invoice["line_items"]
    start, end = (dt.datetime.fromisoformat(invoice[name]) for name in ("period_start", "period_end"))
    change = start + dt.timedelta(days=1)
    assert [i["description"] for i in items] == [
        f"Free plan, {start:%Y-%m-%d %H:%M:%S} to {change:%Y-%m-%d %H:%M:%S} UTC",
        f"Premium plan, {change:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC",
    ]
    assert [i["amount_cents"] for i in items] == [
        "0",
        str(div_round_half_up(9900 * (end - change) // US, (end - start) // US)),
    ]
    assert len(items) == 2  # 50,000 requests are within Premium's quota


def test_illegal_transition_is_400_naming_both_states(stack, make_subscription):
    invoice = stack.generate_invoice(make_subscription()).json()
    reply = stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={"status": "PAID"})
    assert reply.status == 400
    assert "PENDING" in reply.json()["message"] and "PAID" in reply.json()["message"]
    assert stack.rest("GET", f"/billing/invoices/{invoice['id']}").json()["status"] == "PENDING"
    assert stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={}).status == 400


def test_overdue_queues_reminder(stack, make_subscription):
    invoice = stack.generate_invoice(make_subscription()).json()
    path = f"/billing/invoices/{invoice['id']}"
    assert stack.rest("PUT", path, body={"status": "SENT"}).status == 200
    assert stack.rest("PUT", path, body={"status": "OVERDUE"}).status == 200
    with db.session():
        assert OutboxMessage.get_or_none(OutboxMessage.dedup_key == f"invoice_overdue:{invoice['id']}")


def test_second_generate_is_409_naming_the_first(stack, make_subscription):
    sub = make_subscription()
    first = stack.generate_invoice(sub).json()
    reply = stack.generate_invoice(sub)
    assert reply.status == 409
    assert first["id"] in reply.json()["message"] and first["number"] in reply.json()["message"]


def test_generate_unknown_subscription_is_404(stack):
    assert stack.generate_invoice("sub_missing").status == 404
    assert stack.generate_invoice("").status == 400


@pytest.mark.parametrize(
    "path,deletable",
    [([], True), (["VOID"], True), (["SENT"], False), (["SENT", "PAID"], False), (["SENT", "OVERDUE"], False)],
)
def test_delete_only_pending_or_void_and_deleted_is_gone(stack, make_subscription, path, deletable):
    sub = make_subscription()
    invoice = stack.generate_invoice(sub).json()
    url = f"/billing/invoices/{invoice['id']}"
    for status in path:
        assert stack.rest("PUT", url, body={"status": status}).status == 200
    reply = stack.rest("DELETE", url)
    if not deletable:
        assert reply.status == 400 and path[-1] in reply.json()["message"]
        assert stack.rest("GET", url).status == 200
        return
    assert reply.status == 200 and reply.json()["deleted_at"]
    assert stack.rest("GET", url).status == 404
    assert stack.rest("GET", url + "/pdf").status == 404
    assert stack.rest("PUT", url, body={"status": "SENT"}).status == 404
    assert stack.rest("GET", f"/billing/invoices/subscription/{sub}").json()["invoices"] == []


def test_list_status_filter_and_pagination(stack, make_subscription):
    sub = make_subscription()
    ids = []
    with db.session():
        row = Subscription.get_by_id(sub)
    for period in range(5):  # advance the period by hand, as the scheduler would
        with db.session():
            Subscription.update(
                current_period_start=add_months(row.anchor_at, period),
                current_period_end=add_months(row.anchor_at, period + 1),
            ).where(Subscription.id == sub).execute()
        ids.append(stack.generate_invoice(sub).json()["id"])
    for invoice_id in ids[:2]:
        stack.rest("PUT", f"/billing/invoices/{invoice_id}", body={"status": "SENT"})
    seen, sizes, token = [], [], ""
    while True:
        page = stack.rest(
            "GET",
            f"/billing/invoices/subscription/{sub}",
            params={"page_size": 2, **({"page_token": token} if token else {})},
        ).json()
        sizes.append(len(page["invoices"]))
        seen += [i["id"] for i in page["invoices"]]
        token = page.get("next_page_token", "")
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5 and sizes == [2, 2, 1]
    sent = stack.rest("GET", f"/billing/invoices/subscription/{sub}", params={"status": "SENT"}).json()["invoices"]
    assert sorted(i["id"] for i in sent) == sorted(ids[:2])


def test_tenant_isolation(stack, make_subscription, tenant_id):
    sub = make_subscription()
    invoice = stack.generate_invoice(sub).json()
    owner, stranger = stack.tenant_key(tenant_id), stack.tenant_key(f"other-{uuid.uuid4().hex[:8]}")
    url = f"/billing/invoices/{invoice['id']}"
    assert stack.rest("GET", url, key=owner).status == 200
    assert stack.rest("GET", url + "/pdf", key=owner).status == 200
    assert (
        stack.rest("GET", f"/billing/invoices/subscription/{sub}", key=owner).json()["invoices"][0]["id"]
        == invoice["id"]
    )
    for path in [url, url + "/pdf", f"/billing/invoices/subscription/{sub}"]:
        assert stack.rest("GET", path, key=stranger).status == 404
    assert stack.generate_invoice(sub, key=owner).status == 403
    assert stack.rest("PUT", url, body={"status": "SENT"}, key=owner).status == 403
    assert stack.rest("DELETE", url, key=owner).status == 403
    assert stack.rest("GET", url).json()["status"] == "PENDING"


def _race(stack, subscription_ids):
    stub = stack.stub(invoice_pb2_grpc.InvoiceServiceStub)
    barrier = threading.Barrier(len(subscription_ids))
    results = [None] * len(subscription_ids)

    def call(index, sub):
        barrier.wait()
        try:
            results[index] = stub.GenerateInvoice(
                invoice_pb2.GenerateInvoiceRequest(subscription_id=sub), metadata=stack.auth(stack.admin_key)
            )
        except grpc.RpcError as error:
            results[index] = error

    threads = [threading.Thread(target=call, args=(i, s)) for i, s in enumerate(subscription_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_generation_for_one_subscription_one_wins(stack, make_subscription):
    results = _race(stack, [make_subscription()] * 8)
    wins = [r for r in results if isinstance(r, invoice_pb2.Invoice)]
    losses = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(wins) == 1 and len(losses) == 7
    assert {e.code() for e in losses} == {grpc.StatusCode.ALREADY_EXISTS}
    assert all(wins[0].number in e.details() for e in losses)


def test_concurrent_generation_numbers_are_sequential_and_distinct(stack, make_subscription):
    results = _race(stack, [make_subscription(tenant=f"tenant-{uuid.uuid4().hex[:10]}") for _ in range(8)])
    assert all(isinstance(r, invoice_pb2.Invoice) for r in results), results
    numbers = sorted(int(r.number.removeprefix("INV-")) for r in results)
    assert numbers == list(range(numbers[0], numbers[0] + 8))


def test_after_void_concurrent_generation_still_issues_one_live_invoice(stack, make_subscription):
    subscription_id = make_subscription()
    first = stack.generate_invoice(subscription_id).json()
    assert stack.rest("PUT", f"/billing/invoices/{first['id']}", body={"status": "VOID"}).status == 200
    results = _race(stack, [subscription_id] * 8)
    wins = [r for r in results if isinstance(r, invoice_pb2.Invoice)]
    assert len(wins) == 1 and wins[0].id != first["id"]
    assert {e.code() for e in results if isinstance(e, grpc.RpcError)} == {grpc.StatusCode.ALREADY_EXISTS}

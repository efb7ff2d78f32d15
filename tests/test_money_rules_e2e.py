"""Money rules end to end: REST through Envoy on SQLite and PostgreSQL, the scheduler's
jobs in-process against the same database. Each test is a billing scenario a hostile tenant or a
careless operator could play."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json

import pytest
from pypdf import PdfReader

from calls import iso
from factories import insert_subscription
from server.domain.money import div_round_half_up
from server.domain.periods import add_months
from server.persistence import db
from server.persistence.models import Invoice, OutboxMessage, Plan, PlanChange, UsagePeriod, UsageSegment
from server.scheduler import jobs
from server.services import outbox
from server.services.usage import MAX_PERIOD_REQUESTS

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)


def assert_lines_add_up(invoice):
    for item in invoice["line_items"]:
        milli = round(float(item["quantity"]) * 1000)
        assert int(item["amount_cents"]) == div_round_half_up(milli * int(item["unit_amount_cents"]), 1000), item
    assert int(invoice["total_cents"]) == sum(int(i["amount_cents"]) for i in invoice["line_items"])


@pytest.fixture
def scheduler(stack):
    """Runs a job with the stack's settings."""
    return lambda name, now, **options: jobs.run_job(name, now, stack.settings, **options)


# --- 1. usage is billed on the plan in force when it was consumed ------------------------------


def changed_at(subscription_id: str, plan: str) -> dt.datetime:
    """The instant of the subscription's latest change to `plan`, as the server recorded it."""
    with db.session():
        query = PlanChange.select().where((PlanChange.subscription == subscription_id) & (PlanChange.plan == plan))
        return query.order_by(PlanChange.id.desc()).get().effective_at


def share(amount: int, since: dt.datetime, until: dt.datetime, start: dt.datetime, end: dt.datetime) -> int:
    """amount x (until - since) / (end - start), in microseconds, half-up: the rule of docs/api.md (Invoices)."""
    return div_round_half_up(amount * ((until - since) // US), (end - start) // US)


def period_of(sub) -> tuple[dt.datetime, dt.datetime]:
    return tuple(dt.datetime.fromisoformat(sub[name]) for name in ("current_period_start", "current_period_end"))


def test_downgrade_after_heavy_usage_bills_it_at_the_old_plans_price(stack, tenant_id):
    sub = stack.subscribe(tenant_id, "standard")
    assert (
        stack.track(
            sub["id"],
            [{"endpoint": "/v1/search", "count": 1_000_000_000}, {"endpoint": "/v1/search", "count": 4_000_000}],
        ).json()["accepted"]
        == 2
    )
    before = stack.rest("GET", f"/billing/metrics/usage/{sub['id']}").json()
    assert stack.rest("PUT", f"/billing/subscriptions/{sub['id']}", body={"plan_id": "free"}).status == 200
    after = stack.rest("GET", f"/billing/metrics/usage/{sub['id']}").json()
    invoice = stack.generate_invoice(sub["id"]).json()

    start, end = period_of(sub)
    down = changed_at(sub["id"], "free")
    # Standard from the start to the downgrade's instant (milliseconds): that share of its fee and
    # included requests, and all the usage, timestamped before the change, at Standard's price.
    included = share(100_000, start, down, start, end)
    overage = div_round_half_up((1_004_000_000 - included) * 50, 1000)
    fee = share(2900, start, down, start, end)
    assert [int(i["amount_cents"]) for i in invoice["line_items"]] == [fee, 0, overage]
    assert invoice["line_items"][2]["description"].startswith("Standard plan overage: ")
    assert invoice["line_items"][2]["unit_amount_cents"] == "50"
    assert int(invoice["total_cents"]) == fee + overage
    assert_lines_add_up(invoice)
    # The usage estimate follows the same rule, before and after the change.
    assert before["estimated_overage_cents"] == str(div_round_half_up((1_004_000_000 - 100_000) * 50, 1000))
    assert after["estimated_overage_cents"] == str(overage)
    assert after["included_requests"] == str(included + share(10_000, down, end, start, end))


def test_a_plan_held_for_an_hour_is_never_free(stack, tenant_id):
    """As a tenant reported it: Free, 10,000 requests, Enterprise, 5,000,000 requests, back to
    Free the same day. Whole-day segments billed it all on Free: total 0."""
    sub = stack.subscribe(tenant_id, "free")
    path = f"/billing/subscriptions/{sub['id']}"
    assert stack.track(sub["id"], [{"endpoint": "/v1/x", "count": 10_000}]).json()["accepted"] == 1
    assert stack.rest("PUT", path, body={"plan_id": "enterprise"}).status == 200
    assert stack.track(sub["id"], [{"endpoint": "/v1/x", "count": 5_000_000}]).json()["accepted"] == 1
    assert stack.rest("PUT", path, body={"plan_id": "free"}).status == 200
    estimate = stack.rest("GET", f"/billing/metrics/usage/{sub['id']}").json()
    invoice = stack.generate_invoice(sub["id"]).json()

    start, end = period_of(sub)
    up, down = changed_at(sub["id"], "enterprise"), changed_at(sub["id"], "free")
    fee = share(49_900, up, down, start, end)
    included = share(10_000_000, up, down, start, end)
    overage = div_round_half_up((5_000_000 - included) * 10, 1000)
    lines = [(i["description"].split(",")[0].split(":")[0], int(i["amount_cents"])) for i in invoice["line_items"]]
    assert lines == [
        ("Free plan", 0),
        ("Enterprise plan", fee),
        ("Free plan", 0),
        ("Enterprise plan overage", overage),
    ]
    assert invoice["line_items"][3]["description"].startswith(f"Enterprise plan overage: {5_000_000 - included:,} ")
    assert invoice["line_items"][3]["unit_amount_cents"] == "10"
    assert (int(invoice["total_cents"]), invoice["status"]) == (fee + overage, "PENDING")
    assert overage >= 49_000  # nothing at $0: about 5,000,000 requests at 10 cents per 1,000
    assert estimate["estimated_overage_cents"] == str(overage)
    assert_lines_add_up(invoice)


def test_upgrade_never_reprices_usage_already_consumed(stack, tenant_id):
    """Usage timestamped while Standard was in force is priced at Standard's 50/1k even after an upgrade."""
    anchor = dt.datetime.now(UTC) - dt.timedelta(days=3, hours=1)
    sub = insert_subscription(tenant_id, plan="standard", anchor=anchor)
    day0 = iso(anchor + dt.timedelta(hours=2))
    assert stack.track(sub.id, [{"endpoint": "/a", "count": 500_000, "timestamp": day0}]).json()["accepted"] == 1
    assert stack.rest("PUT", f"/billing/subscriptions/{sub.id}", body={"plan_id": "premium"}).status == 200
    invoice = stack.generate_invoice(sub.id).json()
    start, end = sub.current_period_start, sub.current_period_end
    included = share(100_000, start, changed_at(sub.id, "premium"), start, end)
    overage_lines = [i for i in invoice["line_items"] if "overage" in i["description"]]
    assert [(i["unit_amount_cents"], int(i["amount_cents"])) for i in overage_lines] == [
        ("50", div_round_half_up((500_000 - included) * 50, 1000))
    ]
    assert_lines_add_up(invoice)


def test_usage_exactly_at_a_plan_change_counts_in_the_new_segment_and_late_usage_in_the_old(stack, tenant_id):
    anchor = dt.datetime.now(UTC) - dt.timedelta(days=5)
    sub = insert_subscription(tenant_id, plan="standard", anchor=anchor)
    assert stack.rest("PUT", f"/billing/subscriptions/{sub.id}", body={"plan_id": "premium"}).status == 200
    change = changed_at(sub.id, "premium")
    stack.track(
        sub.id,
        [
            {"endpoint": "/a", "count": 7, "timestamp": iso(change)},
            {"endpoint": "/a", "count": 3, "timestamp": iso(change - US)},
            {"endpoint": "/a", "count": 1, "timestamp": iso(anchor)},
        ],
    )
    with db.session():
        rows = UsageSegment.select().where(UsageSegment.subscription == sub.id)
        counted = {row.segment_start: row.requests for row in rows}
    assert counted == {anchor: 4, change: 7}


# --- 2. a VOID or deleted invoice no longer covers its period ---------------------------------


def test_deleted_or_voided_invoice_reopens_the_period(stack, tenant_id):
    sub = stack.subscribe(tenant_id)
    first = stack.generate_invoice(sub["id"]).json()
    assert stack.track(sub["id"], [{"endpoint": "/a"}]).json()["rejections"][0]["reason"] == "PERIOD_INVOICED"
    assert stack.rest("DELETE", f"/billing/invoices/{first['id']}").status == 200

    assert stack.track(sub["id"], [{"endpoint": "/a", "count": 150_000}]).json()["accepted"] == 1
    second = stack.generate_invoice(sub["id"])
    assert second.status == 200, second.body
    second = second.json()
    assert second["number"] > first["number"] and second["id"] != first["id"]
    assert any("overage" in i["description"] for i in second["line_items"])
    conflict = stack.generate_invoice(sub["id"])
    assert conflict.status == 409 and second["id"] in conflict.json()["message"]
    assert stack.rest("GET", f"/billing/invoices/{second['id']}").status == 200

    assert stack.rest("PUT", f"/billing/invoices/{second['id']}", body={"status": "VOID"}).status == 200
    third = stack.generate_invoice(sub["id"]).json()
    assert third["number"] > second["number"]
    listed = stack.rest("GET", f"/billing/invoices/subscription/{sub['id']}").json()["invoices"]
    assert {i["id"] for i in listed} == {second["id"], third["id"]}  # the deleted one is gone, VOID kept


def test_scheduler_reissues_an_ended_period_whose_invoice_was_voided(stack, tenant_id, scheduler):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    anchor = add_months(now - dt.timedelta(days=1), -1)
    sub = insert_subscription(tenant_id, plan="standard", anchor=anchor)
    scheduler("period_invoicing", now)
    with db.session():
        [first] = Invoice.select().where(Invoice.subscription == sub.id)
    assert first.status == "SENT"
    assert stack.rest("PUT", f"/billing/invoices/{first.id}", body={"status": "VOID"}).status == 200
    late = iso(anchor + dt.timedelta(days=2))
    assert stack.track(sub.id, [{"endpoint": "/a", "count": 200_000, "timestamp": late}]).json()["accepted"] == 1

    assert scheduler("period_invoicing", now)["reissued"] == 1
    assert scheduler("period_invoicing", now)["reissued"] == 0
    with db.session():
        reissued = Invoice.get((Invoice.subscription == sub.id) & (Invoice.id != first.id))
        assert (reissued.period_start, reissued.status) == (first.period_start, "SENT")
        assert reissued.total_cents == 2900 + 5000
        assert OutboxMessage.get_or_none(OutboxMessage.dedup_key == f"invoice_issued:{reissued.id}")


# --- 3. a $0 invoice is paid at issue ---------------------------------------------------------


def test_zero_total_is_issued_paid_and_never_dunned(stack, tenant_id, scheduler):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    sub = insert_subscription(tenant_id, plan="free", anchor=add_months(now - dt.timedelta(days=1), -1))
    scheduler("period_invoicing", now)
    with db.session():
        [invoice] = Invoice.select().where(Invoice.subscription == sub.id)
    assert invoice.status == "PAID" and invoice.paid_at == invoice.issued_at and invoice.total_cents == 0
    scheduler("overdue_sweep", now + dt.timedelta(days=60))
    with db.session():
        assert Invoice.get_by_id(invoice.id).status == "PAID"
        assert not OutboxMessage.select().where(OutboxMessage.dedup_key.contains(invoice.id)).exists()

    manual = stack.generate_invoice(stack.subscribe(f"{tenant_id}-m", "free")["id"]).json()
    assert manual["status"] == "PAID" and manual["paid_at"] == manual["issued_at"]


# --- 4. quantities are bounded and counters cannot overflow -----------------------------------


@pytest.mark.parametrize("count", [0, -1, 1_000_000_001, "9223372036854775807"])
def test_count_out_of_bounds_is_400_naming_it(stack, tenant_id, count):
    sub = insert_subscription(tenant_id)
    reply = stack.track(sub.id, [{"endpoint": "/a"}, {"endpoint": "/a", "count": count}])
    assert reply.status == 400 and "events[1].count" in reply.json()["message"]


def test_counters_stop_at_the_period_bound_and_reads_stay_exact(stack, tenant_id):
    sub = insert_subscription(tenant_id, plan="enterprise")
    assert stack.track(sub.id, [{"endpoint": "/a", "count": 1_000_000_000}]).json()["accepted"] == 1
    with db.session():
        (UsagePeriod.update(requests=MAX_PERIOD_REQUESTS - 5).where(UsagePeriod.subscription == sub.id).execute())
        (UsageSegment.update(requests=MAX_PERIOD_REQUESTS - 5).where(UsageSegment.subscription == sub.id).execute())
    refused = stack.track(sub.id, [{"event_id": "big", "endpoint": "/a", "count": 6}])
    assert refused.status == 400 and refused.json()["details"][0]["reason"] == "PERIOD_USAGE_LIMIT"
    assert stack.track(sub.id, [{"event_id": "big", "endpoint": "/a", "count": 5}]).json()["accepted"] == 1
    usage = stack.rest("GET", f"/billing/metrics/usage/{sub.id}").json()
    assert usage["total_requests"] == str(MAX_PERIOD_REQUESTS)
    for path in (f"/billing/metrics/daily/{sub.id}", f"/billing/analytics/{sub.id}"):
        assert stack.rest("GET", path).status == 200
    invoice = stack.generate_invoice(sub.id).json()
    assert int(invoice["total_cents"]) == 49900 + div_round_half_up((MAX_PERIOD_REQUESTS - 10_000_000) * 10, 1000)
    assert_lines_add_up(invoice)


# --- 6. any text renders; a failing e-mail does not loop forever ------------------------------

HOSTILE = "O’Brien 株式会社 🚀 €"


def test_any_unicode_renders_in_the_pdf_and_the_email(stack, scheduler, tmp_path):
    sub = insert_subscription(f"t-{HOSTILE}", plan="premium", billing_email="billing@example.com")
    invoice = stack.generate_invoice(sub.id).json()
    pdf = stack.rest("GET", f"/billing/invoices/{invoice['id']}/pdf")
    assert pdf.status == 200
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.body)).pages)
    assert "O’Brien" in text and "€" in text and "\N{REPLACEMENT CHARACTER}" in text
    assert stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={"status": "SENT"}).status == 200
    outbox_here = dataclasses.replace(stack.settings, outbox_dir=tmp_path)
    assert jobs.run_job("deliver_outbox", dt.datetime.now(UTC), outbox_here)["failed"] == 0
    assert any(p.name.startswith(f"invoice_issued_{invoice['id']}") for p in tmp_path.iterdir())


class AlwaysFails:
    def send(self, message, key):
        raise ConnectionRefusedError("nobody listening")


def test_failing_email_becomes_a_dead_letter_after_ten_attempts_over_a_day(stack, tenant_id, scheduler):
    sub = insert_subscription(tenant_id, plan="premium", billing_email=f"{tenant_id}@example.com")
    invoice = stack.generate_invoice(sub.id).json()
    stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={"status": "SENT"})
    at = dt.datetime.now(UTC)
    first = at
    for attempt in range(1, 11):
        with db.session():
            row = OutboxMessage.get(OutboxMessage.dedup_key == f"invoice_issued:{invoice['id']}")
        assert row.dead_at is None and row.attempts == attempt - 1
        at = max(at, row.next_attempt_at)
        scheduler("deliver_outbox", at, sender=AlwaysFails())
    with db.session():
        row = OutboxMessage.get_by_id(row.id)
    assert row.attempts == 10 and row.dead_at is not None
    assert at - first == sum(outbox.BACKOFF, dt.timedelta())  # each retry exactly on the schedule
    scheduler("deliver_outbox", at + dt.timedelta(days=30), sender=AlwaysFails())
    with db.session():
        # A dead letter is never tried again (other tests' rows on this stack may be, and fail).
        assert OutboxMessage.get_by_id(row.id).attempts == 10
        assert row.id in [r.id for r in outbox.dead_letters()]
        dead = outbox.counts()["dead"]
        assert outbox.retry(row.id, at) and not outbox.retry(row.id, at)
        assert outbox.counts()["dead"] == dead - 1
        assert OutboxMessage.get_by_id(row.id).dead_at is None


# --- 7. invoices read correctly and never change after issue ----------------------------------


def test_invoice_snapshots_what_it_shows(stack, tenant_id):
    sub = stack.subscribe(tenant_id, "standard")
    stack.track(sub["id"], [{"endpoint": "/a", "count": 123_456}])
    invoice = stack.generate_invoice(sub["id"]).json()
    assert invoice["billing_email"] == "ops@example.com"
    assert invoice["issuer"]["name"] == stack.settings.issuer.name
    assert_lines_add_up(invoice)
    pdf_before = stack.rest("GET", f"/billing/invoices/{invoice['id']}/pdf").body

    with db.session():
        plan = Plan.get_by_id("standard")
    try:
        with db.session():
            Plan.update(name="Renamed", monthly_fee_cents=1).where(Plan.id == "standard").execute()
        assert (
            stack.rest(
                "PUT",
                f"/billing/subscriptions/{sub['id']}",
                body={"billing_email": "new@example.com", "plan_id": "premium"},
            ).status
            == 200
        )
        assert stack.rest("GET", f"/billing/invoices/{invoice['id']}").json() == invoice
        assert stack.rest("GET", f"/billing/invoices/{invoice['id']}/pdf").body == pdf_before
    finally:
        with db.session():
            Plan.update(name=plan.name, monthly_fee_cents=plan.monthly_fee_cents).where(Plan.id == "standard").execute()
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf_before)).pages)
    assert "ops@example.com" in text and stack.settings.issuer.name in text and "Unit price" in text


# --- 8. the path id is the id acted on --------------------------------------------------------


def test_a_body_id_never_redirects_an_update(stack, tenant_id):
    a, b = stack.subscribe(tenant_id), stack.subscribe(f"{tenant_id}-b")
    reply = stack.rest("PUT", f"/billing/subscriptions/{a['id']}", body={"id": b["id"], "plan_id": "premium"})
    assert reply.status == 400 and reply.json()["details"][0]["reason"] == "PATH_MISMATCH"
    for sub in (a, b):
        assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}").json()["plan_id"] == "standard"
    same = stack.rest("PUT", f"/billing/subscriptions/{a['id']}", body={"id": a["id"], "plan_id": "premium"})
    assert same.status == 200 and same.json()["plan_id"] == "premium"

    inv_a, inv_b = stack.generate_invoice(a["id"]).json(), stack.generate_invoice(b["id"]).json()
    reply = stack.rest("PUT", f"/billing/invoices/{inv_a['id']}", body={"id": inv_b["id"], "status": "VOID"})
    assert reply.status == 400
    for invoice in (inv_a, inv_b):
        assert stack.rest("GET", f"/billing/invoices/{invoice['id']}").json()["status"] == "PENDING"


@pytest.mark.parametrize(
    "path", ["/billing/subscriptions/{a}", "/billing/invoices/subscription/{a}", "/billing/metrics/usage/{a}"]
)
def test_a_query_parameter_never_redirects_a_read(stack, tenant_id, path):
    a, b = stack.subscribe(tenant_id), stack.subscribe(f"{tenant_id}-b")
    field = "id" if path.endswith("subscriptions/{a}") else "subscription_id"
    reply = stack.rest("GET", path.format(a=a["id"]), params={field: b["id"]})
    assert reply.status == 400, reply.body
    assert json.loads(reply.body)["details"][0]["reason"] == "PATH_MISMATCH"

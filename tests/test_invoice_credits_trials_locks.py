"""services/invoices.py where money and locks move, called directly on a SQLite database of its
own: credit applied at issue and given back (once) by a void or a delete, the spend cache of the
tenant forgotten by each write that moves it, a trial's free days, the plan history a period is
billed on, the rows each write locks, the exact wording of refusals, and what a line stores."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from factories import insert_subscription
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.credits import EntryKind
from server.domain.errors import AlreadyExists, NotFound, PermissionDenied
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import CreditLedgerEntry, InvoiceLineItem, PlanChange, Subscription, WebhookEvent
from server.services import credits, invoices, spend_control, usage
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30: 28 days
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module", autouse=True)
def invoice_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("invoice-credits")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    return f"icr-{uuid.uuid4().hex[:10]}"


def grant(tenant: str, cents: int, currency: str = "USD") -> None:
    credits.create_grant(ADMIN, credits.NewGrant(tenant, cents, currency=currency), now=ANCHOR)


def usd(tenant: str) -> int:
    return credits.balances(tenant, FIRST.end + 30 * DAY)["USD"]


def generation(tenant: str) -> int | None:
    """The tenant's spend-cache generation: it moves when the tenant's cached answers are forgotten."""
    return spend_control._generations.get(tenant)


def ledger(tenant: str) -> list[tuple[str, int, dt.datetime]]:
    rows = CreditLedgerEntry.select().where(CreditLedgerEntry.tenant_id == tenant).order_by(CreditLedgerEntry.id)
    return [(str(row.kind), row.amount_cents, row.at.astimezone(UTC)) for row in rows]


# --- credit at issue, back on void and delete -------------------------------------------------------


def test_credit_is_applied_at_issue_and_a_pending_invoice_deleted_gives_it_back(tenant):
    grant(tenant, 1000)
    grant(tenant, 700, currency="EUR")  # another currency: never spent on a USD invoice
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    before = generation(tenant)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    assert (invoice.status, invoice.subtotal_cents, invoice.total_cents) == ("PENDING", 9900, 8900)
    assert [(line.amount_cents, line.unit) for line in invoice.line_items][1:] == [(-1000, "credit")]
    assert credits.balances(tenant, FIRST.end) == {"EUR": 700, "USD": 0}
    assert generation(tenant) != before
    issued = generation(tenant)
    deleted_at = FIRST.end + DAY
    invoices.delete_invoice(invoice.id, now=deleted_at, principal=ADMIN)
    assert usd(tenant) == 1000
    assert ledger(tenant)[-1] == ("RESTORED", 1000, deleted_at)
    assert generation(tenant) != issued


def test_credit_expiring_exactly_at_the_issue_is_closed_then_and_credit_expiring_after_it_pays(tenant):
    credits.create_grant(ADMIN, credits.NewGrant(tenant, 300, expires_at=FIRST.end), now=ANCHOR)
    credits.create_grant(ADMIN, credits.NewGrant(tenant, 500, expires_at=FIRST.end + DAY), now=ANCHOR)
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    assert [(line.amount_cents, line.unit) for line in invoice.line_items][1:] == [(-500, "credit")]
    assert invoice.total_cents == 9900 - 500
    assert sorted(ledger(tenant)[2:]) == [("APPLIED", -500, FIRST.end), ("EXPIRED", -300, FIRST.end)]


def test_a_void_gives_the_credit_back_once_and_deleting_the_void_gives_nothing_more(tenant):
    grant(tenant, 1000)
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    issued = generation(tenant)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    assert (usd(tenant), generation(tenant)) == (0, issued)  # sending moves neither
    voided_at = FIRST.end + 2 * DAY
    invoices.set_status(invoice.id, "VOID", now=voided_at, principal=ADMIN)
    assert usd(tenant) == 1000
    assert ledger(tenant)[-1] == ("RESTORED", 1000, voided_at)
    assert generation(tenant) != issued
    invoices.delete_invoice(invoice.id, now=voided_at + DAY, principal=ADMIN)
    assert usd(tenant) == 1000
    assert [kind for kind, _, _ in ledger(tenant)].count(EntryKind.RESTORED) == 1


def test_a_credit_note_forgets_the_tenants_cached_spend(tenant):
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    before = generation(tenant)
    invoices.add_credit_note(invoice.id, 100, "", now=FIRST.end + DAY, principal=ADMIN)
    assert generation(tenant) != before


def test_a_credit_note_announces_the_tenants_spend_lines_at_its_own_instant(tenant):
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    Subscription.update(spend_cap_cents=100).where(Subscription.id == sub.id).execute()  # the fee is past it
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    noted_at = FIRST.end + DAY
    invoices.add_credit_note(invoice.id, 100, "", now=noted_at, principal=ADMIN)
    [cap] = WebhookEvent.select().where(
        (WebhookEvent.tenant_id == tenant) & (WebhookEvent.type == webhooks.EventType.SPEND_CAP_REACHED)
    )
    assert cap.created_at.astimezone(UTC) == noted_at


# --- trials ----------------------------------------------------------------------------------------


def test_a_trial_ending_inside_the_period_leaves_its_days_free_and_says_so(tenant):
    sub = insert_subscription(tenant, plan="standard", anchor=ANCHOR)
    trial_end = FIRST.start + 7 * DAY
    Subscription.update(trial_end=trial_end).where(Subscription.id == sub.id).execute()
    usage.track(
        ADMIN,
        sub.id,
        [RawEvent("trial", "/v1/x", 50_000, trial_end - dt.timedelta(microseconds=1))]
        + [RawEvent("paid", "/v1/x", 80_000, trial_end)],
        now=FIRST.end,
    )
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    assert [(line.description, line.amount_cents) for line in invoice.line_items] == [
        ("Standard plan, free trial, 2026-01-31 09:30:00 to 2026-02-07 09:30:00 UTC", 0),
        ("Standard plan, 2026-02-07 09:30:00 to 2026-02-28 09:30:00 UTC", 2175),
        (
            "Standard plan overage: 5,000 requests over 75,000 included, "
            "2026-02-07 09:30:00 to 2026-02-28 09:30:00 UTC",
            250,
        ),
    ]


# --- the plan history a period is billed on ---------------------------------------------------------


def test_the_plan_history_is_the_subscriptions_own_oldest_first(tenant):
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    # written newest first: ids and instants in opposite orders
    PlanChange.create(subscription=sub.id, plan="enterprise", effective_at=ANCHOR + 10 * DAY)
    PlanChange.create(subscription=sub.id, plan="standard", effective_at=ANCHOR + 5 * DAY)
    insert_subscription(f"{tenant}-other", plan="free", anchor=ANCHOR + 7 * DAY)
    history = invoices.plan_history(sub.id)
    assert [(at, plan.id, plan.version) for at, plan in history] == [
        (ANCHOR, "premium", 1),
        (ANCHOR + 5 * DAY, "standard", 1),
        (ANCHOR + 10 * DAY, "enterprise", 1),
    ]


def test_only_the_plan_versions_asked_for_are_read():
    found = invoices._versions({("premium", 1)})
    assert list(found) == [("premium", 1)]
    assert (found[("premium", 1)].id, found[("premium", 1)].version) == ("premium", 1)
    assert invoices._versions(set()) == {}


def test_a_subscription_without_history_is_one_segment_on_its_pinned_version(tenant):
    sub = insert_subscription(tenant, plan="enterprise", anchor=ANCHOR)
    PlanChange.delete().where(PlanChange.subscription == sub.id).execute()
    [segment] = invoices.billed_segments(Subscription.get_by_id(sub.id), FIRST)
    assert (segment.start, segment.end, segment.plan.id, segment.plan.version) == (
        FIRST.start,
        FIRST.end,
        "enterprise",
        1,
    )


# --- what a line stores ------------------------------------------------------------------------------


def test_each_stored_line_keeps_its_exact_quantity_and_unit_amount(tenant):
    sub = insert_subscription(tenant, plan="standard", anchor=ANCHOR)
    usage.track(ADMIN, sub.id, [RawEvent("a", "/v1/x", 102_500, FIRST.start)], now=FIRST.end)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    rows = InvoiceLineItem.select().where(InvoiceLineItem.invoice == invoice.id).order_by(InvoiceLineItem.position)
    assert [(row.position, row.quantity, row.unit_amount, row.amount_cents) for row in rows] == [
        (0, "1", "2900", 2900),
        (1, "2.5", "50", 125),
    ]


# --- locks -----------------------------------------------------------------------------------------


@pytest.fixture
def locked(monkeypatch) -> list[str]:
    """The tables whose rows invoices.py selects FOR UPDATE (on PostgreSQL; a no-op on SQLite)."""
    taken: list[str] = []
    real = invoices.for_update

    def spy(query, **options):
        taken.append(query.model.__name__)
        return real(query, **options)

    monkeypatch.setattr(invoices, "for_update", spy)
    return taken


def test_each_write_locks_the_invoice_and_reads_lock_nothing(tenant, locked):
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    invoices.get_invoice(invoice.id, principal=ADMIN)
    invoices.credit_notes(invoice.id, principal=ADMIN)
    assert locked == []
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    assert locked == ["Invoice"]
    invoices.add_credit_note(invoice.id, 100, "", now=FIRST.end, principal=ADMIN)
    assert locked == ["Invoice", "Invoice"]
    invoices.set_status(invoice.id, "VOID", now=FIRST.end, principal=ADMIN)
    invoices.delete_invoice(invoice.id, now=FIRST.end, principal=ADMIN)
    assert locked == ["Invoice"] * 4


def test_an_empty_invoice_id_is_not_found_without_a_query(locked):
    with pytest.raises(NotFound) as error:
        invoices.set_status("", "SENT", now=FIRST.end, principal=ADMIN)
    assert (error.value.message, error.value.reason, locked) == ("invoice '' not found", "INVOICE_NOT_FOUND", [])


def test_generating_locks_the_subscription_and_listing_does_not(tenant, monkeypatch):
    asked: list[bool] = []
    real = invoices.find_subscription

    def spy(subscription_id, **kwargs):
        asked.append(kwargs.get("lock", False))
        return real(subscription_id, **kwargs)

    monkeypatch.setattr(invoices, "find_subscription", spy)
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    invoices.list_invoices(sub.id, principal=ADMIN)
    assert asked == [True, False]


# --- refusals, word for word -------------------------------------------------------------------------


def test_refusals_name_the_operation_and_the_invoice_exactly(tenant):
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    own = Principal(key_id=7, scope=KeyScope.TENANT, tenant_id=tenant)
    with pytest.raises(PermissionDenied) as status:
        invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=own)
    assert (status.value.message, status.value.reason) == (
        "changing an invoice's status needs an admin key",
        "ADMIN_ONLY",
    )
    with pytest.raises(PermissionDenied) as delete:
        invoices.delete_invoice(invoice.id, now=FIRST.end, principal=own)
    assert delete.value.message == "deleting an invoice needs an admin key"
    stranger = Principal(key_id=8, scope=KeyScope.TENANT, tenant_id=f"{tenant}-x")
    with pytest.raises(NotFound) as hidden:
        invoices.add_credit_note(invoice.id, 100, "", now=FIRST.end, principal=stranger)
    assert (hidden.value.message, hidden.value.reason) == (f"invoice {invoice.id!r} not found", "INVOICE_NOT_FOUND")


def test_a_period_whose_winning_invoice_is_gone_again_is_reported_without_naming_it(tenant, monkeypatch):
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    # the invoice that won the period was voided between the refused insert and the look-up
    monkeypatch.setattr(invoices, "live_invoice", lambda subscription_id, period_start: None)
    with pytest.raises(AlreadyExists) as error:
        invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    assert (error.value.message, error.value.reason) == (
        f"subscription {sub.id!r} period starting {FIRST.start.isoformat()} already has an invoice",
        "INVOICE_EXISTS",
    )

"""services/billing_runs.py called directly, each test on a SQLite database of its own (so what a
query finds is exactly the test's rows), with an explicit `now`: which periods are due and in
which order (a period ending exactly now is due), a canceled subscription without an instant, a
cancellation set for exactly the period's end, a pending plan, the reopened periods and their
reissue, the invoices overdue (one due exactly now is not), and who is past an alert threshold
(usage exactly at it is)."""

from __future__ import annotations

import datetime as dt

import pytest

from factories import insert_subscription
from server.config import Settings
from server.domain.access import KeyScope, Principal
from server.domain.periods import period
from server.persistence import db
from server.persistence.models import Invoice, InvoiceLineItem, PlanChange, Subscription, UsagePeriod
from server.services import billing_runs, invoices
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
ISSUER = Settings().issuer
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST, SECOND, THIRD = (period(ANCHOR, n) for n in range(3))


@pytest.fixture(autouse=True)
def billing_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


def at(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(UTC) if value is not None else None


def sub(subscription_id: str, **kwargs) -> Subscription:
    return insert_subscription(
        kwargs.pop("tenant", subscription_id),
        subscription_id=subscription_id,
        anchor=kwargs.pop("anchor", ANCHOR),
        **kwargs,
    )


def on_period(subscription_id: str, n: int) -> None:
    current = period(ANCHOR, n)
    Subscription.update(current_period_start=current.start, current_period_end=current.end).where(
        Subscription.id == subscription_id
    ).execute()


def issue(subscription_id: str, start: dt.datetime, now: dt.datetime) -> str:
    return invoices.generate_invoice(subscription_id, now=now, issuer=ISSUER, principal=ADMIN, period_start=start).id


def void(invoice_id: str, now: dt.datetime) -> None:
    invoices.set_status(invoice_id, "VOID", now=now, principal=ADMIN)


def rows_of(subscription_id: str) -> list[tuple[str, dt.datetime]]:
    query = Invoice.select().where(Invoice.subscription == subscription_id)
    return sorted((str(i.status), at(i.period_start)) for i in query)


# --- periods_due, _due ------------------------------------------------------------------------------


def test_periods_due_longest_waiting_first_ties_by_id_one_ending_exactly_now_included():
    later = ANCHOR + DAY
    sub("sub_c")
    sub("sub_b", anchor=later)
    sub("sub_a")
    sub("sub_d", anchor=later + US)  # ends a microsecond after now
    now = period(later, 0).end
    assert billing_runs.periods_due(now) == ["sub_a", "sub_c", "sub_b"]
    assert billing_runs.periods_due(FIRST.end - US) == []


def test_a_canceled_subscription_is_due_from_its_cancellation_until_its_period_has_a_live_invoice():
    canceled_at = ANCHOR + 10 * DAY
    sub("sub_x", status="CANCELED", canceled_at=canceled_at)
    sub("sub_y", tenant="neighbour")
    issue("sub_y", FIRST.start, canceled_at)  # another subscription's live invoice of the same period
    assert billing_runs.periods_due(canceled_at - US) == []
    assert billing_runs.periods_due(canceled_at) == ["sub_x"]
    mine = issue("sub_x", FIRST.start, canceled_at)
    assert billing_runs.periods_due(canceled_at) == []
    void(mine, canceled_at)
    assert billing_runs.periods_due(canceled_at) == ["sub_x"]


def test_nothing_is_closed_for_a_subscription_not_due():
    sub("sub_unknown_when", status="CANCELED")  # canceled_at unknown
    sub("sub_later", status="CANCELED", canceled_at=FIRST.end)
    sub("sub_running")
    for subscription_id in ("sub_unknown_when", "sub_later", "sub_running", "sub_missing"):
        assert billing_runs.close_period(subscription_id, FIRST.end - US, ISSUER) is None
    assert Invoice.select().count() == 0


# --- close_period ----------------------------------------------------------------------------------


def test_a_cancellation_set_for_exactly_the_periods_end_takes_effect_when_the_period_is_closed():
    sub("sub_1")
    Subscription.update(cancel_at=FIRST.end).where(Subscription.id == "sub_1").execute()
    invoice = billing_runs.close_period("sub_1", FIRST.end, ISSUER)
    assert invoice is not None and (invoice.status, at(invoice.period_start)) == ("SENT", FIRST.start)
    closed = Subscription.get_by_id("sub_1")
    assert (closed.status, at(closed.canceled_at), at(closed.updated_at)) == ("CANCELED", FIRST.end, FIRST.end)
    assert (at(closed.current_period_start), at(closed.current_period_end)) == (FIRST.start, FIRST.end)
    assert billing_runs.close_period("sub_1", SECOND.end, ISSUER) is None


def test_a_pending_plan_starts_with_the_next_period():
    sub("sub_1", plan="standard")
    Subscription.update(pending_plan_id="premium", pending_plan_version=1).where(Subscription.id == "sub_1").execute()
    closed_at = FIRST.end + US
    invoice = billing_runs.close_period("sub_1", closed_at, ISSUER)
    assert invoice is not None and invoice.total_cents == 2900  # the period ending was on standard
    moved = Subscription.get_by_id("sub_1")
    assert (moved.plan_id, moved.plan_version, moved.pending_plan_id, moved.pending_plan_version) == (
        "premium",
        1,
        None,
        None,
    )
    assert (at(moved.current_period_start), at(moved.current_period_end), at(moved.updated_at)) == (
        SECOND.start,
        SECOND.end,
        closed_at,
    )
    changes = PlanChange.select().where(PlanChange.subscription == "sub_1").order_by(PlanChange.id)
    assert [(c.plan_id, c.plan_version, at(c.effective_at)) for c in changes] == [
        ("standard", 1, ANCHOR),
        ("premium", 1, SECOND.start),
    ]


# --- reopened_periods, reissue ----------------------------------------------------------------------


def test_reopened_periods_are_the_ended_voided_ones_before_the_current_by_subscription_then_period():
    for subscription_id in ("sub_b", "sub_a"):
        sub(subscription_id, tenant=subscription_id)
        on_period(subscription_id, 2)
        for n in (1, 0, 2):  # issued out of order; the current period's too
            void(issue(subscription_id, period(ANCHOR, n).start, THIRD.end), THIRD.end)
    issue("sub_b", FIRST.start, THIRD.end)  # covered again
    void(issue("sub_a", SECOND.start, THIRD.end), THIRD.end)  # voided twice: listed once
    assert billing_runs.reopened_periods(THIRD.end) == [
        ("sub_a", FIRST.start),
        ("sub_a", SECOND.start),
        ("sub_b", SECOND.start),
    ]
    assert billing_runs.reopened_periods(SECOND.end - US) == [("sub_a", FIRST.start)]


def test_reissue_invoices_the_subscription_named_and_nothing_once_covered():
    for subscription_id in ("sub_a", "sub_b"):
        sub(subscription_id, tenant=subscription_id)
        on_period(subscription_id, 1)
    void(issue("sub_b", FIRST.start, SECOND.start), SECOND.start)
    reissued = billing_runs.reissue("sub_b", FIRST.start, SECOND.start, ISSUER)
    assert reissued is not None
    assert (reissued.subscription_id, reissued.status, at(reissued.period_start)) == ("sub_b", "SENT", FIRST.start)
    assert billing_runs.reissue("sub_b", FIRST.start, SECOND.start, ISSUER) is None  # covered
    assert billing_runs.reissue("sub_missing", FIRST.start, SECOND.start, ISSUER) is None
    assert rows_of("sub_a") == []
    assert rows_of("sub_b") == [("SENT", FIRST.start), ("VOID", FIRST.start)]


# --- overdue ---------------------------------------------------------------------------------------


def rename(invoice_id: str, new_id: str) -> None:
    """Give an invoice a chosen id (its lines dropped), so its id and its row order differ."""
    InvoiceLineItem.delete().where(InvoiceLineItem.invoice == invoice_id).execute()
    Invoice.update(id=new_id).where(Invoice.id == invoice_id).execute()


def test_overdue_is_sent_invoices_past_due_longest_overdue_first_ties_by_id_at_most_the_limit():
    due = FIRST.end + invoices.PAYMENT_TERMS
    made = {}
    for name in ("c", "b", "a", "now", "paid", "gone", "earliest"):
        sub(f"sub_{name}", tenant=name)
        made[name] = issue(f"sub_{name}", FIRST.start, FIRST.end)
        invoices.set_status(made[name], "SENT", now=FIRST.end, principal=ADMIN)
    invoices.set_status(made["paid"], "PAID", now=FIRST.end, principal=ADMIN)
    Invoice.update(due_at=due - US).where(Invoice.id.in_([made["c"], made["b"], made["a"]])).execute()
    Invoice.update(due_at=due - 2 * US).where(Invoice.id == made["earliest"]).execute()
    Invoice.update(due_at=due - 3 * US).where(Invoice.id.in_([made["paid"], made["gone"]])).execute()
    Invoice.update(deleted_at=FIRST.end).where(Invoice.id == made["gone"]).execute()
    for name in ("c", "b", "a", "earliest"):
        rename(made[name], f"inv_{name}")
    assert billing_runs.overdue(due, limit=10) == ["inv_earliest", "inv_a", "inv_b", "inv_c"]
    assert billing_runs.overdue(due, limit=2) == ["inv_earliest", "inv_a"]
    assert billing_runs.overdue(due - 2 * US, limit=10) == []


# --- over_alert_threshold ---------------------------------------------------------------------------


def used(subscription_id: str, requests: int, start: dt.datetime = FIRST.start) -> None:
    UsagePeriod.create(subscription=subscription_id, period_start=start, requests=requests)


def test_the_subscriptions_past_the_first_threshold_exactly_at_it_included_in_id_order():
    included = 100_000  # the standard plan's
    sub("sub_c", tenant="c")
    sub("sub_b", tenant="b")
    sub("sub_a", tenant="a")
    sub("sub_old", tenant="old")
    sub("sub_gone", tenant="gone", status="CANCELED", canceled_at=ANCHOR + DAY)
    used("sub_c", included)
    used("sub_b", included * 80 // 100)  # exactly the first threshold
    used("sub_a", included * 80 // 100 - 1)
    used("sub_gone", included)
    used("sub_old", included, start=FIRST.start - DAY)  # another period's usage
    used("sub_old", 1)
    found = list(billing_runs.over_alert_threshold())
    assert found == [
        billing_runs.AlertCandidate(
            "sub_b", "b", "b@example.com", FIRST.start, FIRST.end, "Standard", included, 80_000
        ),
        billing_runs.AlertCandidate(
            "sub_c", "c", "c@example.com", FIRST.start, FIRST.end, "Standard", included, included
        ),
    ]
    assert [at(c.current_period_start) for c in found] == [FIRST.start, FIRST.start]

"""The money paths of the services on a SQLite database of their own, called directly (no gRPC, no
Envoy): usage ingestion into per-period and per-segment counters, the usage summary, and invoice
generation, each at its boundaries. Fast enough for `make mutation` to run on every mutant."""

from __future__ import annotations

import datetime as dt

import pytest

from factories import insert_subscription
from server.domain.access import SYSTEM, KeyScope, Principal
from server.domain.errors import AlreadyExists, InvalidArgument, PermissionDenied
from server.domain.issuer import Issuer
from server.domain.money import div_round_half_up
from server.domain.periods import period
from server.domain.usage import RawEvent
from server.persistence import db
from server.persistence.models import Invoice, UsagePeriod
from server.services import invoices, segment_usage, usage
from server.services.subscriptions import (
    SubscriptionChange,
    cancel_subscription,
    find_subscription,
    update_subscription,
)
from stores import own_database

UTC = dt.timezone.utc
ADMIN_KEY = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30: 28 days
US = dt.timedelta(microseconds=1)


@pytest.fixture(scope="module", autouse=True)
def money_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("money")), db.session():
        yield


def subscription(tenant: str, plan: str = "standard"):
    return insert_subscription(tenant, plan=plan, anchor=ANCHOR)


def track(sub, *events: tuple[str, int, dt.datetime], now: dt.datetime = FIRST.end + dt.timedelta(days=1)):
    return usage.track(
        ADMIN_KEY, sub.id, [RawEvent(event_id, "/v1/x", count, at) for event_id, count, at in events], now=now
    )


def test_usage_exactly_at_a_period_boundary_counts_once_in_the_period_it_starts():
    sub = subscription("edges")
    result = track(
        sub,
        ("before", 8, ANCHOR - US),
        ("start", 1, FIRST.start),
        ("last", 2, FIRST.end - US),
        ("end", 4, FIRST.end),
        ("day0", 16, FIRST.start + dt.timedelta(hours=23)),
    )
    assert (result.accepted, result.duplicates) == (4, 0)
    assert [(r.index, r.event_id, r.reason) for r in result.rejections] == [(0, "before", "BEFORE_SUBSCRIPTION")]
    assert "before the subscription started" in result.rejections[0].message
    assert usage.period_requests(sub.id, FIRST.start) == 19
    assert usage.period_requests(sub.id, FIRST.end) == 4
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 19}
    assert segment_usage.requests_by_segment(sub.id, FIRST.end) == {FIRST.end: 4}


def test_a_repeated_event_counts_once_and_is_reported_as_a_duplicate():
    sub = subscription("dupes")
    first = track(sub, ("a", 5, FIRST.start), ("a", 7, FIRST.start))
    assert (first.accepted, first.duplicates, usage.period_requests(sub.id, FIRST.start)) == (1, 1, 5)
    again = track(sub, ("a", 5, FIRST.start), ("b", 1, FIRST.start))
    assert (again.accepted, again.duplicates, usage.period_requests(sub.id, FIRST.start)) == (1, 1, 6)


def test_events_without_an_id_each_count():
    sub = subscription("anonymous")
    assert track(sub, ("", 1, FIRST.start), ("", 2, FIRST.start)).accepted == 2
    assert usage.period_requests(sub.id, FIRST.start) == 3


def test_only_an_admin_tracks_usage_or_generates_invoices():
    sub = subscription("tenant-key")
    tenant = Principal(key_id=9, scope=KeyScope.TENANT, tenant_id="tenant-key")
    with pytest.raises(PermissionDenied, match="^tracking usage needs an admin key$"):
        usage.track(tenant, sub.id, [RawEvent("a", "/v1/x", 1, FIRST.start)], now=FIRST.end)
    with pytest.raises(PermissionDenied, match="^generating an invoice needs an admin key$"):
        invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=tenant)


@pytest.mark.parametrize(
    "requests,remaining,overage,cents",
    [
        (99_999, 1, 0, 0),
        (100_000, 0, 0, 0),  # exactly the included requests
        (100_001, 0, 1, 0),  # included + 1
        (100_009, 0, 9, 0),  # 0.45 cent
        (100_010, 0, 10, 1),  # half a cent flips to 1
    ],
)
def test_the_usage_summary_at_the_included_boundary(requests, remaining, overage, cents):
    sub = subscription(f"summary-{requests}")
    track(sub, ("e", requests, FIRST.start + dt.timedelta(days=3)))
    summary = usage.usage(ADMIN_KEY, sub.id)
    assert summary.subscription_id == sub.id
    assert (
        summary.total_requests,
        summary.included_requests,
        summary.remaining_included,
        summary.overage_requests,
        summary.estimated_overage_cents,
    ) == (requests, 100_000, remaining, overage, cents)


def test_a_period_may_hold_exactly_the_request_bound_and_not_one_more():
    sub = subscription("bound")
    UsagePeriod.create(subscription=sub.id, period_start=FIRST.start, requests=usage.MAX_PERIOD_REQUESTS - 2)
    assert track(sub, ("a", 2, FIRST.start)).accepted == 1
    with pytest.raises(InvalidArgument) as error:
        track(sub, ("b", 1, FIRST.start))
    assert (error.value.reason, error.value.violations[0].field) == ("PERIOD_USAGE_LIMIT", "events")
    assert error.value.message.endswith("would exceed 1,000,000,000,000,000 requests")
    assert usage.period_requests(sub.id, FIRST.start) == usage.MAX_PERIOD_REQUESTS
    assert track(sub, ("c", 1, FIRST.end)).accepted == 1  # the next period has its own bound


def test_a_canceled_subscription_counts_nothing():
    sub = subscription("canceled")
    cancel_subscription(ADMIN_KEY, sub.id, now=FIRST.start + dt.timedelta(days=2))
    result = track(sub, ("a", 1, FIRST.start), ("b", 1, FIRST.start + dt.timedelta(days=1)))
    assert [(r.index, r.event_id, r.reason) for r in result.rejections] == [
        (0, "a", "SUBSCRIPTION_CANCELED"),
        (1, "b", "SUBSCRIPTION_CANCELED"),
    ]
    assert result.rejections[0].message == f"subscription {sub.id} is canceled"
    assert (result.accepted, usage.period_requests(sub.id, FIRST.start)) == (0, 0)
    # Billing stops at the cancellation's instant: 2 of 28 days.
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=SYSTEM)
    assert [(i.description, i.amount_cents) for i in invoice.line_items] == [
        ("Standard plan, 2026-01-31 09:30:00 to 2026-02-02 09:30:00 UTC", 207)
    ]  # 2900 x 2 / 28 = 207.1


def test_a_subscription_canceled_at_its_first_instant_owes_and_has_nothing():
    sub = subscription("canceled-at-once")
    cancel_subscription(ADMIN_KEY, sub.id, now=ANCHOR)
    summary = usage.usage(ADMIN_KEY, sub.id)
    assert (summary.total_requests, summary.included_requests, summary.remaining_included) == (0, 0, 0)


def test_an_invoice_bills_a_plan_change_from_its_instant():
    sub = subscription("upgrade")
    track(
        sub,
        ("std", 150_000, FIRST.start + dt.timedelta(days=9, hours=23)),
        ("prem", 10, FIRST.start + dt.timedelta(days=10)),
    )
    update_subscription(
        ADMIN_KEY, sub.id, SubscriptionChange(plan_id="premium"), now=FIRST.start + dt.timedelta(days=10)
    )
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN_KEY)
    lines = [(i.description.split(",")[0], i.amount_cents) for i in invoice.line_items]
    # Standard 10 of 28 days: 2900 x 10 / 28 = 1035.7 -> 1036, 35,714 included, 114,286 over at 50/1000 -> 5714.3
    # Premium 18 of 28 days: 9900 x 18 / 28 = 6364.3 -> 6364; its 10 requests are well within its share.
    assert lines == [("Standard plan", 1036), ("Premium plan", 6364), ("Standard plan overage: 114", 5714)]
    assert (invoice.total_cents, invoice.subtotal_cents, invoice.status) == (13_114, 13_114, "PENDING")
    assert (invoice.period_start, invoice.period_end, invoice.due_at) == (
        FIRST.start,
        FIRST.end,
        FIRST.end + invoices.PAYMENT_TERMS,
    )
    assert invoice.paid_at is None
    late = track(sub, ("late", 1, FIRST.end - US), ("early", 1, ANCHOR - US))
    assert [(r.index, r.event_id, r.reason) for r in late.rejections] == [
        (0, "late", "PERIOD_INVOICED"),
        (1, "early", "BEFORE_SUBSCRIPTION"),
    ]
    assert late.rejections[0].message == f"the period starting {FIRST.start.isoformat()} is already invoiced"
    with pytest.raises(AlreadyExists, match=invoice.number) as error:
        invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=SYSTEM)
    assert error.value.reason == "INVOICE_EXISTS"


def test_a_voided_invoice_reopens_its_period_and_is_reissued_with_the_next_number():
    sub, other = subscription("void"), subscription("void-neighbour")
    track(sub, ("a", 200_000, FIRST.start))
    first = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=SYSTEM)
    assert first.number == f"INV-{Invoice.select().count():06d}"  # numbers run 1, 2, 3 ... without gaps
    assert track(other, ("n", 1, FIRST.start)).accepted == 1  # another subscription's invoice closes nothing here
    invoices.set_status(first.id, "VOID", now=FIRST.end, principal=SYSTEM)
    assert track(sub, ("b", 1, FIRST.start)).accepted == 1
    again = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=SYSTEM, period_start=FIRST.start)
    assert again.number == f"INV-{int(first.number[4:]) + 1:06d}"
    assert [i.amount_cents for i in again.line_items] == [2900, 5000]  # 100,001 over at 50/1000 = 5000.05


def test_an_invoice_of_nothing_owed_is_issued_paid():
    invoice = invoices.generate_invoice(
        subscription("free", plan="free").id, now=FIRST.end, issuer=ISSUER, principal=SYSTEM
    )
    assert (invoice.total_cents, invoice.status, invoice.paid_at) == (0, "PAID", FIRST.end)


@pytest.mark.parametrize(
    "start",
    [
        FIRST.start + US,
        ANCHOR - US,
        period(ANCHOR, -1).start,
        period(ANCHOR, 1).start,
        dt.datetime(9999, 12, 31, tzinfo=UTC),
        dt.datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_only_the_start_of_a_period_up_to_the_current_one_can_be_invoiced(start):
    with pytest.raises(InvalidArgument) as error:
        invoices.generate_invoice(
            subscription(f"reissue-{start.isoformat()}").id,
            now=FIRST.end,
            issuer=ISSUER,
            principal=SYSTEM,
            period_start=start,
        )
    assert error.value.violations[0].field == "period_start"
    assert "is not the start of a period" in error.value.message


HOUR = dt.timedelta(hours=1)


def change_plan(sub, plan: str, at: dt.datetime) -> None:
    update_subscription(ADMIN_KEY, sub.id, SubscriptionChange(plan_id=plan), now=at)


def test_a_plan_held_for_an_hour_bills_its_fee_share_and_its_usage_on_its_terms():
    """The reported case: Free, track 10,000, Enterprise, track 5,000,000, back to Free an hour later.
    Whole-day segments billed it all on Free: total 0."""
    sub = subscription("one-hour-enterprise", plan="free")
    up = FIRST.start + dt.timedelta(days=3, hours=4, minutes=7)
    track(sub, ("free", 10_000, up - HOUR), now=up - HOUR)
    change_plan(sub, "enterprise", up)
    track(sub, ("ent", 5_000_000, up + HOUR / 2), now=up + HOUR / 2)
    change_plan(sub, "free", up + HOUR)
    summary = usage.usage(ADMIN_KEY, sub.id)
    invoice = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=SYSTEM)
    hours = 28 * 24  # the period's share of one hour: 1/672
    fee, included = div_round_half_up(49_900, hours), div_round_half_up(10_000_000, hours)
    overage = div_round_half_up((5_000_000 - included) * 10, 1000)
    assert (fee, included, overage) == (74, 14_881, 49_851)  # 74.26; 14,880.95; 49,851.19
    span = "2026-02-03 13:37:00 to 2026-02-03 14:37:00 UTC"
    assert [(i.description, i.amount_cents) for i in invoice.line_items] == [
        ("Free plan, 2026-01-31 09:30:00 to 2026-02-03 13:37:00 UTC", 0),
        (f"Enterprise plan, {span}", fee),
        ("Free plan, 2026-02-03 14:37:00 to 2026-02-28 09:30:00 UTC", 0),
        (f"Enterprise plan overage: 4,985,119 requests over 14,881 included, {span}", overage),
    ]
    assert (invoice.total_cents, invoice.status) == (fee + overage, "PENDING")
    assert (summary.total_requests, summary.estimated_overage_cents) == (5_010_000, overage)


def test_an_event_dated_after_a_plan_change_but_counted_before_it_moves_to_the_new_segment():
    """Events may be dated up to 5 minutes ahead: one counted at T - 1 min for T + 2 min belongs to
    the plan changed at T; a late event counted after the change, dated before it, to the old one."""
    sub = subscription("future-dated")
    change = FIRST.start + dt.timedelta(days=5)
    track(
        sub,
        ("ahead", 300_000, change + dt.timedelta(minutes=2)),
        ("before", 7, change - US),
        ("at", 5, change),
        now=change - dt.timedelta(minutes=1),
    )
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 300_012}
    change_plan(sub, "premium", change)
    track(sub, ("late", 40, FIRST.start + HOUR), now=change + HOUR)
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 47, change: 300_005}
    change_plan(sub, "standard", change + dt.timedelta(minutes=3))  # nothing dated after it: nothing moves
    assert segment_usage.requests_by_segment(sub.id, FIRST.start) == {FIRST.start: 47, change: 300_005}
    lines = invoices.draft_line_items(find_subscription(sub.id, principal=SYSTEM), FIRST)
    # Premium held 3 minutes: 1,000,000 x 3 / 40,320 = 74.4 -> 74 included, 299,931 over at 30/1000 = 8998
    assert [(i.description.split(":")[0].split(",")[0], i.amount_cents) for i in lines][3:] == [
        ("Premium plan overage", 8998)
    ]

"""Pure rules of invoicing: the status workflow, exact-instant proration, overage, money formatting."""

from __future__ import annotations

import datetime as dt

import pytest

from plan_terms import ENTERPRISE, FREE, PREMIUM, STANDARD
from server.domain import invoice_state
from server.domain.errors import InvalidArgument
from server.domain.invoicing import (
    LineItem,
    Segment,
    SegmentUsage,
    decimal_quantity,
    line_items,
    prorate,
    segment_key,
    segment_requests,
    segments,
    usage_by_segment,
)
from server.domain.money import div_round_half_up
from server.domain.periods import period
from server.domain.pricing import overage_cents
from server.notifications.pdf import money

UTC = dt.timezone.utc


ALL = list(invoice_state.InvoiceStatus)
ALLOWED = {
    ("PENDING", "SENT"),
    ("PENDING", "VOID"),
    ("SENT", "PAID"),
    ("SENT", "OVERDUE"),
    ("SENT", "VOID"),
    ("OVERDUE", "PAID"),
    ("OVERDUE", "VOID"),
}


@pytest.mark.parametrize("current,target", [(a, b) for a in ALL for b in ALL])
def test_transition_table(current, target):
    if (current, target) in ALLOWED:
        invoice_state.check_transition(current, target)
    else:
        with pytest.raises(InvalidArgument) as error:
            invoice_state.check_transition(current, target)
        assert current in error.value.message and target in error.value.message
        assert (error.value.violations[0].field, error.value.reason) == ("status", "ILLEGAL_TRANSITION")


@pytest.mark.parametrize(
    "status,deletable", [("PENDING", True), ("VOID", True), ("SENT", False), ("PAID", False), ("OVERDUE", False)]
)
def test_deletable_only_pending_or_void(status, deletable):
    if deletable:
        invoice_state.check_deletable(status)
    else:
        with pytest.raises(InvalidArgument, match=status) as error:
            invoice_state.check_deletable(status)
        assert (error.value.violations[0].field, error.value.reason) == ("status", "NOT_DELETABLE")


def bill(p, history, requests_by_key=None, until=None):
    return line_items(p, segments(p, history, until), requests_by_key or {})


def whole(plan, p):
    return [(p.start, plan)]


def assert_lines_consistent(items):
    for item in items:
        assert item.amount_cents == div_round_half_up(item.quantity_milli * item.unit_amount_cents, 1000)


# Anniversary periods of each month length: Feb 2023 (28), Feb 2024 (29), Apr (30), Jan (31).
MONTHS = [
    (dt.datetime(2023, 2, 1, 9, 30, tzinfo=UTC), 28),
    (dt.datetime(2024, 2, 1, 9, 30, tzinfo=UTC), 29),
    (dt.datetime(2024, 4, 1, 9, 30, tzinfo=UTC), 30),
    (dt.datetime(2024, 1, 1, 9, 30, tzinfo=UTC), 31),
]
HOUR, DAYS, US = dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(microseconds=1)


@pytest.mark.parametrize("anchor,days", MONTHS)
@pytest.mark.parametrize("plan", [FREE, STANDARD, PREMIUM, ENTERPRISE])
def test_no_change_is_one_full_fee_line(anchor, days, plan):
    p = period(anchor, 0)
    assert p.days == days
    assert bill(p, whole(plan, p)) == [
        LineItem(f"{plan.name} plan, monthly fee", 1000, "month", plan.monthly_fee_cents, plan.monthly_fee_cents)
    ]
    assert usage_by_segment(p, segments(p, whole(plan, p)), {})[0].included == plan.included_requests


@pytest.mark.parametrize(
    "anchor,change_after,before,after,expected",
    [
        # mid-period upgrade at an exact instant: each plan's fee x its share of the period's microseconds
        (MONTHS[0][0], 14 * DAYS + 5 * HOUR, STANDARD, PREMIUM, [1472, 4876]),  # 2900 x 341/672 = 1471.6
        (MONTHS[1][0], 10 * DAYS, STANDARD, PREMIUM, [1000, 6486]),  # 29000/29; 188100/29 = 6486.2
        (MONTHS[2][0], 12 * DAYS, STANDARD, PREMIUM, [1160, 5940]),
        (MONTHS[3][0], HOUR, STANDARD, ENTERPRISE, [4, 49833]),  # 2900/744 = 3.9; 49900 x 743/744 = 49832.9
        # mid-period downgrade
        (MONTHS[2][0], 20 * DAYS, PREMIUM, STANDARD, [6600, 967]),  # 29000/30 = 966.67 -> 967
        (MONTHS[3][0], 30 * DAYS - US, ENTERPRISE, FREE, [48290, 0]),
    ],
)
def test_mid_period_change_prorates_by_the_exact_share(anchor, change_after, before, after, expected):
    p = period(anchor, 0)
    change = p.start + change_after
    items = bill(p, [(p.start, before), (change, after)])
    assert [i.description.split(",")[0] for i in items] == [f"{before.name} plan", f"{after.name} plan"]
    assert [i.amount_cents for i in items] == expected
    assert [(i.quantity, i.unit, i.unit_amount_cents) for i in items] == [("1", "month", a) for a in expected]


def test_fee_line_names_its_exact_span_in_utc():
    p = period(dt.datetime(2024, 4, 1, 9, 30, tzinfo=UTC), 0)
    items = bill(p, [(p.start, STANDARD), (p.start + 10 * DAYS + dt.timedelta(minutes=5, seconds=7), PREMIUM)])
    assert items[0].description == "Standard plan, 2024-04-01 09:30:00 to 2024-04-11 09:35:07 UTC"
    assert items[1].description == "Premium plan, 2024-04-11 09:35:07 to 2024-05-01 09:30:00 UTC"


@pytest.mark.parametrize("offset", [10 * DAYS, 10 * DAYS - US, 10 * DAYS + US, US, HOUR])
def test_a_segment_ends_at_the_change_to_the_microsecond(offset):
    p = period(MONTHS[2][0], 0)
    found = segments(p, [(p.start, STANDARD), (p.start + offset, PREMIUM)])
    assert [(s.plan.id, s.start, s.end) for s in found] == [
        ("standard", p.start, p.start + offset),
        ("premium", p.start + offset, p.end),
    ]


def test_billing_ends_at_the_cancellation_instant():
    p = period(MONTHS[2][0], 0)
    items = bill(p, whole(STANDARD, p), until=p.start + 6 * DAYS + HOUR)
    # 2900 x 145 h / 720 h = 584.03
    assert [(i.description, i.amount_cents) for i in items] == [
        ("Standard plan, 2024-04-01 09:30:00 to 2024-04-07 10:30:00 UTC", 584)
    ]
    assert bill(p, whole(STANDARD, p), until=p.start + 6 * DAYS)[0].amount_cents == 580  # 6 days
    assert bill(p, whole(STANDARD, p), until=p.end + HOUR)[0].description == "Standard plan, monthly fee"


def test_a_cancellation_at_the_period_start_leaves_one_segment_of_no_duration():
    """Nothing of the fee or the included requests; usage dated after it (up to 5 minutes ahead of
    its receipt) is still billed, on the plan in force."""
    p = period(MONTHS[2][0], 0)
    found = segments(p, [(p.start, STANDARD), (p.start + HOUR, PREMIUM)], p.start - HOUR)
    assert [(s.plan.id, s.start, s.end) for s in found] == [("standard", p.start, p.start)]
    items = line_items(p, found, {p.start: 2000})
    assert [(i.description, i.amount_cents) for i in items] == [
        ("Standard plan, 2024-04-01 09:30:00 to 2024-04-01 09:30:00 UTC", 0),
        ("Standard plan overage: 2,000 requests over 0 included, 2024-04-01 09:30:00 to 2024-04-01 09:30:00 UTC", 100),
    ]


def test_several_changes_within_an_hour_each_make_a_segment_and_back_and_forth_is_not_merged():
    p = period(MONTHS[2][0], 0)
    history = [
        (p.start, STANDARD),
        (p.start + 3 * DAYS + HOUR, PREMIUM),
        (p.start + 3 * DAYS + HOUR + dt.timedelta(minutes=20), ENTERPRISE),
        (p.start + 3 * DAYS + 2 * HOUR, STANDARD),
    ]
    found = segments(p, history)
    assert [(s.plan.id, s.end - s.start) for s in found] == [
        ("standard", 3 * DAYS + HOUR),
        ("premium", dt.timedelta(minutes=20)),
        ("enterprise", dt.timedelta(minutes=40)),
        ("standard", 27 * DAYS - 2 * HOUR),
    ]
    assert [s.start for s in found[1:]] == [s.end for s in found[:-1]]


def test_of_changes_at_one_instant_the_last_given_wins():
    p = period(MONTHS[2][0], 0)
    at = p.start + HOUR
    found = segments(p, [(p.start, STANDARD), (at, PREMIUM), (at, ENTERPRISE)])
    assert [(s.plan.id, s.start, s.end) for s in found] == [("standard", p.start, at), ("enterprise", at, p.end)]


@pytest.mark.parametrize(
    "plan,requests,overage",
    [
        (STANDARD, 0, None),  # zero usage
        (STANDARD, 100_000, None),  # exactly at quota
        (STANDARD, 100_001, None),  # one over: 0.05 cent rounds to 0, nothing owed
        (STANDARD, 100_010, ("0.01", 1)),  # 0.5 cent rounds half-up to 1
        (STANDARD, 100_009, None),  # 0.45 cent rounds down to 0
        (STANDARD, 100_011, ("0.011", 1)),  # 0.55 -> 1
        (STANDARD, 101_000, ("1", 50)),
        (STANDARD, 102_345, ("2.345", 117)),  # 117.25 -> 117
        (STANDARD, 102_349, ("2.349", 117)),  # 117.45 -> 117
        (STANDARD, 102_350, ("2.35", 118)),  # 117.5 -> 118: the count where half a cent flips
        (PREMIUM, 1_000_050, ("0.05", 2)),  # 1.5 -> 2
        (ENTERPRISE, 10_000_150, ("0.15", 2)),  # 1.5 -> 2
        (FREE, 50_000, None),  # FREE overage is never billed
    ],
)
def test_overage_line(plan, requests, overage):
    p = period(MONTHS[2][0], 0)
    items = bill(p, whole(plan, p), {p.start: requests})
    assert items[0].amount_cents == plan.monthly_fee_cents
    assert_lines_consistent(items)
    if overage is None:
        assert len(items) == 1
    else:
        quantity, amount = overage
        assert len(items) == 2
        assert (items[1].quantity, items[1].unit) == (quantity, "1,000 requests")
        assert items[1].unit_amount_cents == plan.overage_per_1k_cents
        assert items[1].amount_cents == amount


def test_a_whole_period_overage_line_names_no_span():
    p = period(MONTHS[2][0], 0)
    items = bill(p, whole(STANDARD, p), {p.start: 102_350})
    assert items[1].description == "Standard plan overage: 2,350 requests over 100,000 included"


@pytest.mark.parametrize(
    "requests,overage_requests,cents",
    [
        (100_000, 0, 0),  # exactly the included requests: nothing over
        (100_001, 1, 0),  # included + 1: one request over, 0.05 cent rounds to 0
        (100_009, 9, 0),  # 0.45 cent: one more request ...
        (100_010, 10, 1),  # ... and half a cent flips to 1
    ],
)
def test_overage_counts_only_requests_beyond_the_included(requests, overage_requests, cents):
    """The issue-3 boundary: 100,001 requests on Standard is 1 over, never 100,001 or 100,009 as 1 cent."""
    p = period(MONTHS[2][0], 0)
    usage = SegmentUsage(Segment(STANDARD, p.start, p.end), requests, 100_000)
    assert (usage.overage_requests, usage.overage_cents) == (overage_requests, cents)
    assert overage_cents(requests, 100_000, STANDARD.overage_per_1k_cents) == cents


def test_usage_below_the_included_costs_nothing_whatever_the_price():
    assert overage_cents(99_999, 100_000, 5000) == 0
    assert overage_cents(100_000, 100_000, 5000) == 0
    assert overage_cents(100_001, 100_000, 5000) == 5


def test_an_empty_history_is_refused():
    with pytest.raises(ValueError, match="^a subscription always has a plan: the history is empty$"):
        segments(period(MONTHS[2][0], 0), [])


def test_time_before_the_first_change_bills_on_the_first_plan():
    """A history starting after the period start (a plan row dated a little late): the first plan
    from the period start, and its own row still starts a segment (segments are never merged)."""
    p = period(MONTHS[2][0], 0)
    found = segments(p, [(p.start + 2 * HOUR, STANDARD), (p.start + 5 * DAYS, PREMIUM)])
    assert [(s.plan.id, s.start - p.start) for s in found] == [
        ("standard", dt.timedelta(0)),
        ("standard", 2 * HOUR),
        ("premium", 5 * DAYS),
    ]


def test_usage_is_billed_on_the_plan_in_force_when_it_was_consumed():
    """Standard for 10 days with 5,000,000 requests, then a downgrade to Free."""
    p = period(MONTHS[2][0], 0)
    items = bill(p, [(p.start, STANDARD), (p.start + 10 * DAYS, FREE)], {p.start: 5_000_000})
    # Standard: 10 of 30 days -> 967 fee, 33,333 included; (5,000,000 - 33,333) x 50 / 1000 = 248,333.35 -> 248,333
    assert [(i.description.split(":")[0].split(",")[0], i.amount_cents) for i in items] == [
        ("Standard plan", 967),
        ("Free plan", 0),
        ("Standard plan overage", 248_333),
    ]
    assert items[2].quantity == "4966.667"
    assert_lines_consistent(items)


def test_a_plan_held_for_an_hour_bills_an_hours_share_and_its_usage_on_its_terms():
    """Issue 31's reproduction: Free, then Enterprise for one hour with 5,000,000 requests, then Free."""
    p = period(MONTHS[2][0], 0)  # 30 days = 720 hours
    up = p.start + 3 * DAYS
    history = [(p.start, FREE), (up, ENTERPRISE), (up + HOUR, FREE)]
    items = bill(p, history, {p.start: 10_000, up: 5_000_000})
    # Enterprise: 49900 / 720 = 69.3 -> 69; included 10,000,000 / 720 = 13,888.9 -> 13,889;
    # (5,000,000 - 13,889) x 10 / 1000 = 49,861.11 -> 49,861
    assert [(i.description.split(",")[0], i.amount_cents) for i in items] == [
        ("Free plan", 0),
        ("Enterprise plan", 69),
        ("Free plan", 0),
        ("Enterprise plan overage: 4", 49_861),
    ]
    assert items[3].description == (
        "Enterprise plan overage: 4,986,111 requests over 13,889 included, "
        "2024-04-04 09:30:00 to 2024-04-04 10:30:00 UTC"
    )
    assert_lines_consistent(items)


def test_each_segment_has_its_own_included_requests_and_price():
    p = period(MONTHS[2][0], 0)  # 30 days
    history = [(p.start, PREMIUM), (p.start + 15 * DAYS, STANDARD)]
    usage = {p.start: 600_000, p.start + 15 * DAYS: 160_000}
    items = bill(p, history, usage)
    # Premium 15 days: 500,000 included, 600,000 used -> 100,000 over at 30 = 3000
    # Standard 15 days: 50,000 included, 160,000 used -> 110,000 over at 50 = 5500
    assert [i.amount_cents for i in items] == [4950, 1450, 3000, 5500]
    assert items[2].description == (
        "Premium plan overage: 100,000 requests over 500,000 included, 2024-04-01 09:30:00 to 2024-04-16 09:30:00 UTC"
    )


def test_included_requests_and_fees_prorate_half_up():
    p = period(MONTHS[3][0], 0)  # 31 days
    first, rest = segments(p, [(p.start, STANDARD), (p.start + DAYS, PREMIUM)])
    # 100,000 x 1 / 31 = 3225.8 -> 3226; 1,000,000 x 30 / 31 = 967,741.9 -> 967,742; 2900 / 31 = 93.5 -> 94
    assert [prorate(STANDARD.included_requests, first, p), prorate(PREMIUM.included_requests, rest, p)] == [
        3226,
        967_742,
    ]
    assert prorate(2900, first, p) == 94
    assert prorate(1, Segment(STANDARD, p.start, p.start + (p.end - p.start) / 2), p) == 1  # exactly half: up


def test_segment_key_is_the_latest_change_at_or_before_the_instant_or_the_period_start():
    p = period(MONTHS[2][0], 0)
    changes = [p.start - DAYS, p.start + HOUR, p.start + 2 * HOUR, p.end + HOUR]
    assert segment_key(p, changes, p.start) == p.start
    assert segment_key(p, changes, p.start + HOUR - US) == p.start
    assert segment_key(p, changes, p.start + HOUR) == p.start + HOUR
    assert segment_key(p, changes, p.start + 2 * HOUR + US) == p.start + 2 * HOUR
    assert segment_key(p, [p.start + HOUR], p.start) == p.start  # before the first change
    assert segment_key(p, [], p.start + HOUR) == p.start


def test_usage_counted_after_billing_ended_counts_in_the_last_segment():
    p = period(MONTHS[2][0], 0)
    found = segments(p, whole(STANDARD, p), p.start + 5 * DAYS)
    assert segment_requests(found, {p.start: 10, p.start + 7 * DAYS: 5}) == [15]
    two = segments(p, [(p.start, STANDARD), (p.start + 2 * DAYS, PREMIUM)], p.start + 5 * DAYS)
    assert segment_requests(two, {p.start: 3, p.start + 2 * DAYS: 10, p.end + HOUR: 5}) == [3, 15]
    assert segment_requests(two, {p.start + 2 * DAYS - US: 4}) == [4, 0]


@pytest.mark.parametrize(
    "numerator,denominator,result", [(7, 1, 7), (0, 3, 0), (1, 3, 0), (3, 2, 2), (5, 10, 1), (4, 10, 0)]
)
def test_div_round_half_up(numerator, denominator, result):
    assert div_round_half_up(numerator, denominator) == result


@pytest.mark.parametrize("numerator,denominator", [(-1, 1000), (1, 0), (1, -1)])
def test_div_round_half_up_refuses_a_negative_amount_or_a_non_positive_divisor(numerator, denominator):
    refusal = "^div_round_half_up takes a non-negative numerator and a positive denominator$"
    with pytest.raises(ValueError, match=refusal):
        div_round_half_up(numerator, denominator)


@pytest.mark.parametrize("milli,text", [(0, "0"), (1000, "1"), (1, "0.001"), (1200, "1.2"), (4_966_667, "4966.667")])
def test_decimal_quantity(milli, text):
    assert decimal_quantity(milli) == text


@pytest.mark.parametrize(
    "cents,text", [(0, "$0.00"), (5, "$0.05"), (2900, "$29.00"), (123456789, "$1,234,567.89"), (-150, "-$1.50")]
)
def test_money_formatting_from_integer_cents(cents, text):
    assert money(cents, "USD") == text

"""Pure rules of invoicing: the status workflow, whole-day proration, overage, money formatting."""

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
    day_index,
    decimal_quantity,
    included_requests,
    line_items,
    segment_requests,
    segments,
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


def bill(p, history, requests_by_day=None, until=None):
    return line_items(p, segments(p, history, until), requests_by_day or {})


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


@pytest.mark.parametrize("anchor,days", MONTHS)
@pytest.mark.parametrize("plan", [FREE, STANDARD, PREMIUM, ENTERPRISE])
def test_no_change_is_one_full_fee_line(anchor, days, plan):
    p = period(anchor, 0)
    assert p.days == days
    assert bill(p, whole(plan, p)) == [
        LineItem(f"{plan.name} plan, monthly fee", 1000, "month", plan.monthly_fee_cents, plan.monthly_fee_cents)
    ]


@pytest.mark.parametrize(
    "anchor,days,change_day,before,after,expected",
    [
        # mid-period upgrade: Standard for `change_day` days, Premium for the rest
        (MONTHS[0][0], 28, 14, STANDARD, PREMIUM, [1450, 4950]),
        (MONTHS[1][0], 29, 10, STANDARD, PREMIUM, [1000, 6486]),  # 29000/29; 188100/29=6486.2
        (MONTHS[2][0], 30, 12, STANDARD, PREMIUM, [1160, 5940]),
        (MONTHS[3][0], 31, 1, STANDARD, ENTERPRISE, [94, 48290]),  # 2900/31=93.5 -> 94 (half-up)
        # mid-period downgrade
        (MONTHS[2][0], 30, 20, PREMIUM, STANDARD, [6600, 967]),  # 29000/30=966.67 -> 967
        (MONTHS[3][0], 31, 30, ENTERPRISE, FREE, [48290, 0]),
    ],
)
def test_mid_period_change_prorates_by_whole_days(anchor, days, change_day, before, after, expected):
    p = period(anchor, 0)
    # The change happens 5 hours into the day: it counts from the next day boundary.
    change = p.start + dt.timedelta(days=change_day - 1, hours=5)
    items = bill(p, [(p.start, before), (change, after)])
    assert [i.description.split(",")[:2] for i in items] == [
        [f"{before.name} plan", f" {change_day} of {days} days"],
        [f"{after.name} plan", f" {days - change_day} of {days} days"],
    ]
    assert [i.amount_cents for i in items] == expected
    assert [(i.quantity, i.unit, i.unit_amount_cents) for i in items] == [("1", "month", a) for a in expected]


def test_fee_line_names_its_dates():
    p = period(dt.datetime(2024, 4, 1, 9, 30, tzinfo=UTC), 0)
    items = bill(p, [(p.start, STANDARD), (p.start + dt.timedelta(days=10), PREMIUM)])
    assert items[0].description == "Standard plan, 10 of 30 days, 2024-04-01 to 2024-04-11"
    assert items[1].description == "Premium plan, 20 of 30 days, 2024-04-11 to 2024-05-01"


@pytest.mark.parametrize(
    "offset,standard_days",
    [
        (dt.timedelta(days=10), 10),
        (dt.timedelta(days=10, microseconds=-1), 10),
        (dt.timedelta(days=10, microseconds=1), 11),
    ],
)
def test_change_at_or_just_around_a_day_boundary(offset, standard_days):
    p = period(MONTHS[2][0], 0)
    items = bill(p, [(p.start, STANDARD), (p.start + offset, PREMIUM)])
    assert [i.description.split(",")[1] for i in items] == [
        f" {standard_days} of 30 days",
        f" {30 - standard_days} of 30 days",
    ]


def test_canceled_part_of_period_is_not_billed():
    p = period(MONTHS[2][0], 0)
    items = bill(p, whole(STANDARD, p), until=p.start + dt.timedelta(days=6, hours=1))
    assert [(i.description.split(",")[1], i.amount_cents) for i in items] == [(" 7 of 30 days", 677)]  # 676.67
    assert bill(p, whole(STANDARD, p), until=p.start + dt.timedelta(days=6))[0].amount_cents == 580  # 6 days


def test_several_changes_in_one_day_bill_that_day_once_and_back_and_forth_makes_segments():
    p = period(MONTHS[2][0], 0)
    history = [
        (p.start, STANDARD),
        (p.start + dt.timedelta(days=3, hours=1), PREMIUM),
        (p.start + dt.timedelta(days=3, hours=2), ENTERPRISE),
        (p.start + dt.timedelta(days=10), STANDARD),
    ]
    found = segments(p, history)
    assert [(s.plan.id, s.first_day, s.days) for s in found] == [
        ("standard", 0, 4),
        ("enterprise", 4, 6),
        ("standard", 10, 20),
    ]


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
    items = bill(p, whole(plan, p), {0: requests})
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


def test_a_whole_period_overage_line_names_no_days():
    p = period(MONTHS[2][0], 0)
    items = bill(p, whole(STANDARD, p), {4: 102_350})
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
    """Issue 20's first survivor: overage counted one request too many would bill 100,009 as 1 cent."""
    usage = SegmentUsage(Segment(STANDARD, 0, 30), requests, 100_000)
    assert (usage.overage_requests, usage.overage_cents) == (overage_requests, cents)
    assert overage_cents(requests, 100_000, STANDARD.overage_per_1k_cents) == cents


def test_usage_below_the_included_costs_nothing_whatever_the_price():
    assert overage_cents(99_999, 100_000, 5000) == 0
    assert overage_cents(100_000, 100_000, 5000) == 0
    assert overage_cents(100_001, 100_000, 5000) == 5


def test_an_empty_history_is_refused():
    with pytest.raises(ValueError, match="^a subscription always has a plan: the history is empty$"):
        segments(period(MONTHS[2][0], 0), [])


def test_days_before_the_first_change_bill_on_the_first_plan():
    """A history starting after the period start (a plan row dated a little late) bills day 0 on it."""
    p = period(MONTHS[2][0], 0)
    found = segments(p, [(p.start + dt.timedelta(hours=2), STANDARD), (p.start + dt.timedelta(days=5), PREMIUM)])
    assert [(s.plan.id, s.first_day, s.days) for s in found] == [("standard", 0, 5), ("premium", 5, 25)]


def test_usage_is_billed_on_the_plan_in_force_when_it_was_consumed():
    """The issue's case: Standard for 10 days with 5,000,000 requests, then a downgrade to Free."""
    p = period(MONTHS[2][0], 0)
    items = bill(p, [(p.start, STANDARD), (p.start + dt.timedelta(days=10), FREE)], {3: 5_000_000})
    # Standard: 10 of 30 days -> 967 fee, 33,333 included; (5,000,000 - 33,333) x 50 / 1000 = 248,333.35 -> 248,333
    assert [(i.description.split(":")[0].split(",")[0], i.amount_cents) for i in items] == [
        ("Standard plan", 967),
        ("Free plan", 0),
        ("Standard plan overage", 248_333),
    ]
    assert items[2].quantity == "4966.667"
    assert_lines_consistent(items)


def test_each_segment_has_its_own_included_requests_and_price():
    p = period(MONTHS[2][0], 0)  # 30 days
    history = [(p.start, PREMIUM), (p.start + dt.timedelta(days=15), STANDARD)]
    usage = {0: 400_000, 14: 200_000, 15: 100_000, 29: 60_000}
    items = bill(p, history, usage)
    # Premium 15 days: 500,000 included, 600,000 used -> 100,000 over at 30 = 3000
    # Standard 15 days: 50,000 included, 160,000 used -> 110,000 over at 50 = 5500
    assert [i.amount_cents for i in items] == [4950, 1450, 3000, 5500]
    assert "Premium plan overage: 100,000 requests over 500,000 included, 15 of 30 days" in items[2].description


def test_included_requests_prorate_half_up():
    p = period(MONTHS[3][0], 0)  # 31 days
    found = segments(p, [(p.start, STANDARD), (p.start + dt.timedelta(days=1), PREMIUM)])
    # 100,000 x 1 / 31 = 3225.8 -> 3226; 1,000,000 x 30 / 31 = 967,741.9 -> 967,742
    assert [included_requests(s, 31) for s in found] == [3226, 967_742]


def test_usage_after_the_last_billed_day_counts_in_the_last_segment():
    p = period(MONTHS[2][0], 0)
    found = segments(p, whole(STANDARD, p), p.start + dt.timedelta(days=5))
    assert segment_requests(found, {2: 10, 7: 5}) == [15]
    two = segments(p, [(p.start, STANDARD), (p.start + dt.timedelta(days=2), PREMIUM)], p.start + dt.timedelta(days=5))
    assert segment_requests(two, {1: 3, 2: 10, 7: 5}) == [3, 15]
    assert segment_requests([], {0: 4}) == []


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


def test_day_index_at_period_edges():
    p = period(MONTHS[2][0], 0)
    assert day_index(p, p.start) == 0
    assert day_index(p, p.start + dt.timedelta(days=1, microseconds=-1)) == 0
    assert day_index(p, p.start + dt.timedelta(days=1)) == 1
    assert day_index(p, p.end - dt.timedelta(microseconds=1)) == 29


@pytest.mark.parametrize(
    "cents,text", [(0, "$0.00"), (5, "$0.05"), (2900, "$29.00"), (123456789, "$1,234,567.89"), (-150, "-$1.50")]
)
def test_money_formatting_from_integer_cents(cents, text):
    assert money(cents, "USD") == text

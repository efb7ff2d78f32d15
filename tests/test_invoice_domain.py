"""Pure rules of invoicing: the status workflow, exact-instant proration, overage, money formatting."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from plan_terms import ENTERPRISE, FREE, PREMIUM, STANDARD
from server.domain import invoice_state, rating
from server.domain.errors import InvalidArgument
from server.domain.invoicing import (
    MAX_DESCRIPTION,
    InvoiceLine,
    LineItem,
    Segment,
    SegmentUsage,
    decimal_quantity,
    in_filter,
    is_seed_shape,
    line_items,
    prorate,
    rate_segments,
    rated_line_items,
    segment_distinct_counts,
    segment_figures,
    segment_index,
    segment_key,
    segment_requests,
    segments,
    tier_range,
    usage_by_segment,
)
from server.domain.meters import Aggregation, Cell, Meter
from server.domain.money import div_round_half_up, line_figures, money, quantity, unit_money
from server.domain.periods import period
from server.domain.plans import PlanTerms, VersionedPlan, seed_terms
from server.domain.pricing import overage_cents
from server.domain.rating import SCALE as N
from server.domain.rating import Charge, Model, PriceTier, Share

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
    """The reported case: Free, then Enterprise for one hour with 5,000,000 requests, then Free."""
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


def test_money_in_other_currencies_names_them():
    assert (money(150, "EUR"), money(150, "GBP"), money(150, "CHF")) == ("EUR 1.50", "GBP 1.50", "CHF 1.50")


@pytest.mark.parametrize(
    "unit_amount,text",
    [
        ("0", "$0.00"),
        ("50", "$0.50"),
        ("2900", "$29.00"),
        ("5", "$0.05"),
        ("0.025", "$0.00025"),
        ("0.000000001", "$0.00000000001"),
        ("250000.5", "$2,500.005"),
        ("123456789", "$1,234,567.89"),
        ("-150", "-$1.50"),
        ("10.50", "$0.105"),
    ],
)
def test_a_unit_price_shows_every_digit_in_major_units(unit_amount, text):
    assert unit_money(unit_amount, "USD") == text


@pytest.mark.parametrize("text", ["", "1.", ".5", "1e3", "1,000", "abc", "- 1", "+1"])
def test_a_unit_price_or_quantity_that_is_no_decimal_is_refused(text):
    with pytest.raises(ValueError, match="not a decimal string"):
        unit_money(text, "USD")
    with pytest.raises(ValueError, match="not a decimal string"):
        quantity(text)


@pytest.mark.parametrize(
    "text,shown",
    [
        ("0", "0"),
        ("999", "999"),
        ("1000", "1,000"),
        ("2500000.25", "2,500,000.25"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("1234.500", "1,234.500"),
        ("-1234", "-1,234"),
    ],
)
def test_a_quantity_groups_its_thousands_and_keeps_its_fraction(text, shown):
    assert quantity(text) == shown


def test_line_figures_say_how_the_amount_comes_about():
    assert line_figures("2500.5", "1,000 units", "2", "USD") == "2,500.5 \N{MULTIPLICATION SIGN} $0.02 per 1,000 units"
    assert line_figures("1", "month", "2900", "EUR") == "1 \N{MULTIPLICATION SIGN} EUR 29.00 per month"


# --- lines rated by the rating engine (plans as data) ---------------------------------------------

APRIL = period(dt.datetime(2024, 4, 1, tzinfo=UTC), 0)  # 30 days
T0, T1, T2 = APRIL.start, APRIL.start + 10 * DAYS, APRIL.start + 20 * DAYS
TOKENS = Meter("tokens", "Tokens", "llm", Aggregation.SUM, "tokens", ("model", "direction"))
IN_M1 = Charge("input", "tokens", Model.PER_UNIT, filter=(("direction", "in"), ("model", "m1")), unit_price=N)
ANY = Charge("all", "tokens", Model.PER_UNIT, unit_price=N)


def three_segments():
    plan = VersionedPlan("std", 1, seed_terms("Standard", 2900, "USD", 600, 100_000, 50))
    return segments(APRIL, [(T0, plan), (T1, plan), (T2, plan)])


def test_segment_index_is_the_last_segment_starting_at_or_before_the_key():
    starts = [T0, T1, T2]
    assert [segment_index(starts, key) for key in (T0 - US, T0, T1 - US, T1, T1 + US, T2, APRIL.end)] == [
        0,
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    assert segment_index([T0], T2) == 0


def test_in_filter_reads_a_groups_values_in_the_meters_group_by_order():
    assert in_filter(TOKENS, IN_M1, ("m1", "in")) is True
    assert in_filter(TOKENS, IN_M1, ("in", "m1")) is False
    assert in_filter(TOKENS, IN_M1, ("m1", "out")) is False
    assert in_filter(TOKENS, IN_M1, ("m2", "in")) is False
    assert in_filter(TOKENS, ANY, ("m2", "out")) is True


def cell(value: int, minute: int = 0, event_id: str = "e") -> Cell:
    return Cell(value, T0 + dt.timedelta(minutes=minute), event_id)


@pytest.mark.parametrize(
    "aggregation,expected",
    [
        (Aggregation.SUM, [7 * N, 0, 9 * N]),
        (Aggregation.COUNT, [7 * N, 0, 9 * N]),
        (Aggregation.MAX, [5 * N, 0, 9 * N]),
        (Aggregation.LATEST, [2 * N, 0, 9 * N]),
    ],
)
def test_segment_figures_fold_each_segments_cells_of_the_filtered_groups(aggregation, expected):
    meter = Meter("tokens", "Tokens", "llm", aggregation, "tokens", ("model", "direction"))
    cells = [
        (T0, ("m1", "in"), cell(5 * N, minute=1, event_id="a")),
        (T0, ("m1", "out"), cell(100 * N, minute=9)),  # not in the charge's filter
        (T1 - US, ("m1", "in"), cell(2 * N, minute=2, event_id="b")),  # before T1: the first segment
        (APRIL.end, ("m1", "in"), cell(9 * N)),  # after the end of billing: the last segment
    ]
    assert segment_figures(three_segments(), meter, IN_M1, cells) == expected


def test_segment_figures_of_no_cells_are_zero():
    assert segment_figures(three_segments(), TOKENS, ANY, []) == [0, 0, 0]
    assert segment_figures(three_segments(), TOKENS, ANY, [(T1, ("m", "d"), cell(3))]) == [0, 3, 0]


def test_segment_distinct_counts_count_each_segments_distinct_values_exactly():
    values = [
        (T0, ("m1", "in"), "u1"),
        (T0, ("m1", "in"), "u2"),
        (T0 + HOUR, ("m1", "in"), "u1"),  # the same value again
        (T0, ("m1", "out"), "u3"),  # not in the charge's filter
        (T2, ("m1", "in"), "u1"),  # counted again in another segment
    ]
    assert segment_distinct_counts(three_segments(), TOKENS, IN_M1, values) == [2 * N, 0, N]
    assert segment_distinct_counts(three_segments(), TOKENS, ANY, values) == [3 * N, 0, N]
    assert segment_distinct_counts(three_segments(), TOKENS, ANY, []) == [0, 0, 0]


def test_only_the_seed_plans_price_shape_is_worded_as_overage():
    seed = rating.seed_charge(1000, 50)
    assert is_seed_shape(seed) is True
    assert is_seed_shape(rating.seed_charge(0, 0, hard_limit=True)) is True
    for other in (
        Charge(seed.id, seed.meter_id, Model.PACKAGE, unit_price=seed.unit_price, package_size=1000),
        Charge(seed.id, "tokens", Model.PER_UNIT, unit_price=seed.unit_price, unit_size=1000),
        Charge(seed.id, seed.meter_id, Model.PER_UNIT, unit_price=seed.unit_price, unit_size=100),
        Charge(seed.id, seed.meter_id, Model.PER_UNIT, filter=(("endpoint", "/v1"),), unit_size=1000),
    ):
        assert is_seed_shape(other) is False


def test_rate_segments_rates_each_segment_on_its_plan_its_share_and_its_own_quantities():
    cheap = VersionedPlan("a", 1, PlanTerms("A", 3000, "USD", 60, charges=(ANY,)))
    dear = VersionedPlan("b", 2, PlanTerms("B", 6000, "USD", 60, charges=(dataclasses.replace(ANY, unit_price=2 * N),)))
    segments_ = segments(APRIL, [(T0, cheap), (T1, dear)])
    day = 24 * 3600 * 10**6
    assert rate_segments(APRIL, segments_, [{"all": 4 * N}, {"all": 5 * N, "other": N}]) == [
        rating.rate_segment(cheap.terms, Share(10 * day, 30 * day), {"all": 4 * N}),
        rating.rate_segment(dear.terms, Share(20 * day, 30 * day), {"all": 5 * N}),
    ]
    first, second = rate_segments(APRIL, segments_, [{"all": 4 * N}, {"all": 5 * N}])
    assert (first.fee.amount_cents, first.total_cents) == (1000, 1004)
    assert (second.fee.amount_cents, second.total_cents) == (4000, 4010)


AI_CHARGES = (
    rating.seed_charge(1000, 50),
    Charge("input", "tokens", Model.PER_UNIT, "Input tokens", (("direction", "in"), ("model", "m1")), 0, 2 * N, 1000),
    Charge("calls", "images", Model.PER_UNIT, unit_price=N),
    Charge("img", "images", Model.PACKAGE, unit_price=150 * N, package_size=1000),
    Charge("g", "tokens", Model.GRADUATED, tiers=(PriceTier(1000 * N, N, 5), PriceTier(None, N // 2, 7))),
    Charge("v", "tokens", Model.VOLUME, tiers=(PriceTier(1000 * N, N, 0), PriceTier(None, N // 2, 3))),
)
AI = VersionedPlan("ai", 1, PlanTerms("AI", 1000, "USD", 60, charges=AI_CHARGES))
AI_USAGE = {"requests": 3500 * N, "input": 2_500_500 * N, "calls": 3 * N, "img": 1001 * N, "g": 1500 * N + N // 2}
AI_USAGE |= {"v": 2000 * N}
AI_CHARGE_LINES = [
    ("AI plan, Input tokens, in, m1: 2,500,500 tokens over 0 included", "2500.5", "1,000 units", "2"),
    ("AI plan, calls: 3 images over 0 included", "3", "unit", "1"),
    ("AI plan, img: 1,001 images over 0 included, in packages of 1,000", "2", "package of 1,000", "150"),
    ("AI plan, g: up to 1,000 (tier 1), of 1,500.5 tokens over 0 included", "1000", "unit", "1"),
    ("AI plan, g: up to 1,000 (tier 1) flat fee", "1", "flat fee", "5"),
    ("AI plan, g: 1,001 and above (tier 2), of 1,500.5 tokens over 0 included", "500.5", "unit", "0.5"),
    ("AI plan, g: 1,001 and above (tier 2) flat fee", "1", "flat fee", "7"),
    ("AI plan, v: 2,000 tokens over 0 included, all at 1,001 and above (tier 2)", "2000", "unit", "0.5"),
    ("AI plan, v: 1,001 and above (tier 2) flat fee", "1", "flat fee", "3"),
]
AI_CHARGE_CENTS = [(2, 5001), (1, 3), (150, 300), (1, 1000), (5, 5), (1, 250), (7, 7), (1, 1000), (3, 3)]


def rated(history, quantities, until=None):
    segments_ = segments(APRIL, history, until)
    return rated_line_items(APRIL, segments_, rate_segments(APRIL, segments_, quantities))


def test_rated_lines_of_a_whole_period_name_no_span_and_word_each_model():
    assert rated([(T0, AI)], [AI_USAGE]) == [
        InvoiceLine("AI plan, monthly fee", "1", "month", "1000", 1000, 1000),
        InvoiceLine("AI plan overage: 2,500 requests over 1,000 included", "2.5", "1,000 requests", "50", 50, 125),
        *(
            InvoiceLine(description, quantity, unit, unit_amount, cents, amount)
            for (description, quantity, unit, unit_amount), (cents, amount) in zip(
                AI_CHARGE_LINES, AI_CHARGE_CENTS, strict=True
            )
        ),
    ]


def test_rated_lines_of_segments_are_every_fee_then_every_segments_charges_each_naming_its_span():
    first, second = "2024-04-01 00:00:00 to 2024-04-11 00:00:00 UTC", "2024-04-11 00:00:00 to 2024-05-01 00:00:00 UTC"
    items = rated([(T0, AI), (T1, AI)], [AI_USAGE, {"calls": 2 * N}])
    assert items[:3] == [
        InvoiceLine(f"AI plan, {first}", "1", "month", "333", 333, 333),
        InvoiceLine(f"AI plan, {second}", "1", "month", "667", 667, 667),
        InvoiceLine(
            f"AI plan overage: 3,167 requests over 333 included, {first}", "3.167", "1,000 requests", "50", 50, 158
        ),
    ]
    assert items[3:-1] == [
        InvoiceLine(f"{description}, {first}", quantity, unit, unit_amount, cents, amount)
        for (description, quantity, unit, unit_amount), (cents, amount) in zip(
            AI_CHARGE_LINES, AI_CHARGE_CENTS, strict=True
        )
    ]
    assert items[-1] == InvoiceLine(f"AI plan, calls: 2 images over 0 included, {second}", "2", "unit", "1", 1, 2)


def test_a_single_segment_ended_by_a_cancellation_names_its_span():
    items = rated([(T0, AI)], [{}], until=T1)
    assert items == [
        InvoiceLine("AI plan, 2024-04-01 00:00:00 to 2024-04-11 00:00:00 UTC", "1", "month", "333", 333, 333)
    ]


def test_a_charge_line_without_a_display_name_or_filter_names_the_charge_id():
    plan = VersionedPlan("p", 1, PlanTerms("P", 0, "USD", 60, charges=(dataclasses.replace(ANY, unit_size=10**6),)))
    (_, item) = rated([(T0, plan)], [{"all": 3 * 10**6 * N}])
    assert item == InvoiceLine("P plan, all: 3,000,000 tokens over 0 included", "3", "1,000,000 units", "1", 1, 3)


def test_a_middle_tier_names_both_its_bounds():
    tiers = (PriceTier(10 * N, N), PriceTier(1_000_000 * N + N // 4, N), PriceTier(None, N))
    plan = VersionedPlan(
        "p", 1, PlanTerms("P", 0, "USD", 60, charges=(Charge("v", "tokens", Model.VOLUME, tiers=tiers),))
    )
    (_, item) = rated([(T0, plan)], [{"v": 11 * N}])
    assert item.description == "P plan, v: 11 tokens over 0 included, all at 11\N{EN DASH}1,000,000.25 (tier 2)"


@pytest.mark.parametrize(
    "bounds,index,text",
    [
        ((None,), 0, "any quantity"),
        ((1000 * N, None), 0, "up to 1,000"),
        ((1000 * N, 5000 * N, None), 1, "1,001\N{EN DASH}5,000"),
        ((1000 * N, None), 1, "1,001 and above"),
        ((N // 2, 10 * N, None), 1, "over 0.5 to 10"),
        ((N // 2, None), 1, "over 0.5"),
        ((1_000_000 * N, 5_000_000 * N, None), 1, "1,000,001\N{EN DASH}5,000,000"),
    ],
)
def test_a_tier_range_counts_units_from_after_the_previous_bound(bounds, index, text):
    assert tier_range([PriceTier(bound, N) for bound in bounds], index) == text


def test_a_description_is_cut_at_the_stored_columns_length():
    at_the_limit = "n" * (MAX_DESCRIPTION - len(" plan, monthly fee"))
    (fee,) = rated([(T0, VersionedPlan("p", 1, PlanTerms(at_the_limit, 100, "USD", 60)))], [{}])
    assert fee.description == f"{at_the_limit} plan, monthly fee"
    assert len(fee.description) == MAX_DESCRIPTION
    (fee,) = rated([(T0, VersionedPlan("p", 1, PlanTerms(at_the_limit + "n", 100, "USD", 60)))], [{}])
    assert fee.description == f"{at_the_limit}n plan, monthly fe"
    assert len(fee.description) == MAX_DESCRIPTION


def test_a_package_unit_is_cut_at_32_characters():
    charge = Charge("p", "images", Model.PACKAGE, unit_price=N, package_size=10**25)
    plan = VersionedPlan("p", 1, PlanTerms("P", 0, "USD", 60, charges=(charge,)))
    (_, item) = rated([(T0, plan)], [{"p": N}])
    assert item.unit == "package of 10,000,000,000,000,00"
    assert len(item.unit) == 32


@pytest.mark.parametrize(
    "nanos,text",
    [
        (0, "0"),
        (N // 2, "0.5"),
        (N + N // 2, "1.5"),
        (1_234_567 * N, "1,234,567"),
        (1_234_567 * N + 1, "1,234,567.000000001"),
    ],
)
def test_a_meter_figure_reads_in_whole_units_with_separators_and_exact_decimals(nanos, text):
    charge = Charge("c", "tokens", Model.PER_UNIT, unit_price=10**18)
    plan = VersionedPlan("p", 1, PlanTerms("P", 0, "USD", 60, charges=(charge,)))
    items = rated([(T0, plan)], [{"c": nanos}])
    if nanos:
        assert items[1].description == f"P plan, c: {text} tokens over 0 included"
    else:
        assert items[1:] == []


def test_rated_lines_need_one_rating_per_segment():
    segments_ = segments(APRIL, [(T0, AI), (T1, AI)])
    ratings = rate_segments(APRIL, segments_, [{}, {}])
    with pytest.raises(ValueError, match="zip"):
        rated_line_items(APRIL, segments_, ratings[:1])
    with pytest.raises(ValueError, match="zip"):
        rated_line_items(APRIL, segments_[:1], ratings)


def test_a_filter_value_the_display_name_already_says_is_not_repeated():
    charge = Charge("c", "tokens", Model.PER_UNIT, "Tokens of m1", (("model", "m1"), ("region", "eu")), unit_price=N)
    plan = VersionedPlan("p", 1, PlanTerms("P", 0, "USD", 60, charges=(charge,)))
    (_, item) = rated([(T0, plan)], [{"c": 2 * N}])
    assert item.description == "P plan, Tokens of m1, eu: 2 tokens over 0 included"

"""Pure rules of invoicing: the status workflow, whole-day proration, overage, money formatting."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from server.domain import invoice_state
from server.domain.errors import InvalidArgument
from server.domain.invoicing import LineItem, line_items
from server.domain.periods import period
from server.notifications.pdf import money

UTC = dt.timezone.utc


@dataclasses.dataclass(frozen=True)
class P:
    id: str
    name: str
    tier: str
    monthly_fee_cents: int
    included_requests: int
    overage_per_1k_cents: int


FREE = P("free", "Free", "FREE", 0, 10_000, 0)
STANDARD = P("standard", "Standard", "STANDARD", 2900, 100_000, 50)
PREMIUM = P("premium", "Premium", "PREMIUM", 9900, 1_000_000, 30)
ENTERPRISE = P("enterprise", "Enterprise", "ENTERPRISE", 49900, 10_000_000, 10)

ALL = invoice_state.STATUSES
ALLOWED = {("PENDING", "SENT"), ("PENDING", "VOID"), ("SENT", "PAID"), ("SENT", "OVERDUE"), ("SENT", "VOID"),
           ("OVERDUE", "PAID"), ("OVERDUE", "VOID")}


@pytest.mark.parametrize("current,target", [(a, b) for a in ALL for b in ALL])
def test_transition_table(current, target):
    if (current, target) in ALLOWED:
        invoice_state.check_transition(current, target)
    else:
        with pytest.raises(InvalidArgument) as error:
            invoice_state.check_transition(current, target)
        assert current in error.value.message and target in error.value.message


@pytest.mark.parametrize("status,deletable", [("PENDING", True), ("VOID", True), ("SENT", False),
                                              ("PAID", False), ("OVERDUE", False)])
def test_deletable_only_pending_or_void(status, deletable):
    if deletable:
        invoice_state.check_deletable(status)
    else:
        with pytest.raises(InvalidArgument, match=status):
            invoice_state.check_deletable(status)


def whole(plan, p):
    return [(plan, p.start, p.end)]


# Anniversary periods of each month length: Feb 2023 (28), Feb 2024 (29), Apr (30), Jan (31).
MONTHS = [(dt.datetime(2023, 2, 1, 9, 30, tzinfo=UTC), 28), (dt.datetime(2024, 2, 1, 9, 30, tzinfo=UTC), 29),
          (dt.datetime(2024, 4, 1, 9, 30, tzinfo=UTC), 30), (dt.datetime(2024, 1, 1, 9, 30, tzinfo=UTC), 31)]


@pytest.mark.parametrize("anchor,days", MONTHS)
@pytest.mark.parametrize("plan", [FREE, STANDARD, PREMIUM, ENTERPRISE])
def test_no_change_is_one_full_base_fee_line(anchor, days, plan):
    p = period(anchor, 0)
    assert round((p.end - p.start) / dt.timedelta(days=1)) == days
    assert line_items(p, whole(plan, p), 0, plan) == [
        LineItem(f"Base fee: {plan.name} plan", 1, plan.monthly_fee_cents, plan.monthly_fee_cents)]


@pytest.mark.parametrize("anchor,days,change_day,before,after,expected", [
    # mid-period upgrade: Standard for `change_day` days, Premium for the rest
    (MONTHS[0][0], 28, 14, STANDARD, PREMIUM, [1450, 4950]),
    (MONTHS[1][0], 29, 10, STANDARD, PREMIUM, [1000, 6486]),   # 29000/29; 188100/29=6486.2
    (MONTHS[2][0], 30, 12, STANDARD, PREMIUM, [1160, 5940]),
    (MONTHS[3][0], 31, 1, STANDARD, ENTERPRISE, [94, 48290]),  # 2900/31=93.5 -> 94 (half-up)
    # mid-period downgrade
    (MONTHS[2][0], 30, 20, PREMIUM, STANDARD, [6600, 967]),    # 29000/30=966.67 -> 967
    (MONTHS[3][0], 31, 30, ENTERPRISE, FREE, [48290, 0]),
])
def test_mid_period_change_prorates_by_whole_days(anchor, days, change_day, before, after, expected):
    p = period(anchor, 0)
    # The change happens 5 hours into the day: it counts from the next day boundary.
    change = p.start + dt.timedelta(days=change_day - 1, hours=5)
    items = line_items(p, [(before, p.start, change), (after, change, p.end)], 0, after)
    assert [i.description for i in items] == [f"{before.name} plan, {change_day} of {days} days",
                                              f"{after.name} plan, {days - change_day} of {days} days"]
    assert [i.amount_cents for i in items] == expected
    assert [(i.quantity, i.unit_amount_cents) for i in items] == [(1, before.monthly_fee_cents),
                                                                  (1, after.monthly_fee_cents)]


def test_change_exactly_on_a_day_boundary_counts_that_day_on_the_new_plan():
    p = period(MONTHS[2][0], 0)
    change = p.start + dt.timedelta(days=10)
    items = line_items(p, [(STANDARD, p.start, change), (PREMIUM, change, p.end)], 0, PREMIUM)
    assert [i.description for i in items] == ["Standard plan, 10 of 30 days", "Premium plan, 20 of 30 days"]


def test_canceled_part_of_period_is_not_billed():
    p = period(MONTHS[2][0], 0)
    items = line_items(p, [(STANDARD, p.start, p.start + dt.timedelta(days=6, hours=1))], 0, STANDARD)
    assert items == [LineItem("Standard plan, 7 of 30 days", 1, 2900, 677)]  # 20300/30=676.67


@pytest.mark.parametrize("plan,requests,overage", [
    (STANDARD, 0, None),              # zero usage
    (STANDARD, 100_000, None),        # exactly at quota
    (STANDARD, 100_001, None),        # one over: 0.05 cent rounds to 0, nothing owed
    (STANDARD, 100_010, (10, 1)),     # 0.5 cent rounds half-up to 1
    (STANDARD, 100_009, None),        # 0.45 cent rounds down to 0
    (STANDARD, 101_000, (1000, 50)),
    (STANDARD, 102_345, (2345, 117)),  # 117.25 -> 117
    (PREMIUM, 1_000_050, (50, 2)),    # 1.5 -> 2
    (ENTERPRISE, 10_000_150, (150, 2)),  # 1.5 -> 2
    (FREE, 50_000, None),             # FREE overage is never billed
])
def test_overage_line(plan, requests, overage):
    p = period(MONTHS[2][0], 0)
    items = line_items(p, whole(plan, p), requests, plan)
    assert items[0].amount_cents == plan.monthly_fee_cents
    if overage is None:
        assert len(items) == 1
    else:
        quantity, amount = overage
        assert len(items) == 2
        assert items[1].quantity == quantity
        assert items[1].unit_amount_cents == plan.overage_per_1k_cents
        assert items[1].amount_cents == amount
        assert "per 1,000 requests" in items[1].description


def test_overage_uses_the_plan_in_force_at_the_end():
    p = period(MONTHS[2][0], 0)
    change = p.start + dt.timedelta(days=15)
    items = line_items(p, [(PREMIUM, p.start, change), (STANDARD, change, p.end)], 200_000, STANDARD)
    assert items[-1] == LineItem(items[-1].description, 100_000, 50, 5000)


@pytest.mark.parametrize("cents,text", [(0, "$0.00"), (5, "$0.05"), (2900, "$29.00"), (123456789, "$1,234,567.89"),
                                        (-150, "-$1.50")])
def test_money_formatting_from_integer_cents(cents, text):
    assert money(cents, "USD") == text

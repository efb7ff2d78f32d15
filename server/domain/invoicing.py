"""What an invoice charges for one period: base fee (prorated by days across plan changes) and
overage. Pure: plans are anything with the Plan model's pricing attributes, time is passed in.

Proration rule (whole days). A period of N days (N = period.days: 28..31) is split into day k =
[start + k days, start + k+1 days), k = 0..N-1, counted from the period start (anniversary
instants, not midnight). Each day is billed, whole, on the plan in force at the day's start;
a plan change therefore counts from the next day boundary, and several changes within one day
bill that day once. A plan's base line is fee x days_on_plan / N, rounded half-up once at the
line amount. Days no segment covers (after a cancellation) are not billed. A period on one plan
throughout is exactly one line, quantity 1, unit and amount the full fee.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable, Protocol

from server.domain.money import div_round_half_up
from server.domain.pricing import overage_cents

DAY = dt.timedelta(days=1)


class PlanTerms(Protocol):
    id: str
    name: str
    tier: str
    monthly_fee_cents: int
    included_requests: int
    overage_per_1k_cents: int


class PeriodLike(Protocol):
    start: dt.datetime
    end: dt.datetime


@dataclasses.dataclass(frozen=True)
class LineItem:
    description: str
    quantity: int
    unit_amount_cents: int
    amount_cents: int


def period_days(period: PeriodLike) -> int:
    return round((period.end - period.start) / DAY)


def days_on_plans(period: PeriodLike, plan_segments: Iterable[tuple[PlanTerms, dt.datetime, dt.datetime]]
                  ) -> list[tuple[PlanTerms, int]]:
    """(plan, days billed on it) in order of first appearance, by the whole-day rule above."""
    segments = list(plan_segments)
    days: dict[str, list] = {}
    for k in range(period_days(period)):
        day_start = period.start + k * DAY
        for plan, start, end in segments:
            if start <= day_start < end:
                days.setdefault(plan.id, [plan, 0])[1] += 1
                break
    return [(plan, count) for plan, count in days.values()]


def _grouped(n: int) -> str:
    return f"{n:,}"


def line_items(period: PeriodLike, plan_segments: Iterable[tuple[PlanTerms, dt.datetime, dt.datetime]],
               requests: int, overage_plan: PlanTerms) -> list[LineItem]:
    """The period's charges: one base line per plan billed, then an overage line if any is owed."""
    total_days = period_days(period)
    items = []
    billed = days_on_plans(period, plan_segments)
    for plan, days in billed:
        fee = plan.monthly_fee_cents
        if len(billed) == 1 and days == total_days:
            items.append(LineItem(f"Base fee: {plan.name} plan", 1, fee, fee))
        else:
            items.append(LineItem(f"{plan.name} plan, {days} of {total_days} days", 1, fee,
                                  div_round_half_up(fee * days, total_days)))
    over = max(0, requests - overage_plan.included_requests)
    amount = overage_cents(requests, overage_plan.included_requests, overage_plan.overage_per_1k_cents)
    if amount > 0:  # nothing owed (within quota, FREE tier, or under half a cent): no line
        items.append(LineItem(
            f"Overage: {_grouped(over)} requests over {_grouped(overage_plan.included_requests)} included "
            f"({overage_plan.name} plan, per 1,000 requests)",
            over, overage_plan.overage_per_1k_cents, amount))
    return items

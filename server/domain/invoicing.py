"""What an invoice charges for one period, billed by plan segments. Pure: plans are anything with
the Plan model's pricing attributes, usage and time are passed in.

Days. A period of N days (N = Period.days: 28..31) is split into day k = [start + k days,
start + k+1 days), k = 0..N-1, counted from the period start (anniversary instants, not
midnight). Each day is billed, whole, on the plan in force at the day's start: a plan change
counts from the next day boundary (a change exactly at a boundary counts from that day), and
several changes within one day bill that day once. Days from the cancellation on are not billed.

Segments. A run of consecutive days on one plan is a segment. Each segment bills, on its own plan:
- its fee: monthly_fee x days / N, half-up (the full fee when the segment is the whole period);
- its included requests: included_requests x days / N, half-up (a whole period: all of them);
- the usage of its days (events by their timestamps, from the per-day counters) beyond those
  included, at its own overage price: overage_requests x overage_per_1k / 1000, half-up.
So a plan change never changes what usage already consumed costs.

Lines. Every line has quantity x unit_amount = amount, rounded half-up once: a fee line is
quantity 1 at the (prorated) fee, the days in its description; an overage line is the overage
in thousands of requests (exact to 3 decimals, kept as thousandths) at the per-1,000 price.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Protocol

from server.domain.money import div_round_half_up
from server.domain.periods import DAY, Period
from server.domain.pricing import overage_cents

MILLI = 1000  # quantities are kept in thousandths: exact for a count of thousands of requests
FEE_UNIT = "month"
OVERAGE_UNIT = "1,000 requests"


class PlanTerms(Protocol):
    id: str
    name: str
    monthly_fee_cents: int
    included_requests: int
    overage_per_1k_cents: int


@dataclasses.dataclass(frozen=True)
class LineItem:
    description: str
    quantity_milli: int
    unit: str
    unit_amount_cents: int
    amount_cents: int

    @property
    def quantity(self) -> str:
        return decimal_quantity(self.quantity_milli)


def decimal_quantity(quantity_milli: int) -> str:
    """Thousandths as an exact decimal string: 1000 -> '1', 1234 -> '1.234', 1200 -> '1.2'."""
    whole, thousandths = divmod(quantity_milli, MILLI)
    return f"{whole}.{thousandths:03d}".rstrip("0") if thousandths else str(whole)


def line(description: str, quantity_milli: int, unit: str, unit_amount_cents: int) -> LineItem:
    """A line whose amount is quantity x unit amount, rounded half-up once."""
    return LineItem(
        description,
        quantity_milli,
        unit,
        unit_amount_cents,
        div_round_half_up(quantity_milli * unit_amount_cents, MILLI),
    )


@dataclasses.dataclass(frozen=True)
class Segment:
    """Days first_day .. first_day + days - 1 of a period, all on `plan`."""

    plan: PlanTerms
    first_day: int
    days: int


def segments(
    period: Period, history: Iterable[tuple[dt.datetime, PlanTerms]], billed_until: dt.datetime | None = None
) -> list[Segment]:
    """The period's plan segments from the dated plan history ((effective_at, plan), any order).

    `billed_until` (a cancellation) ends billing: only days starting before it are billed."""
    changes = sorted(history, key=lambda change: change[0])
    if not changes:
        raise ValueError("a subscription always has a plan: the history is empty")
    result: list[Segment] = []
    for k in range(period.days):
        day_start = period.start + k * DAY
        if billed_until is not None and day_start >= billed_until:
            break
        in_force = [plan for effective_at, plan in changes if effective_at <= day_start]
        plan = in_force[-1] if in_force else changes[0][1]
        if result and result[-1].plan.id == plan.id:
            result[-1] = dataclasses.replace(result[-1], days=result[-1].days + 1)
        else:
            result.append(Segment(plan, k, 1))
    return result


def included_requests(segment: Segment, period_days: int) -> int:
    return div_round_half_up(segment.plan.included_requests * segment.days, period_days)


def segment_requests(segments_: list[Segment], requests_by_day: Mapping[int, int]) -> list[int]:
    """Requests of each segment. Usage on a day no segment bills (after a cancellation) counts in
    the last segment: usage is never dropped."""
    totals = [0] * len(segments_)
    if not segments_:  # canceled at the period's first instant: nothing billed, nothing could be used
        return totals
    for day, requests in requests_by_day.items():
        index = next(
            (i for i, s in enumerate(segments_) if s.first_day <= day < s.first_day + s.days), len(segments_) - 1
        )
        totals[index] += requests
    return totals


@dataclasses.dataclass(frozen=True)
class SegmentUsage:
    segment: Segment
    requests: int
    included: int

    @property
    def overage_requests(self) -> int:
        return max(0, self.requests - self.included)

    @property
    def overage_cents(self) -> int:
        return overage_cents(self.requests, self.included, self.segment.plan.overage_per_1k_cents)


def usage_by_segment(
    period: Period, segments_: list[Segment], requests_by_day: Mapping[int, int]
) -> list[SegmentUsage]:
    return [
        SegmentUsage(segment, requests, included_requests(segment, period.days))
        for segment, requests in zip(segments_, segment_requests(segments_, requests_by_day))
    ]


def _days(period: Period, segment: Segment) -> str:
    first = period.start + segment.first_day * DAY
    last = first + segment.days * DAY
    return f"{segment.days} of {period.days} days, {first:%Y-%m-%d} to {last:%Y-%m-%d}"


def line_items(period: Period, segments_: list[Segment], requests_by_day: Mapping[int, int]) -> list[LineItem]:
    """One fee line per segment, then one overage line per segment whose overage costs a cent or more
    (a FREE plan's overage, priced 0, and a fraction of a cent that rounds to 0 owe nothing)."""
    usages = usage_by_segment(period, segments_, requests_by_day)
    whole = len(segments_) == 1 and segments_[0].days == period.days
    items = []
    for usage in usages:
        plan, days = usage.segment.plan, usage.segment.days
        if whole:
            items.append(line(f"{plan.name} plan, monthly fee", MILLI, FEE_UNIT, plan.monthly_fee_cents))
        else:
            fee = div_round_half_up(plan.monthly_fee_cents * days, period.days)
            items.append(line(f"{plan.name} plan, {_days(period, usage.segment)}", MILLI, FEE_UNIT, fee))
    for usage in usages:
        plan = usage.segment.plan
        if usage.overage_cents:
            scope = "" if whole else f", {_days(period, usage.segment)}"
            items.append(
                line(
                    f"{plan.name} plan overage: {usage.overage_requests:,} requests over {usage.included:,} "
                    f"included{scope}",
                    usage.overage_requests,
                    OVERAGE_UNIT,
                    plan.overage_per_1k_cents,
                )
            )
    return items


def day_index(period: Period, instant: dt.datetime) -> int:
    """Which day of `period` holds `instant` (0-based); the instant must be in the period."""
    return (instant - period.start) // DAY

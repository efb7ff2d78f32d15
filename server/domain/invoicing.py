"""What an invoice charges for one period, billed by plan segments. Pure: plans are anything with
the Plan model's pricing attributes, usage and time are passed in.

Segments. A period splits at the exact instants its plan changed (PlanChange.effective_at, to the
microsecond): a segment runs from the period start or a change to the next change, the end of
billing or the period end. Its plan is the last change at or before its start (several changes at
one instant: the last in the history's order; before the first change: the first plan). A
cancellation ends billing at its instant. Segments are never merged: each one's start is the key
its usage is counted under at ingest (segment_key), so a plan changed back and forth is several
segments.

Each segment bills, on its own plan, its exact share of the period, duration / period duration
counted in microseconds:
- its fee: monthly_fee x share, rounded half-up once, at the line;
- its included requests: included_requests x share, rounded half-up;
- the usage whose event timestamps fall in it, beyond its included requests, at its own
  overage price: overage_requests x overage_per_1k / 1000, half-up.
A segment that is the whole period bills exactly the fee and all the included requests (share 1,
nothing to round). Usage counted under a key after billing ended (an event timestamped up to 5
minutes ahead of a cancellation) counts in the last billed segment: usage is never dropped; a
cancellation at the period's first instant leaves one segment of no duration, fee 0, nothing
included. So a plan change never changes what usage already consumed costs, and a plan held for an
hour costs an hour's share of its fee and its own prices for that hour's usage.

Lines. Every line has quantity x unit_amount = amount, rounded half-up once: a fee line is
quantity 1 at the (prorated) fee, the segment's start and end (UTC, to the second) in its
description; an overage line is the overage in thousands of requests (exact to 3 decimals, kept as
thousandths) at the per-1,000 price.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, cast

from server.domain import decimals, rating, trials
from server.domain.meters import REQUESTS_METER, Cell, Meter, merge
from server.domain.money import div_round_half_up
from server.domain.periods import Period
from server.domain.pricing import overage_cents

MILLI = 1000  # quantities are kept in thousandths: exact for a count of thousands of requests
MICROSECOND = dt.timedelta(microseconds=1)  # the unit of a segment's share: exact for any stored instant
FEE_UNIT = "month"
OVERAGE_UNIT = "1,000 requests"
MAX_DESCRIPTION = 256  # the stored line's description column


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
    """[start, end) of a period, all on `plan`."""

    plan: PlanTerms
    start: dt.datetime
    end: dt.datetime


def prorate(amount: int, segment: Segment, period: Period) -> int:
    """amount x the segment's share of the period (microseconds), rounded half-up once."""
    return div_round_half_up(amount * ((segment.end - segment.start) // MICROSECOND), period.length // MICROSECOND)


def segment_key(period: Period, changes: Sequence[dt.datetime], instant: dt.datetime) -> dt.datetime:
    """The start of the segment of `period` holding `instant`: the latest change (`changes` are
    the history's instants, sorted) at or before it, or the period start. Usage is counted under
    this key at ingest; a new change at T re-keys the events already counted with timestamps >= T."""
    latest = bisect.bisect_right(changes, instant)
    return max(period.start, changes[latest - 1]) if latest else period.start


def segments(
    period: Period, history: Iterable[tuple[dt.datetime, PlanTerms]], billed_until: dt.datetime | None = None
) -> list[Segment]:
    """The period's plan segments from the dated plan history ((effective_at, plan), any order; of
    changes at one instant the last one given wins). `billed_until` (a cancellation) ends billing
    at its instant. Never empty."""
    changes = sorted(history, key=lambda change: change[0])
    if not changes:
        raise ValueError("a subscription always has a plan: the history is empty")
    end = period.end if billed_until is None else min(period.end, max(period.start, billed_until))
    starts = sorted({period.start, *(at for at, _ in changes if period.start < at < end)})
    return [Segment(_plan_at(changes, start), start, stop) for start, stop in itertools.pairwise([*starts, end])]


def _plan_at(changes: list[tuple[dt.datetime, PlanTerms]], instant: dt.datetime) -> PlanTerms:
    in_force = [plan for effective_at, plan in changes if effective_at <= instant]
    return in_force[-1] if in_force else changes[0][1]


def segment_requests(segments_: list[Segment], requests_by_key: Mapping[dt.datetime, int]) -> list[int]:
    """Requests of each segment from the counters keyed by segment_key: a key counts in the last
    segment starting at or before it (a key at or after the end of billing: the last segment)."""
    totals = [0] * len(segments_)
    starts = [s.start for s in segments_]
    for key, requests in requests_by_key.items():
        totals[bisect.bisect_right(starts, key) - 1] += requests
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
    period: Period, segments_: list[Segment], requests_by_key: Mapping[dt.datetime, int]
) -> list[SegmentUsage]:
    requests = segment_requests(segments_, requests_by_key)
    return [
        SegmentUsage(segment, requests[i], prorate(segment.plan.included_requests, segment, period))
        for i, segment in enumerate(segments_)
    ]


def _whole(period: Period, segments_: Sequence[Segment]) -> bool:
    """One segment that is the whole month: its fee line is the monthly fee, naming no span (a
    partial first period names its span, as its fee is a share)."""
    return period.month_start is None and [(s.start, s.end) for s in segments_] == [(period.start, period.end)]


def _span(segment: Segment) -> str:
    return f"{segment.start:%Y-%m-%d %H:%M:%S} to {segment.end:%Y-%m-%d %H:%M:%S} UTC"


def line_items(period: Period, segments_: list[Segment], requests_by_key: Mapping[dt.datetime, int]) -> list[LineItem]:
    """One fee line per segment, then one overage line per segment whose overage costs a cent or more
    (a FREE plan's overage, priced 0, and a fraction of a cent that rounds to 0 owe nothing). A
    segment that is the whole period names no span."""
    usages = usage_by_segment(period, segments_, requests_by_key)
    whole = _whole(period, segments_)
    items = []
    for usage in usages:
        plan = usage.segment.plan
        fee = prorate(plan.monthly_fee_cents, usage.segment, period)
        scope = "monthly fee" if whole else _span(usage.segment)
        items.append(line(f"{plan.name} plan, {scope}", MILLI, FEE_UNIT, fee))
    for usage in usages:
        plan = usage.segment.plan
        if usage.overage_cents:
            scope = "" if whole else f", {_span(usage.segment)}"
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


# --- lines rated by the rating engine (plans as data) -------------------------------------------
#
# The invoice and the usage estimate rate each segment on its plan version with
# rating.rate_segment; the functions below only gather each charge's figure of each segment and
# word the lines. The seed plans' one charge (PER_UNIT on `requests` per 1,000, no filter) keeps
# the wording above, so their invoices read exactly as before.


class RatedTerms(Protocol):
    """What rating and the lines' wording read of a plan version."""

    @property
    def name(self) -> str: ...

    @property
    def monthly_fee_cents(self) -> int: ...

    @property
    def charges(self) -> Sequence[rating.Charge]: ...


@dataclasses.dataclass(frozen=True)
class InvoiceLine:
    """An invoice line as stored and shown: quantity x unit_amount (exact decimal strings, the
    latter in minor units), rounded half-up once, is amount_cents."""

    description: str
    quantity: str
    unit: str
    unit_amount: str
    unit_amount_cents: int
    amount_cents: int

    @property
    def quantity_milli(self) -> int:
        """The quantity in thousandths, rounded half-up: the column lines had before `quantity`."""
        whole, _, fraction = self.quantity.partition(".")
        scaled = int(whole) * rating.QUANTITY_SCALE + int(fraction.ljust(rating.QUANTITY_DIGITS, "0") or "0")
        return div_round_half_up(scaled * MILLI, rating.QUANTITY_SCALE)


def segment_index(starts: Sequence[dt.datetime], key: dt.datetime) -> int:
    """The segment a counter keyed `key` (a segment start, invoicing.segment_key) counts in: the
    last one starting at or before it (a key at or after the end of billing: the last one)."""
    return max(0, bisect.bisect_right(starts, key) - 1)


def in_filter(meter: Meter, charge: rating.Charge, group: Sequence[str]) -> bool:
    """Whether a rollup group (values in the meter's group_by order) is one the charge prices."""
    return all(group[meter.group_by.index(key)] == value for key, value in charge.filter)


def segment_figures(
    segments_: Sequence[Segment], meter: Meter, charge: rating.Charge, cells: Iterable[tuple[dt.datetime, tuple, Cell]]
) -> list[int]:
    """Each segment's figure (nanos) of a SUM, COUNT, MAX or LATEST meter, from its rollup cells
    ((segment key, group, cell)) of the groups the charge's filter admits."""
    starts = [s.start for s in segments_]
    found: list[Cell | None] = [None] * len(segments_)
    for key, group, cell in cells:
        if not in_filter(meter, charge, group):
            continue
        index = segment_index(starts, key)
        held = found[index]
        found[index] = cell if held is None else merge(meter.aggregation, held, cell)  # SUM, COUNT: added
    return [0 if cell is None else cell.value for cell in found]


def segment_distinct_counts(
    segments_: Sequence[Segment], meter: Meter, charge: rating.Charge, values: Iterable[tuple[dt.datetime, tuple, str]]
) -> list[int]:
    """Each segment's figure (nanos) of a UNIQUE_COUNT meter: the distinct values of its sets
    ((segment key, group, value)) in the groups the charge's filter admits, counted exactly."""
    starts = [s.start for s in segments_]
    found: list[set[str]] = [set() for _ in segments_]
    for key, group, value in values:
        if in_filter(meter, charge, group):
            found[segment_index(starts, key)].add(value)
    return [len(distinct) * decimals.SCALE for distinct in found]


def is_seed_shape(charge: rating.Charge) -> bool:
    """The catalogue's one price shape: worded as the overage it always was."""
    return (
        charge.model is rating.Model.PER_UNIT
        and charge.meter_id == REQUESTS_METER
        and charge.unit_size == rating.SEED_UNIT_SIZE
        and not charge.filter
    )


def rate_segments(
    period: Period,
    segments_: Sequence[Segment],
    quantities: Sequence[Mapping[str, int]],
    trial_end: dt.datetime | None = None,
) -> list[rating.SegmentRating]:
    """Each segment rated on its plan version (`quantities[i]`: charge id -> nanos of segment i); a
    segment in a trial ending at `trial_end` is rated on nothing (domain/trials.py)."""
    return [
        rating.rate_segment(
            cast(rating.PlanPrices, segment.plan),
            trials.billed_share(segment, period, trial_end),
            trials.billed_quantities(segment, quantities[i], trial_end),
        )
        for i, segment in enumerate(segments_)
    ]


def rated_line_items(
    period: Period,
    segments_: Sequence[Segment],
    ratings: Sequence[rating.SegmentRating],
    trial_end: dt.datetime | None = None,
) -> list[InvoiceLine]:
    """The invoice's lines: each segment's fee line, then each segment's charge lines (a usage or
    flat line of 0 cents is left out by rating). A segment that is the whole period names no span;
    a segment in the trial says so on its fee line (of 0)."""
    whole = _whole(period, segments_)
    rated_segments = list(zip(segments_, ratings, strict=True))
    items = []
    for segment, rated in rated_segments:
        scope = "monthly fee" if whole else _span(segment)
        if trials.free(segment, trial_end):
            scope = f"free trial, {scope}"
        items.append(_invoice_line(f"{segment.plan.name} plan, {scope}", FEE_UNIT, rated.fee))
    for segment, rated in rated_segments:
        scope = "" if whole else f", {_span(segment)}"
        for charged in rated.charges:
            for item in charged.lines:
                description, unit = _wording(segment.plan.name, charged, item)
                items.append(_invoice_line(f"{description}{scope}", unit, item))
    return items


def _invoice_line(description: str, unit: str, item: rating.Line) -> InvoiceLine:
    return InvoiceLine(
        description[:MAX_DESCRIPTION],
        item.quantity,
        unit,
        item.unit_amount,
        item.unit_amount_cents,
        item.amount_cents,
    )


def _units(nanos: int) -> str:
    """A meter figure for a reader: whole units with thousands separators, decimals exact."""
    whole, fraction = divmod(nanos, decimals.SCALE)
    return f"{whole:,}" + (decimals.format_nanos(fraction)[1:] if fraction else "")


def _wording(plan_name: str, charged: rating.ChargeRating, item: rating.Line) -> tuple[str, str]:
    """(description, unit) of a charge's line: what is priced (the charge's name and the values of
    its filter the name does not already say: "Input tokens, m-large"), which tier and its range
    of units, and on what the included units were taken."""
    charge = charged.charge
    if is_seed_shape(charge):
        return (
            f"{plan_name} plan overage: {_units(charged.billable)} requests over {charged.included:,} included",
            OVERAGE_UNIT,
        )
    name = charge.display_name or charge.id
    label = ", ".join([f"{plan_name} plan", name, *(value for _, value in charge.filter if value not in name)])
    over = f"{_units(charged.billable)} {charge.meter_id} over {charged.included:,} included"
    if charge.model is rating.Model.PER_UNIT:
        unit = "unit" if charge.unit_size == 1 else f"{charge.unit_size:,} units"
        return f"{label}: {over}", unit
    if charge.model is rating.Model.PACKAGE:
        return f"{label}: {over}, in packages of {charge.package_size:,}", f"package of {charge.package_size:,}"[:32]
    assert item.tier_index is not None
    tier = f"{tier_range(charge.tiers, item.tier_index)} (tier {item.tier_index + 1})"
    if item.kind is rating.LineKind.FLAT:
        return f"{label}: {tier} flat fee", "flat fee"
    if charge.model is rating.Model.VOLUME:
        return f"{label}: {over}, all at {tier}", "unit"
    return f"{label}: {tier}, of {over}", "unit"


def tier_range(tiers: Sequence[rating.PriceTier], index: int) -> str:
    """The units a tier prices, as a reader counts them: "up to 1,000", "1,001–5,000",
    "5,001 and above". A tier holds what is above the previous bound up to its own, so after a
    whole bound L it starts at unit L + 1; after a fractional one it reads "over 2.5 to 10"."""
    lower = 0 if index == 0 else tiers[index - 1].up_to
    upper = tiers[index].up_to
    assert lower is not None
    if lower == 0:
        return "any quantity" if upper is None else f"up to {_units(upper)}"
    if lower % decimals.SCALE:
        return f"over {_units(lower)}" if upper is None else f"over {_units(lower)} to {_units(upper)}"
    first = _units(lower + decimals.SCALE)
    return f"{first} and above" if upper is None else f"{first}–{_units(upper)}"

"""Properties of rating (server/domain/rating.py): every charge model against an independent
reference in exact fractions over random tiers, quantities, included amounts and segment shares;
the seed plans rated as charges bill exactly what server/domain/invoicing.py bills, line for line;
a later plan change never reprices a closed segment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from fractions import Fraction

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from plan_terms import PLANS
from server.domain import decimals
from server.domain.invoicing import line_items, rate_segments, rated_line_items, segments
from server.domain.meters import REQUESTS, Aggregation, Meter
from server.domain.periods import period
from server.domain.plans import PlanTerms, VersionedPlan, charge_document
from server.domain.rating import (
    Charge,
    LineKind,
    Share,
    rate_charge,
    rate_segment,
    seed_charge,
    validate_charges,
)

UTC = dt.timezone.utc
N = decimals.SCALE
METERS = {m.id: m for m in (REQUESTS, Meter("units", "Units", "u", Aggregation.SUM, "n", ("model",)))}


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def reference(raw: dict, quantity: Fraction, share: Fraction) -> list[tuple[str, Fraction, Fraction, int | None]]:
    """(kind, quantity, unit amount, tier) of each line before rounding, the rule read plainly."""
    included = half_up(raw.get("included", 0) * share)
    billable = max(Fraction(0), quantity - included)
    model = raw["model"]
    if model == "PER_UNIT":
        return [("USAGE", billable / raw.get("unit_size", 1), Fraction(raw["unit_price"]), None)]
    if model == "PACKAGE":
        return [("USAGE", Fraction(math.ceil(billable / raw["package_size"])), Fraction(raw["unit_price"]), None)]
    tiers = raw["tiers"]
    lowers = [Fraction(0)] + [Fraction(t["up_to"]) for t in tiers[:-1]]
    lines = []
    for index, (tier, lower) in enumerate(zip(tiers, lowers, strict=True)):
        upper = Fraction(tier["up_to"]) if "up_to" in tier else None
        reached = billable > lower
        holds = reached and (upper is None or billable <= upper)
        if (model == "GRADUATED" and reached) or (model == "VOLUME" and holds):
            portion = billable if model == "VOLUME" else min(billable, upper if upper is not None else billable) - lower
            lines.append(("USAGE", portion, Fraction(tier["unit_price"]), index))
            lines.append(("FLAT", Fraction(1), Fraction(tier["flat_cents"]), index))
    return lines


nanos_price = st.one_of(
    st.just(0),
    st.integers(0, 10**12),  # up to 1,000 minor units with 9 decimals
    st.integers(0, 1000).map(lambda cents: cents * N),
    st.integers(0, 999).map(lambda n: n * 10**6),
)
prices = nanos_price.map(decimals.format_nanos)
flat_cents = st.one_of(st.just(0), st.integers(0, 100_000))
bounds = st.one_of(st.integers(1, 10**6).map(lambda whole: whole * N), st.integers(1, 10**16))


@st.composite
def tier_lists(draw):
    ups = sorted(set(draw(st.lists(bounds, max_size=5))))
    tiers = [
        {"up_to": decimals.format_nanos(up), "unit_price": draw(prices), "flat_cents": draw(flat_cents)} for up in ups
    ]
    return [*tiers, {"unit_price": draw(prices), "flat_cents": draw(flat_cents)}]


@st.composite
def charges(draw):
    raw = {"id": "c", "meter_id": "units", "included": draw(st.one_of(st.just(0), st.integers(0, 10**7)))}
    model = draw(st.sampled_from(["PER_UNIT", "PACKAGE", "GRADUATED", "VOLUME"]))
    raw["model"] = model
    if model == "PER_UNIT":
        raw |= {"unit_price": draw(prices), "unit_size": 10 ** draw(st.integers(0, 9))}
    elif model == "PACKAGE":
        raw |= {"unit_price": draw(prices), "package_size": draw(st.integers(1, 10**6))}
    else:
        raw["tiers"] = draw(tier_lists())
    return raw


shares = st.one_of(
    st.just((1, 1)),
    st.integers(1, 31 * 86_400_000_000).flatmap(lambda whole: st.tuples(st.integers(0, whole), st.just(whole))),
)


@st.composite
def quantities(draw, raw: dict, share: tuple[int, int]):
    """Nanos anywhere, or at a tier, package or included bound, or one nano either side of it."""
    included = half_up(raw["included"] * Fraction(*share)) * N
    marks = [0]
    for tier in raw.get("tiers", [])[:-1]:
        marks.append(decimals.parse(tier["up_to"]))
    if raw["model"] == "PACKAGE":
        marks.append(raw["package_size"] * N * draw(st.integers(1, 5)))
    near = st.sampled_from(marks).flatmap(lambda mark: st.sampled_from([-1, 0, 1]).map(lambda d: included + mark + d))
    return draw(st.one_of(near, st.integers(-(10**12), 10**17)))


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_every_model_rates_as_the_reference_and_every_line_adds_up(data):
    raw = data.draw(charges())
    share = data.draw(shares)
    quantity = data.draw(quantities(raw, share))
    (charge,) = validate_charges([raw], METERS, {"units"})
    rated = rate_charge(charge, quantity, Share(*share))

    expected = [
        (kind, q, u, tier, half_up(q * u))
        for kind, q, u, tier in reference(raw, Fraction(quantity, N), Fraction(*share))
        if half_up(q * u)
    ]
    got = [
        (str(i.kind), Fraction(i.quantity), Fraction(i.unit_amount), i.tier_index, i.amount_cents) for i in rated.lines
    ]
    assert got == expected
    for item in rated.lines:
        assert item.amount_cents == half_up(Fraction(item.quantity) * Fraction(item.unit_amount))
        assert item.unit_amount_cents == half_up(Fraction(item.unit_amount))
    assert rated.total_cents == sum(amount for *_, amount in expected)
    assert rated.included == half_up(raw["included"] * Fraction(*share))
    assert rated.billable == max(0, quantity - rated.included * N)


# --- the seed plans against invoicing ---------------------------------------------------------------

anchors = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(UTC))
MONTH_US = 28 * 24 * 3600 * 1_000_000
offsets = st.one_of(st.integers(0, MONTH_US - 1), st.integers(0, 3)).map(lambda us: dt.timedelta(microseconds=us))
requests = st.one_of(st.integers(0, 5_000_000_000), st.integers(0, 200_000), st.just(0))


@dataclasses.dataclass(frozen=True)
class Version:
    monthly_fee_cents: int
    charges: tuple[Charge, ...]


def as_charges(plan) -> Version:
    return Version(plan.monthly_fee_cents, (seed_charge(plan.included_requests, plan.overage_per_1k_cents),))


@settings(max_examples=300, deadline=None)
@given(
    anchors,
    st.sampled_from(PLANS),
    st.lists(st.tuples(offsets, st.sampled_from(PLANS)), max_size=6),
    st.none() | offsets,
    st.lists(requests, min_size=8, max_size=8),
)
def test_seed_plans_as_charges_bill_what_invoicing_bills_line_for_line(anchor, first, changes, cancel, counts):
    p = period(anchor, 0)
    history = [(p.start, first), *((p.start + offset, plan) for offset, plan in changes)]
    segs = segments(p, history, None if cancel is None else p.start + cancel)
    counters = {segment.start: counts[i % len(counts)] for i, segment in enumerate(segs)}
    today = line_items(p, segs, counters)

    rated = [
        rate_segment(as_charges(s.plan), Share.of(s.start, s.end, p), {"requests": counters[s.start] * N}) for s in segs
    ]
    lines = [r.fee for r in rated] + [item for r in rated for item in r.lines if item.kind is not LineKind.FEE]
    assert [(i.amount_cents, i.quantity, i.unit_amount_cents) for i in lines] == [
        (i.amount_cents, i.quantity, i.unit_amount_cents) for i in today
    ]
    assert sum(r.total_cents for r in rated) == sum(i.amount_cents for i in today)


@settings(max_examples=200, deadline=None)
@given(anchors, st.sampled_from(PLANS), st.lists(st.tuples(offsets, st.sampled_from(PLANS)), max_size=5), offsets)
def test_a_later_plan_change_never_reprices_a_closed_segment(anchor, first, changes, later):
    p = period(anchor, 0)
    history = [(p.start, first), *((p.start + offset, plan) for offset, plan in changes)]
    when = max(at for at, _ in history) + later
    assume(when < p.end)
    before, after = segments(p, history), segments(p, [*history, (when, PLANS[0])])
    closed = [s for s in before if s.end <= when]

    def rate(s):
        return rate_segment(as_charges(s.plan), Share.of(s.start, s.end, p), {"requests": 123_456 * N})

    assert [rate(s) for s in closed] == [rate(s) for s in after[: len(closed)]]


# --- published plans of any charges, changed mid-period -----------------------------------------


@st.composite
def published_plans(draw):
    """A plan version of 1 to 3 random charges (distinct ids) and a fee."""
    raws = [{**draw(charges()), "id": f"c{i}"} for i in range(draw(st.integers(1, 3)))]
    fee = draw(st.integers(0, 10**6))
    return VersionedPlan(
        "p", draw(st.integers(1, 9)), PlanTerms("P", fee, "USD", 60, validate_charges(raws, METERS, {"units"}))
    )


@settings(max_examples=200, deadline=None)
@given(
    anchors,
    st.lists(st.tuples(offsets, published_plans()), min_size=1, max_size=4),
    st.lists(st.integers(0, 10**16), min_size=12, max_size=12),
    offsets,
    published_plans(),
)
def test_any_plans_changed_mid_period_bill_lines_that_add_up_and_never_reprice_closed_segments(
    anchor, history, figures, later, newer
):
    """Every line's quantity x unit_amount, rounded half-up once, is its amount; the invoice is
    the sum of its lines and of each segment's reference rating; a change after the last one
    leaves the lines of every segment it closes as they were."""
    p = period(anchor, 0)
    dated = [(p.start + offset, plan) for offset, plan in history]
    segs = segments(p, dated)
    used = [{f"c{i}": figures[(k * 3 + i) % len(figures)] for i in range(3)} for k in range(len(segs))]
    lines = rated_line_items(p, segs, rate_segments(p, segs, used))
    for item in lines:
        assert item.amount_cents == half_up(Fraction(item.quantity) * Fraction(item.unit_amount))
    expected = 0
    for k, segment in enumerate(segs):
        share = Fraction(*dataclasses.astuple(Share.of(segment.start, segment.end, p)))
        expected += half_up(segment.plan.monthly_fee_cents * share)
        for charge in segment.plan.charges:
            raw = charge_document(charge)
            quantity = Fraction(used[k][charge.id], N)
            expected += sum(half_up(q * u) for _, q, u, _ in reference(_as_raw(raw), quantity, share))
    assert sum(item.amount_cents for item in lines) == expected

    when = max(at for at, _ in dated) + later
    assume(when < p.end)
    after = segments(p, [*dated, (when, newer)])
    closed = [s for s in segs if s.end <= when]
    assert after[: len(closed)] == closed
    assert rate_segments(p, closed, used[: len(closed)]) == rate_segments(p, after[: len(closed)], used[: len(closed)])


def _as_raw(document: dict) -> dict:
    """A stored charge document in the shape `reference` reads (the last tier without up_to)."""
    tiers = [{k: v for k, v in tier.items() if v is not None} for tier in document.get("tiers", [])]
    return {**document, "tiers": tiers} if tiers else document

"""Pure rules of rating (server/domain/rating.py): each charge model on worked figures and at its
boundaries (0, exactly at a tier bound, one nano past), proration of `included` and the fee, the
lines' exact decimals, the seed plans' shape, and the validation of a plan's charges."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from server.domain.errors import InvalidArgument
from server.domain.meters import REQUESTS, Aggregation, Meter
from server.domain.periods import period
from server.domain.rating import (
    MAX_CHARGES,
    MAX_TIERS,
    MAX_WHOLE,
    QUANTITY_SCALE,
    SCALE,
    WHOLE_PERIOD,
    Charge,
    ChargeRating,
    Line,
    LineKind,
    Model,
    PriceTier,
    SegmentRating,
    Share,
    fee_line,
    legacy_terms,
    line,
    rate_charge,
    rate_segment,
    seed_charge,
    validate_charges,
)

UTC = dt.timezone.utc
N = SCALE  # one unit, in nanos
Q = QUANTITY_SCALE  # a quantity of one, in a line's scale


def usage(charge_id: str, quantity_scaled: int, unit_nanos: int, tier: int | None = None) -> Line:
    return line(LineKind.USAGE, charge_id, quantity_scaled, unit_nanos, tier)


def flat(charge_id: str, cents: int, tier: int) -> Line:
    return line(LineKind.FLAT, charge_id, Q, cents * N, tier)


# --- lines -------------------------------------------------------------------------------------


def test_a_line_rounds_quantity_times_unit_amount_half_up_once():
    # 3 x 0.5 = 1.5 -> 2; 1 x 0.499999999 -> 0; 0.000000000000000001 x 10^9 cents... = 0.000000001 -> 0
    assert line(LineKind.USAGE, "c", 3 * Q, N // 2).amount_cents == 2
    assert line(LineKind.USAGE, "c", Q, N // 2 - 1).amount_cents == 0
    assert line(LineKind.USAGE, "c", Q, N // 2).amount_cents == 1
    assert line(LineKind.USAGE, "c", 1, N).amount_cents == 0
    assert line(LineKind.USAGE, "c", Q // 2, 3 * N) == Line(LineKind.USAGE, "c", Q // 2, 3 * N, 2, None)


def test_a_line_shows_its_quantity_and_unit_amount_as_exact_decimals():
    item = line(LineKind.USAGE, "tokens", 1_234 * Q // 1000, 250_000, 2)
    assert (item.quantity, item.unit_amount, item.unit_amount_cents, item.tier_index) == ("1.234", "0.00025", 0, 2)
    assert line(LineKind.USAGE, "c", 1, N).quantity == "0.000000000000000001"
    assert line(LineKind.USAGE, "c", 5 * Q, N).quantity == "5"
    assert line(LineKind.USAGE, "c", 0, N).quantity == "0"
    assert line(LineKind.USAGE, "c", Q + Q // 10, N).quantity == "1.1"


@pytest.mark.parametrize(
    "unit_nanos, cents", [(0, 0), (N // 2 - 1, 0), (N // 2, 1), (3 * N // 2, 2), (3 * N, 3), (2_499_999_999, 2)]
)
def test_the_unit_amount_for_older_clients_is_rounded_half_up_to_cents(unit_nanos, cents):
    assert line(LineKind.USAGE, "c", Q, unit_nanos).unit_amount_cents == cents


# --- shares and fees -----------------------------------------------------------------------------


def test_a_share_is_a_part_of_a_whole_in_microseconds():
    p = period(dt.datetime(2026, 2, 1, tzinfo=UTC), 0)  # 28 days
    share = Share.of(p.start, p.start + dt.timedelta(days=7, microseconds=1), p)
    assert share == Share(7 * 86_400_000_000 + 1, 28 * 86_400_000_000)
    assert Share.of(p.start, p.end, p).prorate(2900) == 2900
    assert Share(1, 1) == WHOLE_PERIOD


@pytest.mark.parametrize("part, whole", [(-1, 10), (11, 10), (0, 0), (1, 0), (0, -1)])
def test_a_share_outside_0_to_1_is_refused(part, whole):
    with pytest.raises(ValueError, match=rf"^a share is 0 <= part <= whole with whole > 0, not {part}/{whole}$"):
        Share(part, whole)


def test_shares_at_the_edges_are_accepted():
    assert Share(0, 10).prorate(100) == 0
    assert Share(10, 10).prorate(100) == 100


@pytest.mark.parametrize(
    "amount, part, whole, prorated", [(2900, 1, 2, 1450), (1, 1, 2, 1), (1, 1, 3, 0), (3, 1, 2, 2), (5, 1, 4, 1)]
)
def test_prorating_rounds_half_up_once(amount, part, whole, prorated):
    assert Share(part, whole).prorate(amount) == prorated


def test_the_fee_line_is_one_month_at_the_prorated_fee_and_stays_at_0():
    assert fee_line(2900, Share(1, 2)) == Line(LineKind.FEE, "", Q, 1450 * N, 1450, None)
    assert fee_line(0, WHOLE_PERIOD) == Line(LineKind.FEE, "", Q, 0, 0, None)
    assert rate_segment(Plan(0, ()), WHOLE_PERIOD, {}).lines == (Line(LineKind.FEE, "", Q, 0, 0, None),)


# --- per unit ------------------------------------------------------------------------------------

TOKENS = Charge("input", "tokens", Model.PER_UNIT, unit_price=250_000)  # 0.00025 cents a token


def test_per_unit_prices_the_billable_quantity_per_unit_size():
    charge = dataclasses.replace(TOKENS, unit_price=250 * N, unit_size=1_000_000, included=1_000_000)
    rated = rate_charge(charge, 3_500_000 * N, WHOLE_PERIOD)
    assert rated == ChargeRating(
        charge, 3_500_000 * N, 1_000_000, 2_500_000 * N, (usage("input", 5 * Q // 2, 250 * N),)
    )
    assert (rated.lines[0].quantity, rated.lines[0].amount_cents, rated.total_cents) == ("2.5", 625, 625)


def test_per_unit_keeps_every_nano_of_a_decimal_quantity_exactly():
    charge = dataclasses.replace(TOKENS, unit_price=7 * N, unit_size=10**9)
    rated = rate_charge(charge, 1, WHOLE_PERIOD)  # one nano of a unit, per 10^9 units
    assert rated.lines == ()  # 7 x 10^-18 cents rounds to 0: left out
    big = rate_charge(charge, 10**9 * N + 1, WHOLE_PERIOD)
    assert big.lines[0].quantity == "1.000000000000000001"
    assert big.lines[0].amount_cents == 7


def test_per_unit_with_the_default_unit_size_is_per_unit():
    rated = rate_charge(TOKENS, 10_000 * N, WHOLE_PERIOD)
    assert rated.lines == (usage("input", 10_000 * Q, 250_000),)
    assert rated.lines[0].amount_cents == 3  # 2.5 -> 3


def test_included_is_prorated_by_the_segment_and_usage_within_it_bills_nothing():
    charge = dataclasses.replace(TOKENS, unit_price=N, included=1000)
    half = Share(1, 2)
    assert rate_charge(charge, 500 * N, half) == ChargeRating(charge, 500 * N, 500, 0, ())
    assert rate_charge(charge, 500 * N + 1, half).billable == 1
    assert rate_charge(charge, 501 * N, half).lines == (usage("input", Q, N),)
    assert rate_charge(charge, 3 * N, Share(1, 3)).included == 333
    assert rate_charge(charge, 3 * N, Share(1, 2000)).included == 1  # 0.5 -> 1
    assert rate_charge(charge, -5 * N, WHOLE_PERIOD).billable == 0  # a SUM below zero bills nothing


# --- package -------------------------------------------------------------------------------------

IMAGES = Charge("images", "images", Model.PACKAGE, unit_price=150 * N, package_size=100)


@pytest.mark.parametrize(
    "quantity, packages",
    [(0, 0), (1, 1), (100 * N, 1), (100 * N + 1, 2), (200 * N, 2), (250 * N, 3)],
)
def test_package_bills_every_package_begun(quantity, packages):
    lines = rate_charge(IMAGES, quantity, WHOLE_PERIOD).lines
    assert lines == ((usage("images", packages * Q, 150 * N),) if packages else ())


def test_package_counts_packages_beyond_the_included_units():
    charge = dataclasses.replace(IMAGES, included=100)
    assert rate_charge(charge, 100 * N, WHOLE_PERIOD).lines == ()
    assert rate_charge(charge, 101 * N, WHOLE_PERIOD).lines == (usage("images", Q, 150 * N),)


# --- graduated and volume ------------------------------------------------------------------------

TIERS = (
    PriceTier(1000 * N, 2 * N, 0),
    PriceTier(10_000 * N, N, 500),
    PriceTier(None, N // 2, 1000),
)
GRADUATED = Charge("calls", "calls", Model.GRADUATED, tiers=TIERS)
VOLUME = Charge("calls", "calls", Model.VOLUME, tiers=TIERS)


def test_graduated_bills_each_reached_tier_its_slice_and_its_flat_fee():
    lines = rate_charge(GRADUATED, 12_000 * N, WHOLE_PERIOD).lines
    assert lines == (
        usage("calls", 1000 * Q, 2 * N, 0),
        usage("calls", 9000 * Q, N, 1),
        flat("calls", 500, 1),
        usage("calls", 2000 * Q, N // 2, 2),
        flat("calls", 1000, 2),
    )
    assert [item.amount_cents for item in lines] == [2000, 9000, 500, 1000, 1000]


@pytest.mark.parametrize(
    "quantity, expected",
    [
        (0, []),
        (1, [usage("calls", N, 2 * N, 0)]),  # 1 nano: 2 x 10^-9 cents rounds to 0 ... see below
        (1000 * N, [usage("calls", 1000 * Q, 2 * N, 0)]),  # exactly at the bound: tier 1 not reached
        (1000 * N + 1, [usage("calls", 1000 * Q, 2 * N, 0), usage("calls", N, N, 1), flat("calls", 500, 1)]),
        (
            10_000 * N,
            [usage("calls", 1000 * Q, 2 * N, 0), usage("calls", 9000 * Q, N, 1), flat("calls", 500, 1)],
        ),
    ],
)
def test_graduated_at_its_boundaries(quantity, expected):
    assert list(rate_charge(GRADUATED, quantity, WHOLE_PERIOD).lines) == [i for i in expected if i.amount_cents]


def test_graduated_one_nano_past_a_bound_reaches_the_next_tier_and_its_flat_fee():
    lines = rate_charge(GRADUATED, 10_000 * N + 1, WHOLE_PERIOD).lines
    assert lines[-1] == flat("calls", 1000, 2)
    assert [item.tier_index for item in lines] == [0, 1, 1, 2]


def test_graduated_tiers_are_never_prorated_but_included_is():
    charge = dataclasses.replace(GRADUATED, included=2000)
    lines = rate_charge(charge, 2500 * N, Share(1, 2)).lines  # 1000 included: 1500 billable
    assert lines == (usage("calls", 1000 * Q, 2 * N, 0), usage("calls", 500 * Q, N, 1), flat("calls", 500, 1))


@pytest.mark.parametrize(
    "quantity, expected",
    [
        (0, []),
        (1000 * N, [usage("calls", 1000 * Q, 2 * N, 0)]),
        (1000 * N + 1, [usage("calls", 1000 * Q + N, N, 1), flat("calls", 500, 1)]),
        (10_000 * N, [usage("calls", 10_000 * Q, N, 1), flat("calls", 500, 1)]),
        (10_000 * N + 1, [usage("calls", 10_000 * Q + N, N // 2, 2), flat("calls", 1000, 2)]),
        (50_000 * N, [usage("calls", 50_000 * Q, N // 2, 2), flat("calls", 1000, 2)]),
    ],
)
def test_volume_prices_all_of_it_at_the_tier_holding_it(quantity, expected):
    assert list(rate_charge(VOLUME, quantity, WHOLE_PERIOD).lines) == expected


def test_volume_bills_a_tier_of_price_0_by_its_flat_fee_alone():
    charge = Charge("seats", "seats", Model.VOLUME, tiers=(PriceTier(5 * N, 0, 900), PriceTier(None, N, 0)))
    assert rate_charge(charge, 3 * N, WHOLE_PERIOD).lines == (flat("seats", 900, 0),)
    assert rate_charge(charge, 6 * N, WHOLE_PERIOD).lines == (usage("seats", 6 * Q, N, 1),)


def test_volume_without_an_unbounded_last_tier_is_a_programming_error():
    charge = Charge("seats", "seats", Model.VOLUME, tiers=(PriceTier(5 * N, N, 0),))
    assert rate_charge(charge, 5 * N, WHOLE_PERIOD).lines == (usage("seats", 5 * Q, N, 0),)
    with pytest.raises(ValueError, match=r"^charge 'seats': its last tier must be unbounded$"):
        rate_charge(charge, 5 * N + 1, WHOLE_PERIOD)


# --- a segment -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    monthly_fee_cents: int
    charges: tuple[Charge, ...]


def test_a_segment_is_its_fee_line_then_each_charge_in_the_plans_order():
    plan = Plan(2900, (IMAGES, TOKENS, GRADUATED))
    rated = rate_segment(plan, Share(1, 2), {"input": 10_000 * N, "images": 1})
    assert rated == SegmentRating(
        fee_line(2900, Share(1, 2)),
        (
            rate_charge(IMAGES, 1, Share(1, 2)),
            rate_charge(TOKENS, 10_000 * N, Share(1, 2)),
            ChargeRating(GRADUATED, 0, 0, 0, ()),
        ),
    )
    assert [item.amount_cents for item in rated.lines] == [1450, 150, 3]
    assert [item.kind for item in rated.lines] == [LineKind.FEE, LineKind.USAGE, LineKind.USAGE]
    assert rated.total_cents == 1603


# --- the seed plans ------------------------------------------------------------------------------


def test_a_seed_plan_is_one_per_unit_charge_on_requests_per_1000():
    assert seed_charge(100_000, 50) == Charge(
        "requests", "requests", Model.PER_UNIT, included=100_000, unit_price=50 * N, unit_size=1000
    )
    assert seed_charge(10_000, 0, hard_limit=True).hard_limit is True


def test_legacy_terms_come_from_the_first_per_unit_charge_on_requests_per_1000():
    per_1k = seed_charge(100_000, 50)
    assert legacy_terms([per_1k]) == (100_000, 50)
    assert legacy_terms([TOKENS, dataclasses.replace(per_1k, unit_price=N // 2), per_1k]) == (100_000, 1)
    assert legacy_terms([dataclasses.replace(per_1k, unit_price=N // 2 - 1)]) == (100_000, 0)
    assert legacy_terms([dataclasses.replace(per_1k, unit_size=1)]) == (0, 0)
    assert legacy_terms([dataclasses.replace(per_1k, meter_id="tokens")]) == (0, 0)
    assert legacy_terms([dataclasses.replace(per_1k, model=Model.PACKAGE, package_size=1000)]) == (0, 0)
    assert legacy_terms([]) == (0, 0)


# --- validation ----------------------------------------------------------------------------------

TOKEN_METER = Meter("tokens", "Tokens", "llm", Aggregation.SUM, "tokens", ("model", "direction"))
IMAGE_METER = Meter("images", "Images", "image", Aggregation.COUNT)
OLD_METER = Meter("old", "Old", "old", Aggregation.COUNT)
METERS = {m.id: m for m in (REQUESTS, TOKEN_METER, IMAGE_METER, OLD_METER)}
USABLE = {"requests", "tokens", "images"}
FIRST = {"id": "base", "meter_id": "requests", "model": "PER_UNIT", "unit_price": "1"}


def valid(model: str) -> dict:
    return {
        "PER_UNIT": {"id": "c", "meter_id": "tokens", "model": "PER_UNIT", "unit_price": "0.00025"},
        "PACKAGE": {"id": "c", "meter_id": "images", "model": "PACKAGE", "unit_price": "150", "package_size": 100},
        "GRADUATED": {
            "id": "c",
            "meter_id": "tokens",
            "model": "GRADUATED",
            "tiers": [{"up_to": 1000, "unit_price": "2"}, {"unit_price": "1", "flat_cents": 5}],
        },
        "VOLUME": {"id": "c", "meter_id": "tokens", "model": "VOLUME", "tiers": [{"unit_price": "0.5"}]},
    }[model]


def test_valid_charges_become_charges_with_their_defaults():
    charges = validate_charges(
        [
            FIRST,
            {
                "id": "input_large",
                "meter_id": "tokens",
                "display_name": "Input tokens, large model",
                "filter": {"model": "m-large", "direction": "in"},
                "included": MAX_WHOLE - 1,
                "model": "PER_UNIT",
                "unit_price": "0.000000001",
                "unit_size": 10**9,
                "hard_limit": True,
            },
            valid("PACKAGE"),
            {
                **valid("GRADUATED"),
                "id": "g",
                "tiers": [{"up_to": "0.5", "unit_price": 0, "flat_cents": None}, {"unit_price": "1.5"}],
            },
            {**valid("VOLUME"), "id": "v", "unit_price": None, "unit_size": None, "package_size": None, "filter": None},
        ],
        METERS,
        USABLE,
    )
    assert charges == (
        Charge("base", "requests", Model.PER_UNIT, unit_price=N),
        Charge(
            "input_large",
            "tokens",
            Model.PER_UNIT,
            "Input tokens, large model",
            (("direction", "in"), ("model", "m-large")),
            MAX_WHOLE - 1,
            1,
            10**9,
            1,
            (),
            True,
        ),
        Charge("c", "images", Model.PACKAGE, unit_price=150 * N, package_size=100),
        Charge("g", "tokens", Model.GRADUATED, tiers=(PriceTier(N // 2, 0, 0), PriceTier(None, 3 * N // 2, 0))),
        Charge("v", "tokens", Model.VOLUME, tiers=(PriceTier(None, N // 2, 0),)),
    )
    assert validate_charges([], METERS, USABLE) == ()


def test_the_limits_themselves_are_accepted():
    many = [{**FIRST, "id": f"c{i}"} for i in range(MAX_CHARGES)]
    assert len(validate_charges(many, METERS, USABLE)) == MAX_CHARGES
    tiers = [{"up_to": i + 1, "unit_price": "1"} for i in range(MAX_TIERS - 1)] + [{"unit_price": "1"}]
    (charge,) = validate_charges([{**valid("GRADUATED"), "tiers": tiers}], METERS, USABLE)
    assert len(charge.tiers) == MAX_TIERS
    long = validate_charges([{**valid("PER_UNIT"), "id": "x" * 64, "display_name": "n" * 256}], METERS, USABLE)
    assert long[0].id == "x" * 64
    text = validate_charges([{**valid("PER_UNIT"), "filter": {"model": "m" * 256}}], METERS, USABLE)
    assert text[0].filter == (("model", "m" * 256),)
    prices = validate_charges([{**valid("PER_UNIT"), "unit_price": MAX_WHOLE - 1}], METERS, USABLE)
    assert prices[0].unit_price == (MAX_WHOLE - 1) * N
    sizes = validate_charges([{**valid("PACKAGE"), "package_size": 1}], METERS, USABLE)
    assert sizes[0].package_size == 1
    free = validate_charges([{**valid("PER_UNIT"), "unit_price": "0", "unit_size": 1}], METERS, USABLE)
    assert (free[0].unit_price, free[0].unit_size) == (0, 1)


TOO_MANY_TIERS = [{"up_to": i + 1, "unit_price": "1"} for i in range(MAX_TIERS)] + [{"unit_price": "1"}]

FAULTS = [
    # (model of the valid charge, what changes, field at fault, message)
    ("PER_UNIT", {"colour": "red"}, "charges[1]", "charges[1] has no field 'colour'"),
    ("PER_UNIT", {"k" * 100: 1}, "charges[1]", f"charges[1] has no field '{'k' * 70}'"),  # a long name: its first 70
    (
        "PER_UNIT",
        {"filter": {"r" * 100: "eu"}},
        "charges[1].filter",
        f"charges[1].filter key '{'r' * 70}' is not among meter 'tokens''s group_by (model, direction)",
    ),
    (
        "VOLUME",
        {"tiers": [{"unit_price": "1", "t" * 100: 5}]},
        "charges[1].tiers[0]",
        f"charges[1].tiers[0] has no field '{'t' * 70}'",
    ),
    ("PER_UNIT", {"id": None}, "charges[1].id", "charges[1].id must match [a-z0-9_-]{1,64}"),
    ("PER_UNIT", {"id": 5}, "charges[1].id", "charges[1].id must match [a-z0-9_-]{1,64}"),
    ("PER_UNIT", {"id": "Input"}, "charges[1].id", "charges[1].id must match [a-z0-9_-]{1,64}"),
    ("PER_UNIT", {"id": "x" * 65}, "charges[1].id", "charges[1].id must match [a-z0-9_-]{1,64}"),
    ("PER_UNIT", {"id": "base"}, "charges[1].id", "charges[1].id 'base' is the id of an earlier charge"),
    ("PER_UNIT", {"meter_id": "nope"}, "charges[1].meter_id", "charges[1].meter_id names no meter"),
    ("PER_UNIT", {"meter_id": None}, "charges[1].meter_id", "charges[1].meter_id names no meter"),
    ("PER_UNIT", {"meter_id": "old"}, "charges[1].meter_id", "charges[1].meter_id 'old' is archived"),
    (
        "PER_UNIT",
        {"display_name": 5},
        "charges[1].display_name",
        "charges[1].display_name must be a string of at most 256 characters",
    ),
    (
        "PER_UNIT",
        {"display_name": "n" * 257},
        "charges[1].display_name",
        "charges[1].display_name must be a string of at most 256 characters",
    ),
    ("PER_UNIT", {"filter": ["model"]}, "charges[1].filter", "charges[1].filter must be an object of property: value"),
    (
        "PER_UNIT",
        {"filter": {"region": "eu"}},
        "charges[1].filter",
        "charges[1].filter key 'region' is not among meter 'tokens''s group_by (model, direction)",
    ),
    (
        "PACKAGE",
        {"filter": {"model": "x"}},
        "charges[1].filter",
        "charges[1].filter key 'model' is not among meter 'images''s group_by (nothing)",
    ),
    (
        "PER_UNIT",
        {"filter": {"model": 5}},
        "charges[1].filter.model",
        "charges[1].filter.model must be a string of at most 256 characters",
    ),
    (
        "PER_UNIT",
        {"filter": {"model": "m" * 257}},
        "charges[1].filter.model",
        "charges[1].filter.model must be a string of at most 256 characters",
    ),
    *(
        (
            "PER_UNIT",
            {"included": bad},
            "charges[1].included",
            f"charges[1].included must be a whole number from 0 to {MAX_WHOLE - 1}",
        )
        for bad in (-1, 1.5, "5", True, MAX_WHOLE)
    ),
    (
        "PER_UNIT",
        {"model": None},
        "charges[1].model",
        "charges[1].model must be one of PER_UNIT, PACKAGE, GRADUATED, VOLUME",
    ),
    (
        "PER_UNIT",
        {"model": "per_unit"},
        "charges[1].model",
        "charges[1].model must be one of PER_UNIT, PACKAGE, GRADUATED, VOLUME",
    ),
    (
        "PER_UNIT",
        {"model": 1},
        "charges[1].model",
        "charges[1].model must be one of PER_UNIT, PACKAGE, GRADUATED, VOLUME",
    ),
    ("PER_UNIT", {"tiers": []}, "charges[1].tiers", "charges[1].tiers does not apply to PER_UNIT"),
    ("PER_UNIT", {"package_size": 10}, "charges[1].package_size", "charges[1].package_size does not apply to PER_UNIT"),
    ("PACKAGE", {"unit_size": 10}, "charges[1].unit_size", "charges[1].unit_size does not apply to PACKAGE"),
    ("GRADUATED", {"unit_price": "1"}, "charges[1].unit_price", "charges[1].unit_price does not apply to GRADUATED"),
    ("VOLUME", {"package_size": 1}, "charges[1].package_size", "charges[1].package_size does not apply to VOLUME"),
    ("PER_UNIT", {"unit_price": None}, "charges[1].unit_price", "charges[1].unit_price must be a decimal string"),
    ("PACKAGE", {"unit_price": 0.5}, "charges[1].unit_price", "charges[1].unit_price must be a decimal string"),
    ("PACKAGE", {"unit_price": True}, "charges[1].unit_price", "charges[1].unit_price must be a decimal string"),
    ("PACKAGE", {"unit_price": MAX_WHOLE}, "charges[1].unit_price", "charges[1].unit_price must be a decimal string"),
    ("PACKAGE", {"unit_price": -MAX_WHOLE}, "charges[1].unit_price", "charges[1].unit_price must be a decimal string"),
    ("PER_UNIT", {"unit_price": "-0.5"}, "charges[1].unit_price", "charges[1].unit_price must not be negative"),
    ("PER_UNIT", {"unit_price": -1}, "charges[1].unit_price", "charges[1].unit_price must not be negative"),
    (
        "PER_UNIT",
        {"unit_price": "0.0000000001"},
        "charges[1].unit_price",
        "charges[1].unit_price is not an exact decimal: '0.0000000001' has more than 9 digits after the point",
    ),
    *(
        (
            "PER_UNIT",
            {"unit_size": bad},
            "charges[1].unit_size",
            "charges[1].unit_size must be a power of ten from 1 to 1000000000",
        )
        for bad in (0, 3, 1000.0, True, 10**10, "10")
    ),
    *(
        (
            "PACKAGE",
            {"package_size": bad},
            "charges[1].package_size",
            f"charges[1].package_size must be a whole number from 1 to {MAX_WHOLE - 1}",
        )
        for bad in (None, 0, True, 2.0, MAX_WHOLE)
    ),
    ("GRADUATED", {"tiers": None}, "charges[1].tiers", "charges[1].tiers must list 1 to 32 tiers"),
    ("GRADUATED", {"tiers": []}, "charges[1].tiers", "charges[1].tiers must list 1 to 32 tiers"),
    ("GRADUATED", {"tiers": "tiers"}, "charges[1].tiers", "charges[1].tiers must list 1 to 32 tiers"),
    ("GRADUATED", {"tiers": TOO_MANY_TIERS}, "charges[1].tiers", "charges[1].tiers must list 1 to 32 tiers"),
    ("VOLUME", {"tiers": ["1"]}, "charges[1].tiers[0]", "charges[1].tiers[0] must be an object"),
    (
        "VOLUME",
        {"tiers": [{"unit_price": "1", "to": 5}]},
        "charges[1].tiers[0]",
        "charges[1].tiers[0] has no field 'to'",
    ),
    (
        "GRADUATED",
        {"tiers": [{"unit_price": "1"}, {"unit_price": "1"}]},
        "charges[1].tiers[0].up_to",
        "charges[1].tiers[0].up_to is required: only the last tier is unbounded",
    ),
    (
        "GRADUATED",
        {"tiers": [{"up_to": 5, "unit_price": "1"}]},
        "charges[1].tiers[0].up_to",
        "charges[1].tiers[0].up_to must be absent: the last tier is unbounded",
    ),
    (
        "VOLUME",
        {"tiers": [{"up_to": 0, "unit_price": "1"}, {"unit_price": "1"}]},
        "charges[1].tiers[0].up_to",
        "charges[1].tiers[0].up_to must be above 0: tiers ascend",
    ),
    (
        "GRADUATED",
        {"tiers": [{"up_to": "1.5", "unit_price": "1"}, {"up_to": "1.5", "unit_price": "1"}, {"unit_price": "1"}]},
        "charges[1].tiers[1].up_to",
        "charges[1].tiers[1].up_to must be above 1.5: tiers ascend",
    ),
    (
        "GRADUATED",
        {"tiers": [{"up_to": 2, "unit_price": "1"}, {"up_to": 1, "unit_price": "1"}, {"unit_price": "1"}]},
        "charges[1].tiers[1].up_to",
        "charges[1].tiers[1].up_to must be above 2: tiers ascend",
    ),
    (
        "GRADUATED",
        {"tiers": [{"up_to": "ten", "unit_price": "1"}, {"unit_price": "1"}]},
        "charges[1].tiers[0].up_to",
        "charges[1].tiers[0].up_to is not an exact decimal: 'ten' is not a decimal number",
    ),
    (
        "VOLUME",
        {"tiers": [{}]},
        "charges[1].tiers[0].unit_price",
        "charges[1].tiers[0].unit_price must be a decimal string",
    ),
    (
        "VOLUME",
        {"tiers": [{"unit_price": "-1"}]},
        "charges[1].tiers[0].unit_price",
        "charges[1].tiers[0].unit_price must not be negative",
    ),
    (
        "VOLUME",
        {"tiers": [{"unit_price": "1", "flat_cents": -1}]},
        "charges[1].tiers[0].flat_cents",
        f"charges[1].tiers[0].flat_cents must be a whole number from 0 to {MAX_WHOLE - 1}",
    ),
    ("PER_UNIT", {"hard_limit": "yes"}, "charges[1].hard_limit", "charges[1].hard_limit must be true or false"),
    ("PER_UNIT", {"hard_limit": 1}, "charges[1].hard_limit", "charges[1].hard_limit must be true or false"),
]


@pytest.mark.parametrize("model, change, field, message", FAULTS)
def test_a_fault_is_refused_naming_its_path(model, change, field, message):
    with pytest.raises(InvalidArgument) as error:
        validate_charges([FIRST, {**valid(model), **change}], METERS, USABLE)
    assert (error.value.violations[0].field, error.value.message, error.value.reason) == (
        field,
        message,
        "INVALID_ARGUMENT",
    )


def test_too_many_charges_are_refused():
    with pytest.raises(InvalidArgument) as error:
        validate_charges([{**FIRST, "id": f"c{i}"} for i in range(MAX_CHARGES + 1)], METERS, USABLE)
    assert (error.value.violations[0].field, error.value.message) == ("charges", "charges holds at most 64 charges")


def test_the_first_fault_is_named():
    tiers = [{"up_to": 5, "unit_price": "-1"}, {"up_to": 3, "unit_price": "1"}, {"unit_price": "1"}]
    with pytest.raises(InvalidArgument) as error:
        validate_charges([{**valid("GRADUATED"), "tiers": tiers}, {"id": "Bad"}], METERS, USABLE)
    assert error.value.violations[0].field == "charges[0].tiers[0].unit_price"
    with pytest.raises(InvalidArgument) as error:
        validate_charges([{"id": "Bad", "meter_id": "nope", "colour": 1}], METERS, USABLE)
    assert error.value.violations[0].field == "charges[0]"
    with pytest.raises(InvalidArgument) as error:
        validate_charges([{"id": "a", "meter_id": "tokens", "hard_limit": 1, "unit_price": "-1"}], METERS, USABLE)
    assert error.value.violations[0].field == "charges[0].model"


def test_volume_one_nano_past_0_reaches_the_first_tier_and_its_flat_fee():
    charge = Charge("v", "tokens", Model.VOLUME, tiers=(PriceTier(None, 0, 5),))
    assert rate_charge(charge, 1, WHOLE_PERIOD).lines == (flat("v", 5, 0),)
    assert rate_charge(charge, 0, WHOLE_PERIOD).lines == ()

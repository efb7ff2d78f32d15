"""Plans as data (pure): seed terms, charge and route documents, plan validation at every limit."""

from __future__ import annotations

import pytest

from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.meters import REQUESTS, Aggregation, Meter
from server.domain.plans import (
    MAX_PATH_PREFIX,
    MAX_PLAN_NAME,
    MAX_RATE_LIMIT,
    MAX_ROUTE_COST,
    MAX_ROUTE_COSTS,
    MAX_TRIAL_DAYS,
    Billing,
    PlanTerms,
    RouteCost,
    VersionedPlan,
    charge_document,
    charge_from_document,
    route_cost_document,
    route_cost_from_document,
    seed_terms,
    validate_plan_id,
    validate_terms,
)
from server.domain.rating import MAX_WHOLE, SCALE, Charge, Model, PriceTier

N = SCALE
TOKENS = Meter("tokens", "Tokens", "llm", Aggregation.SUM, "tokens", ("model",))
OLD = Meter("old", "Old", "old", Aggregation.COUNT)
METERS = {m.id: m for m in (REQUESTS, TOKENS, OLD)}
USABLE = {"requests", "tokens"}
MINIMAL = {"name": "Pro", "rate_limit_per_minute": 60}


def refused(call, *args, **kwargs) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as error:
        call(*args, **kwargs)
    assert error.value.reason == "INVALID_ARGUMENT"
    (violation,) = error.value.violations
    assert violation == FieldViolation(violation.field, error.value.message)
    return error.value


def problem(raw: dict) -> tuple[str, str]:
    error = refused(validate_terms, raw, METERS, USABLE)
    return error.violations[0].field, error.message


# --- seed terms ------------------------------------------------------------------------------------


def test_seed_terms_are_one_per_unit_charge_on_requests_per_1000():
    assert seed_terms("Standard", 2900, "USD", 600, 100_000, 50) == PlanTerms(
        "Standard",
        2900,
        "USD",
        600,
        0,
        Billing.POSTPAID,
        (Charge("requests", "requests", Model.PER_UNIT, included=100_000, unit_price=50 * N, unit_size=1000),),
        (),
    )


def test_seed_terms_cap_the_plan_that_sells_no_overage():
    terms = seed_terms("Free", 0, "EUR", 60, 10_000, 0)
    assert terms.charges == (
        Charge("requests", "requests", Model.PER_UNIT, included=10_000, unit_size=1000, hard_limit=True),
    )
    assert (terms.name, terms.monthly_fee_cents, terms.currency, terms.rate_limit_per_minute) == ("Free", 0, "EUR", 60)
    assert seed_terms("Cheap", 0, "USD", 60, 0, 1).charges[0].hard_limit is False


# --- documents -------------------------------------------------------------------------------------

PER_UNIT = Charge(
    "input",
    "tokens",
    Model.PER_UNIT,
    "Input tokens",
    (("model", "m-large"),),
    1000,
    250_000,
    1000,
    1,
    (),
    True,
)
PACKAGE = Charge("img", "images", Model.PACKAGE, unit_price=150 * N, package_size=100)
GRADUATED = Charge(
    "g", "tokens", Model.GRADUATED, tiers=(PriceTier(N // 2, 2 * N, 5), PriceTier(None, 1, 0)), included=7
)
VOLUME = Charge("v", "tokens", Model.VOLUME, tiers=(PriceTier(None, N, 3),))


def test_a_per_unit_charge_document_shows_its_price_and_unit_size():
    assert charge_document(PER_UNIT) == {
        "id": "input",
        "meter_id": "tokens",
        "display_name": "Input tokens",
        "filter": {"model": "m-large"},
        "included": 1000,
        "model": "PER_UNIT",
        "hard_limit": True,
        "unit_price": "0.00025",
        "unit_size": 1000,
    }


def test_a_package_charge_document_shows_its_price_and_package_size():
    assert charge_document(PACKAGE) == {
        "id": "img",
        "meter_id": "images",
        "display_name": "",
        "filter": {},
        "included": 0,
        "model": "PACKAGE",
        "hard_limit": False,
        "unit_price": "150",
        "package_size": 100,
    }


def test_tiered_charge_documents_show_their_tiers_alone():
    assert charge_document(GRADUATED) == {
        "id": "g",
        "meter_id": "tokens",
        "display_name": "",
        "filter": {},
        "included": 7,
        "model": "GRADUATED",
        "hard_limit": False,
        "tiers": [
            {"up_to": "0.5", "unit_price": "2", "flat_cents": 5},
            {"up_to": None, "unit_price": "0.000000001", "flat_cents": 0},
        ],
    }
    document = charge_document(VOLUME)
    assert document["model"] == "VOLUME"
    assert document["tiers"] == [{"up_to": None, "unit_price": "1", "flat_cents": 3}]
    assert "unit_price" not in document and "unit_size" not in document and "package_size" not in document


@pytest.mark.parametrize("charge", [PER_UNIT, PACKAGE, GRADUATED, VOLUME])
def test_a_charge_reads_back_from_its_document_exactly(charge):
    assert charge_from_document(charge_document(charge)) == charge


def test_a_document_without_its_optional_fields_reads_as_their_defaults():
    assert charge_from_document({"id": "c", "meter_id": "tokens", "model": "VOLUME"}) == Charge(
        "c", "tokens", Model.VOLUME, "", (), 0, 0, 1, 1, (), False
    )
    (tier,) = charge_from_document(
        {"id": "c", "meter_id": "tokens", "model": "VOLUME", "tiers": [{"up_to": None, "unit_price": "3"}]}
    ).tiers
    assert tier == PriceTier(None, 3 * N, 0)


def test_a_documents_filter_reads_back_sorted():
    charge = charge_from_document(
        {"id": "c", "meter_id": "tokens", "model": "PER_UNIT", "filter": {"z": "1", "a": "2", "m": "3"}}
    )
    assert charge.filter == (("a", "2"), ("m", "3"), ("z", "1"))


def test_route_cost_documents():
    route = RouteCost("POST", "/v1/images", 25)
    assert route_cost_document(route) == {"method": "POST", "path_prefix": "/v1/images", "cost": 25}
    assert route_cost_from_document({"method": "GET", "path_prefix": "/v1", "cost": 3}) == RouteCost("GET", "/v1", 3)
    assert route_cost_from_document(route_cost_document(route)) == route


# --- plan ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan_id", ["a", "pro-2026_v2", "0", "x" * 64])
def test_a_plan_id_is_1_to_64_of_lower_case_digits_dash_and_underscore(plan_id):
    assert validate_plan_id(plan_id) == plan_id


@pytest.mark.parametrize("plan_id", ["", None, "x" * 65, "Pro", "pro plan", "pro.2", "pro\n"])
def test_any_other_plan_id_is_refused(plan_id):
    error = refused(validate_plan_id, plan_id)
    assert (error.violations[0].field, error.message) == ("id", "id must match [a-z0-9_-]{1,64}")


# --- plan terms ------------------------------------------------------------------------------------


def test_minimal_terms_take_every_default():
    assert validate_terms(MINIMAL, METERS, USABLE) == PlanTerms("Pro", 0, "USD", 60, 0, Billing.POSTPAID, (), ())
    assert validate_terms(MINIMAL, METERS, USABLE, default_currency="EUR").currency == "EUR"
    nulls = {
        **MINIMAL,
        "currency": None,
        "monthly_fee_cents": None,
        "trial_days": None,
        "billing": None,
        "charges": None,
        "route_costs": None,
    }
    assert validate_terms(nulls, METERS, USABLE) == PlanTerms("Pro", 0, "USD", 60, 0, Billing.POSTPAID, (), ())


def test_full_terms_are_kept_exactly():
    raw = {
        "name": "n" * MAX_PLAN_NAME,
        "currency": "GBP",
        "monthly_fee_cents": MAX_WHOLE - 1,
        "rate_limit_per_minute": MAX_RATE_LIMIT,
        "trial_days": MAX_TRIAL_DAYS,
        "billing": "PREPAID",
        "charges": [{"id": "c", "meter_id": "tokens", "model": "PER_UNIT", "unit_price": "0.5"}],
        "route_costs": [
            {"path_prefix": "/v1", "cost": MAX_ROUTE_COST},
            {"method": "GET", "path_prefix": "/", "cost": 1},
        ],
    }
    terms = validate_terms(raw, METERS, USABLE, default_currency="EUR")
    assert terms == PlanTerms(
        "n" * MAX_PLAN_NAME,
        MAX_WHOLE - 1,
        "GBP",
        MAX_RATE_LIMIT,
        MAX_TRIAL_DAYS,
        Billing.PREPAID,
        (Charge("c", "tokens", Model.PER_UNIT, unit_price=N // 2),),
        (RouteCost("*", "/v1", MAX_ROUTE_COST), RouteCost("GET", "/", 1)),
    )
    assert terms.billing is Billing.PREPAID
    assert validate_terms({**MINIMAL, "rate_limit_per_minute": 1, "billing": "POSTPAID"}, METERS, USABLE) == PlanTerms(
        "Pro", 0, "USD", 1
    )


NAME = "name is required, at most 128 characters"
CURRENCY = "currency must be an ISO 4217 code of three capital letters, e.g. USD"
FEE = f"monthly_fee_cents must be a whole number from 0 to {MAX_WHOLE - 1}"
RATE = "rate_limit_per_minute must be a whole number from 1 to 1000000"
TRIAL = "trial_days must be a whole number from 0 to 365"


@pytest.mark.parametrize(
    "change,field,message",
    [
        ({"name": None}, "name", NAME),
        ({"name": ""}, "name", NAME),
        ({"name": " \t"}, "name", NAME),
        ({"name": 5}, "name", NAME),
        ({"name": "n" * (MAX_PLAN_NAME + 1)}, "name", NAME),
        ({"currency": "usd"}, "currency", CURRENCY),
        ({"currency": "USDX"}, "currency", CURRENCY),
        ({"currency": "US"}, "currency", CURRENCY),
        ({"currency": 840}, "currency", CURRENCY),
        ({"monthly_fee_cents": -1}, "monthly_fee_cents", FEE),
        ({"monthly_fee_cents": MAX_WHOLE}, "monthly_fee_cents", FEE),
        ({"monthly_fee_cents": 1.0}, "monthly_fee_cents", FEE),
        ({"monthly_fee_cents": "100"}, "monthly_fee_cents", FEE),
        ({"monthly_fee_cents": True}, "monthly_fee_cents", FEE),
        ({"rate_limit_per_minute": None}, "rate_limit_per_minute", RATE),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute", RATE),
        ({"rate_limit_per_minute": MAX_RATE_LIMIT + 1}, "rate_limit_per_minute", RATE),
        ({"rate_limit_per_minute": True}, "rate_limit_per_minute", RATE),
        ({"trial_days": -1}, "trial_days", TRIAL),
        ({"trial_days": MAX_TRIAL_DAYS + 1}, "trial_days", TRIAL),
        ({"billing": "prepaid"}, "billing", "billing must be one of POSTPAID, PREPAID"),
        ({"billing": "BILLING_UNSPECIFIED"}, "billing", "billing must be one of POSTPAID, PREPAID"),
        ({"charges": [{"id": "c", "meter_id": "old", "model": "COUNT"}]}, "charges[0].meter_id", None),
    ],
)
def test_a_fault_in_the_terms_is_refused_naming_its_field(change, field, message):
    found_field, found_message = problem({**MINIMAL, **change})
    assert found_field == field
    if message is None:
        assert found_message == "charges[0].meter_id 'old' is archived"
    else:
        assert found_message == message


def test_the_first_fault_in_the_messages_order_is_named():
    raw: dict = {
        "name": "",
        "currency": "x",
        "monthly_fee_cents": -1,
        "rate_limit_per_minute": 0,
        "trial_days": -1,
        "billing": "x",
        "charges": [{}],
        "route_costs": [{}],
    }
    fixes = [
        ("name", "name", "Pro"),
        ("currency", "currency", "USD"),
        ("monthly_fee_cents", "monthly_fee_cents", 0),
        ("rate_limit_per_minute", "rate_limit_per_minute", 60),
        ("trial_days", "trial_days", 0),
        ("billing", "billing", "POSTPAID"),
        ("charges[0].id", "charges", []),
    ]
    for field, key, fix in fixes:
        assert problem(raw)[0] == field
        raw[key] = fix
    assert problem(raw) == ("route_costs[0].path_prefix", ROUTE_PREFIX.format(0))


# --- route costs -----------------------------------------------------------------------------------

ROUTE_PREFIX = "route_costs[{}].path_prefix must start with / and be at most 512 characters"
ROUTE_METHOD = "route_costs[{}].method must be * or an HTTP method in capitals"
ROUTE_COST = "route_costs[{}].cost must be a whole number from 1 to 1000"
ROUTE = {"path_prefix": "/v1", "cost": 1}


def routes(*routes_: dict) -> dict:
    return {**MINIMAL, "route_costs": list(routes_)}


@pytest.mark.parametrize("method", ["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_http_method_and_the_wildcard_are_accepted(method):
    (route,) = validate_terms(routes({**ROUTE, "method": method}), METERS, USABLE).route_costs
    assert route == RouteCost(method, "/v1", 1)


def test_route_costs_at_their_limits_are_accepted():
    many = [{**ROUTE, "path_prefix": f"/{i}"} for i in range(MAX_ROUTE_COSTS)]
    assert len(validate_terms(routes(*many), METERS, USABLE).route_costs) == MAX_ROUTE_COSTS
    longest = "/" + "p" * (MAX_PATH_PREFIX - 1)
    (route,) = validate_terms(routes({"path_prefix": longest, "cost": MAX_ROUTE_COST}), METERS, USABLE).route_costs
    assert route == RouteCost("*", longest, MAX_ROUTE_COST)


def test_too_many_route_costs_are_refused():
    many = [{**ROUTE, "path_prefix": f"/{i}"} for i in range(MAX_ROUTE_COSTS + 1)]
    assert problem(routes(*many)) == ("route_costs", "route_costs holds at most 64 routes")


@pytest.mark.parametrize(
    "route,field,message",
    [
        ({**ROUTE, "method": "get"}, "method", ROUTE_METHOD),
        ({**ROUTE, "method": "CONNECT"}, "method", ROUTE_METHOD),
        ({"cost": 1}, "path_prefix", ROUTE_PREFIX),
        ({"path_prefix": 5, "cost": 1}, "path_prefix", ROUTE_PREFIX),
        ({"path_prefix": "v1", "cost": 1}, "path_prefix", ROUTE_PREFIX),
        ({"path_prefix": "/" + "p" * MAX_PATH_PREFIX, "cost": 1}, "path_prefix", ROUTE_PREFIX),
        ({"path_prefix": "/v1"}, "cost", ROUTE_COST),
        ({"path_prefix": "/v1", "cost": 0}, "cost", ROUTE_COST),
        ({"path_prefix": "/v1", "cost": MAX_ROUTE_COST + 1}, "cost", ROUTE_COST),
        ({"path_prefix": "/v1", "cost": True}, "cost", ROUTE_COST),
    ],
)
def test_a_fault_in_a_route_cost_is_refused_naming_its_path(route, field, message):
    assert problem(routes(ROUTE, route)) == (f"route_costs[1].{field}", message.format(1))


# --- a plan version as billing reads it ------------------------------------------------------------


def test_a_versioned_plan_reads_its_terms():
    plan = VersionedPlan("standard", 3, seed_terms("Standard", 2900, "EUR", 600, 100_000, 50))
    assert (plan.id, plan.version, plan.name, plan.monthly_fee_cents, plan.currency) == (
        "standard",
        3,
        "Standard",
        2900,
        "EUR",
    )
    assert plan.charges == plan.terms.charges
    assert (plan.included_requests, plan.overage_per_1k_cents) == (100_000, 50)
    custom = VersionedPlan("tokens", 1, PlanTerms("Tokens", 500, "USD", 60, charges=(PER_UNIT,)))
    assert (custom.included_requests, custom.overage_per_1k_cents) == (0, 0)

"""Plans as data: tiers, billing modes, the terms one plan version sets, their validation as a
whole, and the document form of charges (what the `plan_version.charges` column and the API both
show). Pure: the meters a plan may price are passed in.

A plan version is immutable once written: an invoice rates a segment on the version its
subscription was on, so publishing new prices (a new version) never reprices a closed segment.
Charges are stored as documents with exact decimal strings (never floats), so a stored plan reads
back as exactly what was published.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from server.domain import decimals, rating
from server.domain.errors import InvalidArgument
from server.domain.meters import Meter

PLAN_ID = re.compile(r"[a-z0-9_-]{1,64}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_PLAN_NAME = 128
MAX_TRIAL_DAYS = 365
MAX_RATE_LIMIT = 1_000_000
MAX_ROUTE_COSTS = 64
MAX_ROUTE_COST = 1000
MAX_PATH_PREFIX = 512
HTTP_METHODS = frozenset({"*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Tier(enum.StrEnum):
    """A plan's stored tier (the proto's Tier, by name); the seed plans have one, published plans
    none (UNSPECIFIED): their rate limit is their own `rate_limit_per_minute`."""

    UNSPECIFIED = "TIER_UNSPECIFIED"
    FREE = "FREE"
    STANDARD = "STANDARD"
    PREMIUM = "PREMIUM"
    ENTERPRISE = "ENTERPRISE"


SEED_TIERS = (Tier.FREE, Tier.STANDARD, Tier.PREMIUM, Tier.ENTERPRISE)


class Billing(enum.StrEnum):
    POSTPAID = "POSTPAID"
    PREPAID = "PREPAID"


@dataclasses.dataclass(frozen=True)
class RouteCost:
    method: str  # "*" or an HTTP method
    path_prefix: str
    cost: int  # 1..MAX_ROUTE_COST


@dataclasses.dataclass(frozen=True)
class PlanTerms:
    """What one plan version sets (rating.PlanPrices for the rating engine)."""

    name: str
    monthly_fee_cents: int
    currency: str
    rate_limit_per_minute: int
    trial_days: int = 0
    billing: Billing = Billing.POSTPAID
    charges: tuple[rating.Charge, ...] = ()
    route_costs: tuple[RouteCost, ...] = ()


def seed_terms(
    name: str,
    monthly_fee_cents: int,
    currency: str,
    rate_limit_per_minute: int,
    included_requests: int,
    overage_per_1k_cents: int,
) -> PlanTerms:
    """A catalogue plan's one price shape as version terms: its charge is PER_UNIT on `requests`
    per 1,000, capped (hard_limit) where no overage is sold, as the Free plan is."""
    charge = rating.seed_charge(included_requests, overage_per_1k_cents, hard_limit=overage_per_1k_cents == 0)
    return PlanTerms(name, monthly_fee_cents, currency, rate_limit_per_minute, charges=(charge,))


# --- documents: charges as stored and shown -----------------------------------------------------


def charge_document(charge: rating.Charge) -> dict[str, Any]:
    """A charge as the API shows it and the database keeps it: prices and bounds as exact decimal
    strings in minor units (units for bounds), the fields its model does not read left out."""
    document: dict[str, Any] = {
        "id": charge.id,
        "meter_id": charge.meter_id,
        "display_name": charge.display_name,
        "filter": dict(charge.filter),
        "included": charge.included,
        "model": str(charge.model),
        "hard_limit": charge.hard_limit,
    }
    if charge.model in (rating.Model.PER_UNIT, rating.Model.PACKAGE):
        document["unit_price"] = decimals.format_nanos(charge.unit_price)
    if charge.model is rating.Model.PER_UNIT:
        document["unit_size"] = charge.unit_size
    if charge.model is rating.Model.PACKAGE:
        document["package_size"] = charge.package_size
    if charge.tiers:
        document["tiers"] = [
            {
                "up_to": None if tier.up_to is None else decimals.format_nanos(tier.up_to),
                "unit_price": decimals.format_nanos(tier.unit_price),
                "flat_cents": tier.flat_cents,
            }
            for tier in charge.tiers
        ]
    return document


def charge_from_document(document: Mapping[str, Any]) -> rating.Charge:
    """The charge a stored document holds (written by charge_document: already valid)."""
    return rating.Charge(
        id=document["id"],
        meter_id=document["meter_id"],
        model=rating.Model(document["model"]),
        display_name=document.get("display_name", ""),
        filter=tuple(sorted(document.get("filter", {}).items())),
        included=document.get("included", 0),
        unit_price=decimals.parse(document.get("unit_price", "0")),
        unit_size=document.get("unit_size", 1),
        package_size=document.get("package_size", 1),
        tiers=tuple(
            rating.PriceTier(
                None if tier["up_to"] is None else decimals.parse(tier["up_to"]),
                decimals.parse(tier["unit_price"]),
                tier.get("flat_cents", 0),
            )
            for tier in document.get("tiers", ())
        ),
        hard_limit=document.get("hard_limit", False),
    )


def route_cost_document(route: RouteCost) -> dict[str, Any]:
    return dataclasses.asdict(route)


def route_cost_from_document(document: Mapping[str, Any]) -> RouteCost:
    return RouteCost(document["method"], document["path_prefix"], document["cost"])


# --- validation ----------------------------------------------------------------------------------


def _invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field} {problem}", field=field)


def validate_plan_id(plan_id: str) -> str:
    if not PLAN_ID.fullmatch(plan_id or ""):
        raise _invalid("id", "must match [a-z0-9_-]{1,64}")
    return plan_id


def validate_terms(
    raw: Mapping[str, Any], meters: Mapping[str, Meter], usable: Collection[str], *, default_currency: str = "USD"
) -> PlanTerms:
    """A plan version as an operator sends it (the Plan message's fields; an absent optional
    field is missing or None), checked as a whole: the first fault is a 400 naming its path."""
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_PLAN_NAME:
        raise _invalid("name", f"is required, at most {MAX_PLAN_NAME} characters")
    currency = raw.get("currency") or default_currency
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise _invalid("currency", "must be an ISO 4217 code of three capital letters, e.g. USD")
    fee = _whole("monthly_fee_cents", raw.get("monthly_fee_cents") or 0, 0, rating.MAX_WHOLE - 1)
    rate_limit = _whole("rate_limit_per_minute", raw.get("rate_limit_per_minute"), 1, MAX_RATE_LIMIT)
    trial_days = _whole("trial_days", raw.get("trial_days") or 0, 0, MAX_TRIAL_DAYS)
    billing = raw.get("billing") or Billing.POSTPAID
    if billing not in Billing.__members__:
        raise _invalid("billing", f"must be one of {', '.join(Billing)}")
    charges = rating.validate_charges(raw.get("charges") or (), meters, usable)
    routes = _route_costs(raw.get("route_costs") or ())
    return PlanTerms(name, fee, currency, rate_limit, trial_days, Billing(billing), charges, routes)


def _whole(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(field, f"must be a whole number from {low} to {high}")
    return value


def _route_costs(raw: Sequence[Mapping[str, Any]]) -> tuple[RouteCost, ...]:
    if len(raw) > MAX_ROUTE_COSTS:
        raise _invalid("route_costs", f"holds at most {MAX_ROUTE_COSTS} routes")
    routes = []
    for index, route in enumerate(raw):
        path = f"route_costs[{index}]"
        method = route.get("method") or "*"
        if method not in HTTP_METHODS:
            raise _invalid(f"{path}.method", "must be * or an HTTP method in capitals")
        prefix = route.get("path_prefix")
        if not isinstance(prefix, str) or not prefix.startswith("/") or len(prefix) > MAX_PATH_PREFIX:
            raise _invalid(f"{path}.path_prefix", f"must start with / and be at most {MAX_PATH_PREFIX} characters")
        cost = _whole(f"{path}.cost", route.get("cost"), 1, MAX_ROUTE_COST)
        routes.append(RouteCost(method, prefix, cost))
    return tuple(routes)


class ReadsTerms:
    """What a plan at one version shows, read through its `terms`: the figures billing and the API
    both read, and the request terms derived for older clients."""

    terms: PlanTerms

    @property
    def name(self) -> str:
        return self.terms.name

    @property
    def monthly_fee_cents(self) -> int:
        return self.terms.monthly_fee_cents

    @property
    def currency(self) -> str:
        return self.terms.currency

    @property
    def rate_limit_per_minute(self) -> int:
        return self.terms.rate_limit_per_minute

    @property
    def charges(self) -> tuple[rating.Charge, ...]:
        return self.terms.charges

    @property
    def included_requests(self) -> int:
        return rating.legacy_terms(self.terms.charges)[0]

    @property
    def overage_per_1k_cents(self) -> int:
        return rating.legacy_terms(self.terms.charges)[1]


@dataclasses.dataclass(frozen=True)
class VersionedPlan(ReadsTerms):
    """A plan version as billing reads it: the segment's plan in invoicing (its name, fee and
    charges for rating; the derived legacy terms for the request figures of endpoint 9)."""

    id: str
    version: int
    terms: PlanTerms

"""Rating: what one plan segment charges, from its plan version's prices and its usage. Pure: the
plan, the segment's share of the period and each charge's aggregate are passed in; the invoice,
the usage estimate and the gateway's spend check all call it, so every pricing rule is here once.

Figures are exact integers, never floats:
- quantities the meters measure are nanos (server/domain/decimals.py, SCALE = 10^9 per unit);
- unit prices are nanos of a minor unit ("0.00025" cents per token is 250_000);
- a line's quantity is held in 10^-18 units (QUANTITY_SCALE): a billable figure in nanos divided by
  a unit_size that is a power of ten up to 10^9 has at most 18 digits after the point, so it is
  exact. Any other unit_size (3, 7, 1024) would make most quantities repeating decimals that no
  decimal string shows, and then "quantity x unit_amount = amount" could not be checked by anyone.

Per charge, on one segment: q is the meter's aggregate over the segment (the caller has applied
the charge's filter); billable = max(0, q - included x share), the included units rounded half-up
to whole units (a segment that is the whole period includes exactly `included`). Then:
- PER_UNIT: one line, billable / unit_size at unit_price;
- PACKAGE: one line, ceil(billable / package_size) packages at unit_price;
- GRADUATED: a line per tier the billable quantity reaches, its slice at the tier's price, and the
  tier's flat_cents as a line of its own (quantity 1);
- VOLUME: the tier holding billable (up to and including its up_to) prices all of it: one line,
  and that tier's flat_cents line.
A tier is reached when billable is above its lower bound, so 0 reaches none (nothing to bill, not
even a flat fee) and billable exactly at a bound stays in the lower tier. Tier bounds are never
prorated: only `included` and the fee are. Each line's amount is quantity x unit_amount rounded
half-up once; a usage or flat line of 0 cents is left out; the fee line always stays.

Rating depends on (segment share, plan version, aggregates) only, so a closed segment is never
repriced by anything that happens later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from server.domain import decimals
from server.domain.errors import InvalidArgument
from server.domain.meters import MAX_PROPERTY_TEXT, REQUESTS_METER, Meter
from server.domain.money import div_round_half_up
from server.domain.periods import Period

SCALE = decimals.SCALE  # nanos per unit (of a meter) or per minor unit (of a price)
QUANTITY_DIGITS = 18
QUANTITY_SCALE = 10**QUANTITY_DIGITS  # a line's quantity: billable nanos / unit_size, exact
PER_NANO = QUANTITY_SCALE // SCALE  # a nano of a unit in a line's quantity scale
UNIT_SIZES = frozenset(10**k for k in range(decimals.DIGITS + 1))  # 1, 10, ..., 10^9
MAX_WHOLE = 10**15  # included, package_size and flat_cents stay below, as decimals' values do
MAX_CHARGES = 64
MAX_TIERS = 32
MAX_NAME = 256
CHARGE_ID = re.compile(r"[a-z0-9_-]{1,64}")
MICROSECOND = dt.timedelta(microseconds=1)
SEED_UNIT_SIZE = 1000  # the seed plans' overage is priced per 1,000 requests


class Model(enum.StrEnum):
    PER_UNIT = "PER_UNIT"
    PACKAGE = "PACKAGE"
    GRADUATED = "GRADUATED"
    VOLUME = "VOLUME"


class LineKind(enum.StrEnum):
    FEE = "FEE"  # the segment's share of the monthly fee
    USAGE = "USAGE"  # a quantity of a charge at its (or a tier's) unit price
    FLAT = "FLAT"  # a reached tier's flat_cents


@dataclasses.dataclass(frozen=True)
class PriceTier:
    up_to: int | None  # nanos of the meter's unit, inclusive; None: unbounded (the last tier)
    unit_price: int  # nanos of a minor unit, per unit
    flat_cents: int = 0


@dataclasses.dataclass(frozen=True)
class Charge:
    id: str
    meter_id: str
    model: Model
    display_name: str = ""
    filter: tuple[tuple[str, str], ...] = ()  # sorted (property, value) pairs
    included: int = 0  # whole units per period
    unit_price: int = 0  # nanos of a minor unit (PER_UNIT: per unit_size units; PACKAGE: per package)
    unit_size: int = 1  # PER_UNIT: a power of ten, 1..10^9
    package_size: int = 1  # PACKAGE: whole units per package
    tiers: tuple[PriceTier, ...] = ()  # GRADUATED and VOLUME
    hard_limit: bool = False


class PlanPrices(Protocol):
    """What rating reads of a plan version."""

    @property
    def monthly_fee_cents(self) -> int: ...

    @property
    def charges(self) -> Sequence[Charge]: ...


@dataclasses.dataclass(frozen=True)
class Share:
    """A segment's share of its period, part / whole, counted in microseconds like
    invoicing.prorate: exact for any stored instant."""

    part: int
    whole: int

    def __post_init__(self) -> None:
        if not 0 <= self.part <= self.whole or self.whole <= 0:
            raise ValueError(f"a share is 0 <= part <= whole with whole > 0, not {self.part}/{self.whole}")

    @classmethod
    def of(cls, start: dt.datetime, end: dt.datetime, period: Period) -> Share:
        return cls((end - start) // MICROSECOND, period.length // MICROSECOND)

    def prorate(self, amount: int) -> int:
        """amount x the share, rounded half-up once (the whole period: exactly amount)."""
        return div_round_half_up(amount * self.part, self.whole)


WHOLE_PERIOD = Share(1, 1)


@dataclasses.dataclass(frozen=True)
class Line:
    """quantity x unit_amount, rounded half-up once, is amount_cents."""

    kind: LineKind
    charge_id: str  # "" on the fee line
    quantity_scaled: int  # the quantity x QUANTITY_SCALE
    unit_amount_nanos: int  # minor units x SCALE
    amount_cents: int
    tier_index: int | None = None  # GRADUATED and VOLUME lines: the tier priced

    @property
    def quantity(self) -> str:
        """The exact quantity as a decimal string ("1.234", "0.000000000001")."""
        return _decimal_text(self.quantity_scaled, QUANTITY_DIGITS)

    @property
    def unit_amount(self) -> str:
        """The exact unit amount in minor units as a decimal string ("0.00025")."""
        return decimals.format_nanos(self.unit_amount_nanos)

    @property
    def unit_amount_cents(self) -> int:
        """The unit amount rounded half-up to whole minor units, for clients before unit_amount."""
        return div_round_half_up(self.unit_amount_nanos, SCALE)


def _decimal_text(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    return f"{whole}.{fraction:0{digits}d}".rstrip("0") if fraction else str(whole)


def line(
    kind: LineKind, charge_id: str, quantity_scaled: int, unit_amount_nanos: int, tier_index: int | None = None
) -> Line:
    """A line whose amount is quantity x unit amount, rounded half-up once."""
    amount = div_round_half_up(quantity_scaled * unit_amount_nanos, QUANTITY_SCALE * SCALE)
    return Line(kind, charge_id, quantity_scaled, unit_amount_nanos, amount, tier_index)


def fee_line(monthly_fee_cents: int, share: Share) -> Line:
    """The segment's share of the fee, quantity 1, half-up at the line (as invoicing does)."""
    return line(LineKind.FEE, "", QUANTITY_SCALE, share.prorate(monthly_fee_cents) * SCALE)


@dataclasses.dataclass(frozen=True)
class ChargeRating:
    charge: Charge
    quantity: int  # nanos: the aggregate rated
    included: int  # whole units: this segment's share of `included`
    billable: int  # nanos beyond the included units, never below 0
    lines: tuple[Line, ...]  # the lines of a cent or more

    @property
    def total_cents(self) -> int:
        return sum(item.amount_cents for item in self.lines)


def rate_charge(charge: Charge, quantity: int, share: Share) -> ChargeRating:
    """One charge on one segment: `quantity` is the meter's aggregate in nanos (filter applied)."""
    included = share.prorate(charge.included)
    billable = max(0, quantity - included * SCALE)
    lines = tuple(item for item in _usage_lines(charge, billable) if item.amount_cents)
    return ChargeRating(charge, quantity, included, billable, lines)


def _usage_lines(charge: Charge, billable: int) -> list[Line]:
    if charge.model is Model.PER_UNIT:
        return [line(LineKind.USAGE, charge.id, billable * PER_NANO // charge.unit_size, charge.unit_price)]
    if charge.model is Model.PACKAGE:
        packages = -(-billable // (charge.package_size * SCALE))  # ceil: a package begun is a package
        return [line(LineKind.USAGE, charge.id, packages * QUANTITY_SCALE, charge.unit_price)]
    if charge.model is Model.GRADUATED:
        return _graduated(charge, billable)
    return _volume(charge, billable)


def _graduated(charge: Charge, billable: int) -> list[Line]:
    """Each tier reached (billable above its lower bound) prices its own slice."""
    lines: list[Line] = []
    lower = 0
    for index, tier in enumerate(charge.tiers):
        if billable <= lower:
            break
        upper = billable if tier.up_to is None else min(billable, tier.up_to)
        lines += _tier_lines(charge, index, upper - lower)
        lower = upper
    return lines


def _volume(charge: Charge, billable: int) -> list[Line]:
    """The tier holding billable (its up_to included) prices all of it; 0 reaches no tier."""
    if billable <= 0:
        return []
    for index, tier in enumerate(charge.tiers):
        if tier.up_to is None or billable <= tier.up_to:
            return _tier_lines(charge, index, billable)
    raise ValueError(f"charge {charge.id!r}: its last tier must be unbounded")


def _tier_lines(charge: Charge, index: int, nanos: int) -> list[Line]:
    tier = charge.tiers[index]
    return [
        line(LineKind.USAGE, charge.id, nanos * PER_NANO, tier.unit_price, index),
        line(LineKind.FLAT, charge.id, QUANTITY_SCALE, tier.flat_cents * SCALE, index),
    ]


@dataclasses.dataclass(frozen=True)
class SegmentRating:
    fee: Line
    charges: tuple[ChargeRating, ...]

    @property
    def lines(self) -> tuple[Line, ...]:
        """The fee line, then each charge's lines in the plan's order."""
        return (self.fee, *(item for rated in self.charges for item in rated.lines))

    @property
    def total_cents(self) -> int:
        return sum(item.amount_cents for item in self.lines)


def rate_segment(plan: PlanPrices, share: Share, quantities: Mapping[str, int]) -> SegmentRating:
    """A segment on its plan version: the fee line and every charge rated on its aggregate
    (`quantities` by charge id, in nanos; a charge missing from it used nothing)."""
    return SegmentRating(
        fee_line(plan.monthly_fee_cents, share),
        tuple(rate_charge(charge, quantities.get(charge.id, 0), share) for charge in plan.charges),
    )


# --- the seed plans -------------------------------------------------------------------------


def seed_charge(included_requests: int, overage_per_1k_cents: int, *, hard_limit: bool = False) -> Charge:
    """A catalogue plan's one price shape as a charge: PER_UNIT on `requests`, per 1,000."""
    return Charge(
        id=REQUESTS_METER,
        meter_id=REQUESTS_METER,
        model=Model.PER_UNIT,
        included=included_requests,
        unit_price=overage_per_1k_cents * SCALE,
        unit_size=SEED_UNIT_SIZE,
        hard_limit=hard_limit,
    )


def legacy_terms(charges: Sequence[Charge]) -> tuple[int, int]:
    """(included_requests, overage_per_1k_cents) for older clients: from the first PER_UNIT charge
    on `requests` per 1,000 (its price rounded half-up to cents), otherwise (0, 0)."""
    for charge in charges:
        if charge.model is Model.PER_UNIT and charge.meter_id == REQUESTS_METER and charge.unit_size == SEED_UNIT_SIZE:
            return charge.included, div_round_half_up(charge.unit_price, SCALE)
    return 0, 0


# --- validation ------------------------------------------------------------------------------

_CHARGE_FIELDS = frozenset(
    {
        "id",
        "meter_id",
        "display_name",
        "filter",
        "included",
        "model",
        "unit_price",
        "unit_size",
        "package_size",
        "tiers",
        "hard_limit",
    }
)
_TIER_FIELDS = frozenset({"up_to", "unit_price", "flat_cents"})
# Which optional fields each model reads; the others must be absent (None or missing).
_USES = {
    Model.PER_UNIT: {"unit_price", "unit_size"},
    Model.PACKAGE: {"unit_price", "package_size"},
    Model.GRADUATED: {"tiers"},
    Model.VOLUME: {"tiers"},
}
_MODEL_FIELDS = ("unit_price", "unit_size", "package_size", "tiers")


def _invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field} {problem}", field=field)


def validate_charges(
    charges: Sequence[Mapping[str, Any]], meters: Mapping[str, Meter], usable: Collection[str]
) -> tuple[Charge, ...]:
    """A plan's charges as an operator sends them (field names of the Charge message; an absent
    optional field is missing or None), checked as a whole. `meters` are the meter definitions by
    id, archived ones included; `usable` the ids a new plan may price (not archived). Fields are
    checked in the message's order and the first fault is a 400 naming its path
    (`charges[1].tiers[0].up_to`). Prices are decimal strings (or whole ints) in minor units."""
    if len(charges) > MAX_CHARGES:
        raise _invalid("charges", f"holds at most {MAX_CHARGES} charges")
    seen: set[str] = set()
    out = []
    for index, raw in enumerate(charges):
        charge = _charge(f"charges[{index}]", raw, meters, usable)
        if charge.id in seen:
            raise _invalid(f"charges[{index}].id", f"{charge.id!r} is the id of an earlier charge")
        seen.add(charge.id)
        out.append(charge)
    return tuple(out)


def _charge(path: str, raw: Mapping[str, Any], meters: Mapping[str, Meter], usable: Collection[str]) -> Charge:
    unknown = sorted(set(raw) - _CHARGE_FIELDS)
    if unknown:
        raise _invalid(path, f"has no field {str(unknown[0])[:70]!r}")
    charge_id = raw.get("id")
    if not isinstance(charge_id, str) or not CHARGE_ID.fullmatch(charge_id):
        raise _invalid(f"{path}.id", "must match [a-z0-9_-]{1,64}")
    meter_id = raw.get("meter_id")
    if not isinstance(meter_id, str) or meter_id not in meters:
        raise _invalid(f"{path}.meter_id", "names no meter")
    if meter_id not in usable:
        raise _invalid(f"{path}.meter_id", f"{meter_id!r} is archived")
    display_name = _optional(raw, "display_name", "")
    if not isinstance(display_name, str) or len(display_name) > MAX_NAME:
        raise _invalid(f"{path}.display_name", f"must be a string of at most {MAX_NAME} characters")
    filter_ = _filter(f"{path}.filter", _optional(raw, "filter", {}), meters[meter_id])
    included = _whole(f"{path}.included", _optional(raw, "included", 0), minimum=0)
    model_name = raw.get("model")
    if not isinstance(model_name, str) or model_name not in Model.__members__:
        raise _invalid(f"{path}.model", f"must be one of {', '.join(Model)}")
    model = Model(model_name)
    for name in _MODEL_FIELDS:
        if name not in _USES[model] and raw.get(name) is not None:
            raise _invalid(f"{path}.{name}", f"does not apply to {model}")
    unit_price, unit_size, package_size = 0, 1, 1
    tiers: tuple[PriceTier, ...] = ()
    if model in (Model.PER_UNIT, Model.PACKAGE):
        unit_price = _price(f"{path}.unit_price", raw.get("unit_price"))
    if model is Model.PER_UNIT:
        unit_size = _optional(raw, "unit_size", 1)
        if isinstance(unit_size, bool) or not isinstance(unit_size, int) or unit_size not in UNIT_SIZES:
            raise _invalid(f"{path}.unit_size", "must be a power of ten from 1 to 1000000000")
    if model is Model.PACKAGE:
        package_size = _whole(f"{path}.package_size", raw.get("package_size"), minimum=1)
    if model in (Model.GRADUATED, Model.VOLUME):
        tiers = _tiers(f"{path}.tiers", raw.get("tiers"))
    hard_limit = _optional(raw, "hard_limit", False)
    if not isinstance(hard_limit, bool):
        raise _invalid(f"{path}.hard_limit", "must be true or false")
    return Charge(
        charge_id,
        meter_id,
        model,
        display_name,
        filter_,
        included,
        unit_price,
        unit_size,
        package_size,
        tiers,
        hard_limit,
    )


def _optional(raw: Mapping[str, Any], name: str, default: Any) -> Any:
    value = raw.get(name)
    return default if value is None else value


def _filter(path: str, raw: Any, meter: Meter) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        raise _invalid(path, "must be an object of property: value")
    for key, value in raw.items():
        if key not in meter.group_by:
            groups = ", ".join(meter.group_by) or "nothing"
            raise _invalid(path, f"key {str(key)[:70]!r} is not among meter {meter.id!r}'s group_by ({groups})")
        if not isinstance(value, str) or len(value) > MAX_PROPERTY_TEXT:
            raise _invalid(f"{path}.{key}", f"must be a string of at most {MAX_PROPERTY_TEXT} characters")
    return tuple(sorted(raw.items()))


def _whole(path: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < MAX_WHOLE:
        raise _invalid(path, f"must be a whole number from {minimum} to {MAX_WHOLE - 1}")
    return value


def _decimal(path: str, value: Any) -> int:
    """A decimal string or a whole int, as nanos (no floats: they are rarely the decimal meant)."""
    if isinstance(value, str):
        try:
            return decimals.parse(value)
        except decimals.NotADecimal as error:
            raise _invalid(path, f"is not an exact decimal: {error}") from None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < MAX_WHOLE:
        return value * SCALE
    raise _invalid(path, "must be a decimal string")


def _price(path: str, value: Any) -> int:
    nanos = _decimal(path, value)
    if nanos < 0:
        raise _invalid(path, "must not be negative")
    return nanos


def _tiers(path: str, raw: Any) -> tuple[PriceTier, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not 1 <= len(raw) <= MAX_TIERS:
        raise _invalid(path, f"must list 1 to {MAX_TIERS} tiers")
    tiers = []
    lower = 0
    for index, tier in enumerate(raw):
        here = f"{path}[{index}]"
        if not isinstance(tier, Mapping):
            raise _invalid(here, "must be an object")
        unknown = sorted(set(tier) - _TIER_FIELDS)
        if unknown:
            raise _invalid(here, f"has no field {str(unknown[0])[:70]!r}")
        last = index == len(raw) - 1
        up_to = tier.get("up_to")
        if up_to is None:
            if not last:
                raise _invalid(f"{here}.up_to", "is required: only the last tier is unbounded")
        elif last:
            raise _invalid(f"{here}.up_to", "must be absent: the last tier is unbounded")
        else:
            up_to = _decimal(f"{here}.up_to", up_to)
            if up_to <= lower:
                raise _invalid(f"{here}.up_to", f"must be above {decimals.format_nanos(lower)}: tiers ascend")
            lower = up_to
        unit_price = _price(f"{here}.unit_price", tier.get("unit_price"))
        flat_cents = _whole(f"{here}.flat_cents", _optional(tier, "flat_cents", 0), minimum=0)
        tiers.append(PriceTier(up_to, unit_price, flat_cents))
    return tuple(tiers)

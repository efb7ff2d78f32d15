"""Exact decimals as integers of billionths ("nanos"): meter values and, later, unit prices are
decimal strings with at most 9 digits after the point, and every sum, maximum and comparison of
them must be exact. An int of nanos is exact, fast to add and compare, and has no context (no
precision or rounding mode to get wrong), which decimal.Decimal would bring along."""

from __future__ import annotations

import math
import re

SCALE = 10**9
DIGITS = 9
# |v| < 10^15: a value, a sum of a period's values bounded elsewhere, and a price times a quantity
# stay far inside what the counters' columns hold.
LIMIT = 10**15 * SCALE
_DECIMAL = re.compile(r"^([+-]?)(\d+)(?:\.(\d+))?$")


class NotADecimal(ValueError):
    """The text or number is not an exact decimal within the limits; the message says why."""


def parse(text: str) -> int:
    """A decimal string ("12.5", "-3", "0.000000001") as nanos. No exponent, no spaces, no
    thousands separators; trailing zeros past the 9th digit are allowed ("1.5000000000")."""
    match = _DECIMAL.match(text)
    if match is None:
        raise NotADecimal(f"{text[:40]!r} is not a decimal number")
    sign, whole, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    if len(fraction) > DIGITS:
        raise NotADecimal(f"{text[:40]!r} has more than {DIGITS} digits after the point")
    nanos = int(whole) * SCALE + int(fraction.ljust(DIGITS, "0"))
    return _bounded(-nanos if sign == "-" else nanos, text)


def from_number(number: int | float) -> int:
    """A JSON number as nanos: an int exactly, a float as the shortest decimal that round-trips
    its double (repr), so 0.1 is 0.1 and not 0.1000000000000000055511151231257827."""
    if isinstance(number, bool):
        raise NotADecimal("a boolean is not a number")
    if isinstance(number, int):
        return _bounded(number * SCALE, str(number))
    if not math.isfinite(number):
        raise NotADecimal(f"{number!r} is not a finite number")
    text = repr(number)
    if "e" in text:  # repr's exponent form, always a lower-case e: 1e-07, -1.5e+16
        mantissa, exponent = text.split("e")
        return _shifted(mantissa, int(exponent), text)
    return parse(text)


def _shifted(mantissa: str, exponent: int, original: str) -> int:
    """repr's mantissa x 10^exponent as nanos, exactly. The mantissa is the shortest that round-trips:
    one digit 1-9, then maybe a point and a fraction without trailing zeros ("-1.5"), so its digits
    never end in 0, and a negative power of ten left after the 9 digits of nanos always means
    digits past the 9th."""
    whole, _, fraction = mantissa.removeprefix("-").partition(".")
    power = exponent - len(fraction) + DIGITS
    if power < 0:
        raise NotADecimal(f"{original!r} has more than {DIGITS} digits after the point")
    nanos = int(whole + fraction) * 10**power
    return _bounded(-nanos if mantissa.startswith("-") else nanos, original)


def _bounded(nanos: int, text: str) -> int:
    if abs(nanos) >= LIMIT:
        raise NotADecimal(f"{text[:40]!r} is too large: |value| must be below 10^15")
    return nanos


def format_nanos(nanos: int) -> str:
    """Nanos as the shortest exact decimal string: 12_500_000_000 -> "12.5", -1 -> "-0.000000001"."""
    sign = "-" if nanos < 0 else ""
    whole, fraction = divmod(abs(nanos), SCALE)
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:09d}".rstrip("0")

"""Integer minor units and the one rounding rule of docs/api.md: half-up, once, at the line-item amount;
and money as a reader sees it (the PDF, the e-mails and the portal all format it here, so they
agree to the digit).

Every currency shown has two minor digits (cents), as the rest of the service assumes. A unit
price is an exact decimal string of minor units ("0.025" cents per token) and is shown exactly in
major units ("$0.00025"): rounding it to the cent would show a price that does not multiply out
to the line's amount.
"""

from __future__ import annotations

import re

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "EUR ", "GBP": "GBP "}
MINOR_DIGITS = 2
_DECIMAL = re.compile(r"(-?)(\d+)(?:\.(\d+))?")


def div_round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, exactly, for non-negative integers."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("div_round_half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def _symbol(currency: str) -> str:
    return CURRENCY_SYMBOLS.get(currency, currency + " ")


def money(cents: int, currency: str) -> str:
    """1234567 USD -> '$12,345.67' (never through floats)."""
    sign = "-" if cents < 0 else ""
    whole, fraction = divmod(abs(cents), 10**MINOR_DIGITS)
    return f"{sign}{_symbol(currency)}{whole:,}.{fraction:0{MINOR_DIGITS}d}"


def _parts(text: str) -> tuple[str, str, str]:
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a decimal string")
    sign, whole, fraction = match.groups()
    return sign, whole, fraction or ""


def unit_money(unit_amount: str, currency: str) -> str:
    """An exact unit amount in minor units as major units, every digit kept and at least the
    cents shown: '0.025' USD -> '$0.00025', '50' -> '$0.50', '250000.5' -> '$2,500.005'."""
    sign, whole, fraction = _parts(unit_amount)
    digits = len(fraction) + MINOR_DIGITS
    major, rest = divmod(int(whole + fraction), 10**digits)
    shown = f"{rest:0{digits}d}".rstrip("0").ljust(MINOR_DIGITS, "0")
    return f"{sign}{_symbol(currency)}{major:,}.{shown}"


def quantity(text: str) -> str:
    """An exact decimal quantity with thousands separators, its fraction untouched:
    '2500000.25' -> '2,500,000.25'."""
    sign, whole, fraction = _parts(text)
    return f"{sign}{int(whole):,}" + (f".{fraction}" if fraction else "")


def line_figures(quantity_text: str, unit: str, unit_amount: str, currency: str) -> str:
    """How a line's amount comes about, for a reader: '2,500.5 x $0.02 per 1,000 units'."""
    return f"{quantity(quantity_text)} \N{MULTIPLICATION SIGN} {unit_money(unit_amount, currency)} per {unit}"

"""Exact money: every price, quantity, balance and fee inside VeloZ is an integer in units of 1e-8.

Binance writes every price and quantity as a decimal string with at most 8 fractional digits, and every spot balance
has 8 decimals, so one fixed scale represents all of them exactly (NautilusTrader does the same with a 1e-9 raw
int64). An instrument's tick and lot are then integers in the same unit, and "on tick" is ``price % tick == 0``.

Floats never enter: decimal strings are parsed digit by digit and formatted back without rounding.

>>> parse_decimal("61837.63")
6183763000000
>>> format_decimal(6183763000000)
'61837.63'
"""

from __future__ import annotations

import re
from decimal import Decimal

from ._exceptions import InvalidInput, quoted

__all__ = [
    "DECIMALS",
    "SCALE",
    "as_decimal",
    "float_text",
    "format_decimal",
    "parse_decimal",
    "parse_rate",
    "parse_formatted",
]

DECIMALS = 8
SCALE = 10**DECIMALS
# Larger than any sane price, quantity or balance (1e10 whole units), and small enough that every value fits the
# int64 that the JSON codec (orjson) and the numpy hot paths hold: 1e18 < 2**63 (1e12 whole units would be 1e20).
MAX_ABS = 10**10 * SCALE

_DECIMAL = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?$")
_FORMATTED = re.compile(r"(-?)([0-9]{1,30})(?:\.([0-9]{1,8}))?")


def parse_decimal(
    text: str | int, what: str = "value", *, allow_negative: bool = False, allow_zero: bool = True
) -> int:
    """Parse a decimal string into 1e-8 units, exactly; reject anything that would need rounding.

    Raises :class:`InvalidInput` naming ``what`` for NaN, infinities, exponents, more than 8 decimals, a negative
    number (unless allowed), zero (unless allowed) and absurdly large values.
    """
    if isinstance(text, bool):
        raise InvalidInput(f"{what}: expected a decimal number, got {text!r}")
    if isinstance(text, int):
        if abs(text) > MAX_ABS // SCALE:  # before str(): Python will not write an int of more than 4,300 digits
            raise InvalidInput(f"{what}: {quoted(text)} is too large (limit {MAX_ABS // SCALE})")
        raw = str(text)
    elif isinstance(text, str):
        raw = text.strip()
    else:
        raise InvalidInput(f"{what}: expected a decimal string, got {type(text).__name__} {quoted(text)}")
    match = _DECIMAL.match(raw)
    if match is None or (not match.group(2) and not match.group(3)):
        raise InvalidInput(f"{what}: {quoted(raw)} is not a decimal number")
    sign, whole, frac = match.group(1), (match.group(2) or "0").lstrip("0") or "0", match.group(3) or ""
    frac = frac.rstrip("0")
    if len(frac) > DECIMALS:
        raise InvalidInput(f"{what}: {quoted(raw)} has more than {DECIMALS} decimal places")
    if len(whole) > 24:
        raise InvalidInput(f"{what}: {quoted(raw)} is too large")
    value = int(whole) * SCALE + (int(frac.ljust(DECIMALS, "0")) if frac else 0)
    if sign == "-":
        value = -value
    if abs(value) > MAX_ABS:
        raise InvalidInput(f"{what}: {quoted(raw)} is too large (limit {MAX_ABS // SCALE})")
    if value < 0 and not allow_negative:
        raise InvalidInput(f"{what}: {quoted(raw)} must not be negative")
    if value == 0 and not allow_zero:
        raise InvalidInput(f"{what}: must be greater than zero, got {quoted(raw)}")
    return value


def float_text(value: float, what: str) -> str:
    """A float someone gave for an exact amount, as decimal text: its shortest repr's digits written out (1e-05 ->
    "0.00001", never rounded), so the decimal checks judge the value, not the exponent notation; nan and
    infinities are :class:`InvalidInput` naming ``what``. A float subclass (numpy's ``float64``, whose repr is
    ``np.float64(0.5)``) is judged by its Python float value."""
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{what}: {value!r} is not a number")
    return format(Decimal(repr(value)), "f")


def format_decimal(value: int) -> str:
    """Format 1e-8 units as the shortest exact decimal string ("61837.63", "0.00001", "-3")."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), SCALE)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(DECIMALS, '0').rstrip('0')}"


def as_decimal(value: int) -> Decimal:
    """1e-8 units as an exact :class:`~decimal.Decimal`: how reports hand money to people and to JSON.

    >>> as_decimal(3761272962)
    Decimal('37.61272962')
    """
    return Decimal(format_decimal(value))


def parse_formatted(text: str) -> int:
    """The 1e-8 units of a figure the engine wrote with :func:`format_decimal`, exactly: its inverse.

    Unlike :func:`parse_decimal` (what a person may type) it has no size limit and takes negatives: an engine figure
    may lawfully pass both (a fill that takes a balance above 1e10, a fee in an asset never deposited). Anything
    :func:`format_decimal` does not write is :class:`InvalidInput`.

    >>> parse_formatted("10000029982.56742")
    1000002998256742000
    """
    match = _FORMATTED.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"{quoted(text)} is not a decimal figure the engine writes")
    sign, whole, frac = match.groups()
    value = int(whole) * SCALE + (int(frac.ljust(DECIMALS, "0")) if frac else 0)
    return -value if sign else value


def parse_rate(text: str | float | int, what: str = "rate") -> int:
    """Parse a non-negative fraction such as a fee rate ("0.001") into 1e-8 units (0.001 -> 100000).

    Floats are accepted only when their shortest repr is an exact decimal with at most 8 places (0.001 is, 1/3 is not).
    """
    if isinstance(text, float):
        if text != text or text in (float("inf"), float("-inf")):
            raise InvalidInput(f"{what}: {text!r} is not a number")
        text = repr(text)
        if "e" in text or "E" in text:  # 1.2345e-05: the same digits written out, never rounded (parse_decimal
            text = format(Decimal(text), "f")  # then refuses more than 8 places, as for any string)
    return parse_decimal(text, what)

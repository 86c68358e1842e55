"""Exact money: decimal strings <-> integer 1e-8 units, with no rounding anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veloz_actors import InvalidInput
from veloz_actors.fixed import MAX_ABS, SCALE, format_decimal, parse_decimal, parse_formatted, parse_rate


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("61837.63", 6_183_763_000_000),
        ("0.00000001", 1),
        ("1", SCALE),
        ("1.", SCALE),
        (".5", 50_000_000),
        ("+2.50", 250_000_000),
        (" 3 ", 3 * SCALE),
        ("0.100000000000", 10_000_000),  # trailing zeros beyond 8 places are not extra precision
        (7, 7 * SCALE),
    ],
)
def test_parse_decimal_is_exact(text: str | int, units: int) -> None:
    assert parse_decimal(text) == units


@pytest.mark.parametrize(
    "text",
    ["nan", "NaN", "inf", "-inf", "Infinity", "1e3", "1E-2", "", ".", "-", "1.2.3", "0x10", "1,5", "١٢", "12 3", "abc"],
)
def test_parse_decimal_rejects_what_is_not_a_plain_decimal(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a decimal number"):
        parse_decimal(text, "price")


def test_parse_decimal_rejects_more_than_eight_decimals() -> None:
    with pytest.raises(InvalidInput, match="more than 8 decimal places"):
        parse_decimal("0.000000001")


def test_parse_decimal_rejects_negative_unless_allowed() -> None:
    with pytest.raises(InvalidInput, match="must not be negative"):
        parse_decimal("-1")
    assert parse_decimal("-1", allow_negative=True) == -SCALE


def test_parse_decimal_rejects_zero_when_asked() -> None:
    with pytest.raises(InvalidInput, match="greater than zero"):
        parse_decimal("0.0", "quantity", allow_zero=False)


@pytest.mark.parametrize("text", ["1000000000001", "1" + "0" * 30, "9" * 25 + ".5"])
def test_parse_decimal_rejects_huge_values(text: str) -> None:
    with pytest.raises(InvalidInput, match="too large"):
        parse_decimal(text)


def test_parse_decimal_accepts_the_limit_itself() -> None:
    assert parse_decimal(format_decimal(MAX_ABS)) == MAX_ABS


@pytest.mark.parametrize("value", [True, 1.5, None, b"1"])
def test_parse_decimal_rejects_non_string_types(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_decimal(value)  # type: ignore[arg-type]


def test_parse_decimal_names_the_field_in_its_error() -> None:
    with pytest.raises(InvalidInput, match="^quantity: "):
        parse_decimal("x", "quantity")


@pytest.mark.parametrize(
    ("units", "text"), [(0, "0"), (1, "0.00000001"), (-150_000_000, "-1.5"), (6_183_763_000_000, "61837.63")]
)
def test_format_decimal_is_shortest_exact(units: int, text: str) -> None:
    assert format_decimal(units) == text


@settings(max_examples=300)
@given(st.integers(min_value=-MAX_ABS, max_value=MAX_ABS))
def test_format_then_parse_round_trips(units: int) -> None:
    assert parse_decimal(format_decimal(units), allow_negative=True) == units


@settings(max_examples=300)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_the_engines_figures_read_back_exactly_beyond_the_typing_limit(units: int) -> None:
    """parse_formatted is format_decimal's inverse on every int64: no 1e10 cap, negatives allowed."""
    assert parse_formatted(format_decimal(units)) == units


@pytest.mark.parametrize("text", ["", "1e5", "nan", "+1", "1.", ".5", "1.000000001", " 1", "0x10", "1" * 31])
def test_parse_formatted_refuses_what_format_decimal_never_writes(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_formatted(text)


@given(st.integers(min_value=0, max_value=10**10 - 1), st.text(alphabet="0123456789", min_size=0, max_size=8))
def test_parse_then_format_gives_the_canonical_text(whole: int, frac: str) -> None:
    text = f"{whole}.{frac}" if frac else str(whole)
    canonical = text.rstrip("0").rstrip(".") if "." in text else text
    assert format_decimal(parse_decimal(text)) == canonical


@pytest.mark.parametrize(
    ("rate", "units"),
    [("0.001", 100_000), (0.001, 100_000), (0.00075, 75_000), (0, 0), (1e-8, 1), (2.5e-05, 2_500), (1.2e-07, 12)],
)
def test_parse_rate_accepts_exact_rates(rate: str | float, units: int) -> None:
    assert parse_rate(rate) == units


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 1 / 3, -0.001, 1.2345e-05, 1.5e-08])
def test_parse_rate_rejects_inexact_or_negative_rates(rate: float) -> None:
    with pytest.raises(InvalidInput):
        parse_rate(rate)


def test_largest_accepted_value_fits_the_int64_codec() -> None:
    """Anything parse_decimal accepts must be journalable: orjson encodes int64 only (1e12 whole units did not fit)."""
    from veloz_actors.messages import Tick, decode, encode

    largest = parse_decimal("9" * 10)  # the biggest whole number of the allowed size
    assert MAX_ABS < 2**63
    assert decode(encode(Tick(ts=largest))) == Tick(ts=largest)
    with pytest.raises(InvalidInput, match="too large"):
        parse_decimal("999999999999")

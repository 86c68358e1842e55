"""The built-in bar strategies' parameter rules: one clear error naming the strategy, the parameter and the bound."""

from __future__ import annotations

import pytest

from veloz_actors import InvalidInput
from veloz_actors.strategies.params import MAX_WINDOW, validate_params


@pytest.mark.parametrize(
    ("strategy", "params", "message"),
    [
        ("sma_cross", {"fast": 30, "slow": 30}, "fast .30. must be smaller than slow"),
        ("sma_cross", {"fast": 0, "slow": 30}, "fast must be >= 1"),
        ("sma_cross", {"fast": 5.5, "slow": 30}, "fast must be an integer"),
        ("sma_cross", {"fast": 5, "slow": 30, "signal": 9}, "unknown parameter.*signal"),
        ("sma_cross", {"fast": 5}, "missing parameter.*slow"),
        ("rsi_reversion", {"period": -3, "lower": 30, "upper": 70}, "period must be >= 1"),
        ("rsi_reversion", {"period": 14, "lower": 70, "upper": 30}, "lower .70. must be below upper"),
        ("rsi_reversion", {"period": 14, "lower": 30, "upper": 101}, "upper must be within 0..100"),
        ("rsi_reversion", {"period": True, "lower": 30, "upper": 70}, "period must be an integer"),
        ("macd", {"fast": 1}, "unknown strategy 'macd'"),
        # windows are bounded before anything is allocated (before: 8 GB at 10**9, an OverflowError at 10**29)
        ("sma_cross", {"fast": 5, "slow": 10**9}, r"slow must be at most 1,000,000 \(bars; .*got 1000000000$"),
        ("sma_cross", {"fast": 5, "slow": 10**29}, "slow must be at most 1,000,000 .*got 1" + "0" * 29 + "$"),
        (
            "sma_cross",
            {"fast": 10**5000, "slow": 3},
            "fast must be at most 1,000,000 .*got an integer of about 5,000 digits",
        ),
        ("rsi_reversion", {"period": 1_000_001, "lower": 30, "upper": 70}, "period must be at most 1,000,000"),
        ("rsi_reversion", {"period": 14, "lower": 10**400, "upper": 70}, "lower must be within 0..100, got an int"),
    ],
)
def test_invalid_parameters_are_rejected_with_a_clear_error(strategy: str, params: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_params(strategy, params)


def test_the_longest_window_is_a_million_bars() -> None:
    assert MAX_WINDOW == 1_000_000
    assert validate_params("sma_cross", {"fast": 1, "slow": MAX_WINDOW}) == {"fast": 1, "slow": MAX_WINDOW}
    assert validate_params("rsi_reversion", {"period": MAX_WINDOW, "lower": 0, "upper": 100})["period"] == MAX_WINDOW


def test_valid_parameters_come_back_normalised() -> None:
    assert validate_params("sma_cross", {"fast": 10, "slow": 30}) == {"fast": 10, "slow": 30}
    assert validate_params("rsi_reversion", {"period": 14, "lower": 30, "upper": 70.5}) == {
        "period": 14,
        "lower": 30,
        "upper": 70.5,
    }

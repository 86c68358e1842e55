"""The built-in bar strategies' parameter rules: one clear error naming the strategy, the parameter and the bound."""

from __future__ import annotations

import pytest

from veloz_actors import InvalidInput
from veloz_actors.strategies.params import validate_params


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
    ],
)
def test_invalid_parameters_are_rejected_with_a_clear_error(strategy: str, params: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_params(strategy, params)


def test_valid_parameters_come_back_normalised() -> None:
    assert validate_params("sma_cross", {"fast": 10, "slow": 30}) == {"fast": 10, "slow": 30}
    assert validate_params("rsi_reversion", {"period": 14, "lower": 30, "upper": 70.5}) == {
        "period": 14,
        "lower": 30,
        "upper": 70.5,
    }

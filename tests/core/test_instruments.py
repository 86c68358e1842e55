"""Instrument filters with Binance's real BTCUSDT/ETHUSDT values, as configured in configs/engine.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from veloz_actors import ConfigError
from veloz_actors.config import load_engine_config
from veloz_actors.core.instruments import Instrument, ceil_div, exact_qty_step
from veloz_actors.messages import RejectReason
from veloz_actors.testing import btcusdt, d, ethusdt

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "engine.yaml"


@pytest.fixture(scope="module")
def configured() -> dict[str, Instrument]:
    return {i.symbol: i for i in load_engine_config(CONFIG).engine_config().instruments}


def test_configured_instruments_carry_binance_filters(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"] == btcusdt()
    assert configured["ETHUSDT"] == ethusdt()


def test_on_tick_price_passes(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_price(d("61837.63")) is None


def test_off_tick_price_is_rejected_not_rounded(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_price(d("61837.635"))[0] is RejectReason.PRICE_NOT_ON_TICK


@pytest.mark.parametrize("price", ["0", "-1"])
def test_non_positive_price_is_invalid(configured: dict[str, Instrument], price: str) -> None:
    assert configured["BTCUSDT"].check_price(d(price))[0] is RejectReason.INVALID_PRICE


def test_price_above_max_price_is_invalid(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_price(d("1000000.01"))[0] is RejectReason.INVALID_PRICE


def test_on_step_quantity_passes(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_qty(d("0.00123")) is None


def test_off_step_quantity_is_rejected(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_qty(d("0.000015"))[0] is RejectReason.QUANTITY_NOT_ON_STEP
    assert configured["ETHUSDT"].check_qty(d("0.00005"))[0] is RejectReason.QUANTITY_NOT_ON_STEP


@pytest.mark.parametrize("qty", ["0", "-0.001"])
def test_non_positive_quantity_is_invalid(configured: dict[str, Instrument], qty: str) -> None:
    assert configured["BTCUSDT"].check_qty(d(qty))[0] is RejectReason.INVALID_QUANTITY


def test_quantity_below_min_qty_is_rejected() -> None:
    inst = btcusdt(min_qty=d("0.001"))
    assert inst.check_qty(d("0.0005"))[0] is RejectReason.QUANTITY_BELOW_MINIMUM


def test_quantity_above_max_qty_is_rejected(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_qty(d("9000.00001"))[0] is RejectReason.MAX_ORDER_QUANTITY


def test_notional_below_minimum_is_rejected(configured: dict[str, Instrument]) -> None:
    # 0.0001 BTC at 60000 is 6 USDT, under Binance's 10 USDT NOTIONAL filter
    assert configured["BTCUSDT"].check_notional(d("60000"), d("0.0001"))[0] is RejectReason.NOTIONAL_BELOW_MINIMUM


def test_notional_exactly_at_minimum_passes(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].check_notional(d("100000"), d("0.0001")) is None


def test_notional_is_exact(configured: dict[str, Instrument]) -> None:
    assert configured["BTCUSDT"].notional(d("61837.63"), d("0.00123")) == d("76.0602849")


def test_instrument_whose_notionals_would_be_inexact_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="notionals would not be exact"):
        btcusdt(price_tick=d("0.00000001"), qty_step=d("0.00000001"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"price_tick": 0},
        {"min_qty": d("10000")},
        {"min_notional": -1},
        {"taker_fee_rate": d("1")},
        {"min_price": d("100"), "max_price": d("1")},
        {"min_price": -1},
    ],
    ids=["zero-tick", "min-above-max", "negative-notional", "fee-100pct", "min-price-above-max", "negative-min-price"],
)
def test_inconsistent_filters_are_config_errors(overrides: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        btcusdt(**overrides)


def test_price_rounding_helpers_stay_on_tick() -> None:
    inst = btcusdt()
    assert inst.round_price_down(d("100.019")) == d("100.01")
    assert inst.round_price_up(d("100.011")) == d("100.02")
    assert inst.round_price_up(d("100.01")) == d("100.01")


@pytest.mark.parametrize(("a", "b", "out"), [(10, 3, 4), (9, 3, 3), (0, 5, 0), (1, 10**8, 1)])
def test_ceil_div_rounds_up_exactly(a: int, b: int, out: int) -> None:
    assert ceil_div(a, b) == out


def test_market_lot_size_binds_market_orders_only() -> None:
    inst = btcusdt(market_min_qty=d("0.001"), market_max_qty=d("112.2110882"))
    assert inst.check_qty(d("0.0001")) is None  # a limit order only needs LOT_SIZE
    assert inst.check_qty(d("0.0001"), market=True)[0] is RejectReason.QUANTITY_BELOW_MINIMUM
    assert inst.check_qty(d("112.21108"), market=True) is None
    reason, text = inst.check_qty(d("112.21109"), market=True)
    assert reason is RejectReason.MAX_ORDER_QUANTITY and "market-order maximum 112.2110882" in text
    assert inst.check_qty(d("112.21109")) is None


def test_zero_market_lot_size_means_the_lot_size_bounds() -> None:
    inst = btcusdt()  # market_min_qty = market_max_qty = 0
    assert inst.check_qty(d("9000"), market=True) is None
    assert inst.check_qty(d("9000.00001"), market=True)[0] is RejectReason.MAX_ORDER_QUANTITY
    assert inst.check_qty(d("0.000001"), market=True)[0] is RejectReason.QUANTITY_NOT_ON_STEP


def test_notional_bounds_apply_to_market_orders_as_flagged() -> None:
    inst = btcusdt(max_notional=d("9000000"), min_notional_market=False, max_notional_market=True)
    assert inst.check_notional(d("100"), d("0.05"))[0] is RejectReason.NOTIONAL_BELOW_MINIMUM
    assert inst.check_notional(d("100"), d("0.05"), market=True) is None  # applyMinToMarket = false
    assert inst.check_notional(d("1000000"), d("9"), market=True) is None  # exactly the maximum
    reason, text = inst.check_notional(d("1000000"), d("9.00001"), market=True)
    assert reason is RejectReason.MAX_ORDER_NOTIONAL and "above the instrument maximum 9000000" in text
    no_max_on_market = btcusdt(max_notional=d("9000000"))
    assert no_max_on_market.check_notional(d("1000000"), d("9.00001"), market=True) is None
    assert no_max_on_market.check_notional(d("1000000"), d("9.00001"))[0] is RejectReason.MAX_ORDER_NOTIONAL


@pytest.mark.parametrize(
    "overrides",
    [{"market_max_qty": -1}, {"market_min_qty": d("2"), "market_max_qty": d("1")}, {"max_notional": d("5")},
     {"base_precision": -1}],
    ids=["negative-market-max", "market-min-above-max", "max-notional-below-min", "negative-precision"],
)  # fmt: skip
def test_inconsistent_market_and_notional_filters_are_config_errors(overrides: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        btcusdt(**overrides)


@pytest.mark.parametrize(
    ("tick", "step", "exact"),
    [
        ("0.01", "0.00001", "0.00001"),  # BTCUSDT: already exact
        ("0.0000001", "0.01", "0.1"),  # the next power of ten
        ("0.00000001", "0.01", "1"),
        ("0.0001", "0.00001", "0.0001"),
        ("0.0005", "0.00001", "0.00002"),  # a multiple of the step, not necessarily a power of ten
        ("1", "0.00000001", "0.00000001"),
    ],
)
def test_exact_qty_step_is_the_smallest_exact_multiple_of_the_step(tick: str, step: str, exact: str) -> None:
    result = exact_qty_step(d(tick), d(step))
    assert result == d(exact)
    assert result % d(step) == 0 and d(tick) * result % 10**8 == 0
    assert all(d(tick) * k * d(step) % 10**8 for k in range(1, result // d(step)))

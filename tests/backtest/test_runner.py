"""The event-driven bar backtest over the core engine: fills at the next open, exact money, determinism."""

from __future__ import annotations

import base64
import gc

import numpy as np
import pytest

from veloz_actors import InvalidInput
from veloz_actors.backtest.metrics import report_metrics, trades_to_records
from veloz_actors.backtest.report import write_outputs
from veloz_actors.backtest.runner import run_bar_backtest, split_symbol
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.bars import BAR_DTYPE, BarSeries
from veloz_actors.data.loaders import load_bars
from veloz_actors.fixed import SCALE, format_decimal
from veloz_actors.messages import OrderType, Side
from veloz_actors.strategies.bar_strategies import SmaCross, make_strategy
from veloz_actors.strategies.base import Strategy


def _bars(closes: list[float], opens: list[float] | None = None) -> BarSeries:
    data = np.zeros(len(closes), dtype=BAR_DTYPE)
    data["open_time"] = np.arange(len(closes)) * 60_000_000_000
    c = np.array([round(x * 100) * 1_000_000 for x in closes], dtype=np.int64)
    o = np.array([round(x * 100) * 1_000_000 for x in (opens or closes)], dtype=np.int64)
    data["open"], data["close"] = o, c
    data["high"], data["low"] = np.maximum(o, c), np.minimum(o, c)
    data["volume"] = SCALE
    return BarSeries("BTCUSDT", 60_000_000_000, data, 1_000_000, "synthetic")


class _BuyOnce(Strategy):
    """Buys with all cash on bar ``at`` and sells on bar ``sell``."""

    def __init__(self, at: int, sell: int | None = None) -> None:
        self.at, self.sell = at, sell
        self.events = []

    def on_bar(self, bar):
        if bar.index == self.at:
            self.ctx.buy_market(bar.symbol, quote_qty=self.ctx.free(self.ctx.quote_asset(bar.symbol)))
        if bar.index == self.sell:
            self.ctx.sell_market(bar.symbol, qty=self.ctx.position(bar.symbol))

    def on_order_event(self, event):
        self.events.append(type(event).__name__)


def test_signal_fills_at_next_bar_open_with_exact_quantity_and_fee():
    bars = _bars([100, 100, 100, 100], opens=[100, 100, 101.37, 99])
    result = run_bar_backtest(bars, _BuyOnce(at=1, sell=2), BacktestSettings())
    buy, sell = trades_to_records(result.trades)
    assert buy["side"] == "BUY" and buy["price"] == "101.37" and buy["ts"] == 120_000
    # floor(10000 / (101.37 * 1.001) / 0.00001) * 0.00001 = 98.54996 (computed with fractions)
    assert buy["qty"] == "98.54996"
    # 0.001 * 101.37 * 98.54996 = 9.9900094452, rounded up to 1e-8
    assert buy["fee"] == "9.99000945"
    assert sell["side"] == "SELL" and sell["price"] == "99" and sell["qty"] == buy["qty"]


def test_signal_on_last_bar_is_dropped():
    result = run_bar_backtest(_bars([100, 101, 102]), _BuyOnce(at=2), BacktestSettings())
    assert len(result.trades) == 0
    assert result.metrics["final_equity"] == 10_000.0


def test_strategy_receives_its_order_events():
    strategy = _BuyOnce(at=0)
    run_bar_backtest(_bars([100, 100, 100]), strategy, BacktestSettings())
    assert strategy.events == ["OrderAccepted", "OrderFilled", "PositionUpdated"]


def test_slippage_moves_the_fill_against_the_trader_on_tick():
    result = run_bar_backtest(
        _bars([100, 100, 100, 100]), _BuyOnce(at=0, sell=1), BacktestSettings(slippage_rate=123_456)
    )
    buy, sell = trades_to_records(result.trades)
    assert buy["price"] == "100.13"  # 100 * 1.00123456 = 100.123456 -> up to 100.13
    assert sell["price"] == "99.87"  # 100 * 0.99876544 -> down to 99.87


def test_too_little_cash_means_no_trade():
    result = run_bar_backtest(_bars([100, 100, 100]), _BuyOnce(at=0), BacktestSettings(initial_cash=10))
    assert len(result.trades) == 0


def test_orders_the_engine_rejects_are_a_warning_not_a_silent_no_trade():
    assert run_bar_backtest(_bars([100, 100, 100]), _BuyOnce(at=0), BacktestSettings()).warnings == []
    bars = _bars([100, 100, 100, 100])
    unknown = BarSeries("btcusdt", bars.interval_ns, bars.data, bars.price_tick, "synthetic")  # orders say BTCUSDT
    result = run_bar_backtest(unknown, _BuyOnce(at=0), BacktestSettings())
    assert len(result.trades) == 0
    (warning,) = result.warnings
    assert "1 strategy orders rejected" in warning and "UNKNOWN_SYMBOL 1" in warning


class _OrdersNothing(Strategy):
    """Places one order of its own quantity on the first bar (a strategy's sizing bug: zero or negative)."""

    def __init__(self, side: Side, **amount: int) -> None:
        self.side, self.amount = side, amount
        self.events: list = []

    def on_bar(self, bar):
        if bar.index == 0:
            self.ctx.place_order(bar.symbol, self.side, **self.amount)

    def on_order_event(self, event):
        self.events.append(event)


@pytest.mark.parametrize(
    ("side", "amount", "detail"),
    [
        (Side.BUY, {"qty": 0}, "quantity 0 must be positive"),
        (Side.BUY, {"qty": -5}, "quantity -0.00000005 must be positive"),
        (Side.SELL, {"qty": 0}, "quantity 0 must be positive"),
        (Side.BUY, {"quote_qty": -100}, "quote_qty must be positive"),
    ],
)
def test_an_order_of_no_quantity_is_rejected_with_a_warning_not_dropped_silently(side, amount, detail):
    """Such an order was skipped without a word: the strategy never heard of it, the result said nothing."""
    strategy = _OrdersNothing(side, **amount)
    result = run_bar_backtest(_bars([100, 100, 100]), strategy, BacktestSettings())
    assert len(result.trades) == 0
    (warning,) = result.warnings
    assert "INVALID_QUANTITY 1" in warning and detail in warning
    assert [type(event).__name__ for event in strategy.events] == ["OrderRejected"]


def test_flat_market_gives_no_float_noise_cross():
    closes = [100.1] * 300
    result = run_bar_backtest(_bars(closes), SmaCross(3, 7), BacktestSettings())
    assert len(result.trades) == 0


def test_same_data_and_config_give_byte_identical_trades_file(shared_data, tmp_path):
    bars = load_bars(shared_data / "ohlcv" / "binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz")
    outputs = []
    for run in ("a", "b"):
        result = run_bar_backtest(bars, make_strategy("sma_cross", {"fast": 12, "slow": 26}), BacktestSettings())
        files = write_outputs(tmp_path / run, bars, result.trades, result.equity, result.metrics, {"strategy": "x"})
        outputs.append((tmp_path / run / "trades.csv").read_bytes())
        assert set(files) == {"trades", "equity", "metrics", "report"}
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") > 100


def test_outputs_hold_one_equity_row_per_bar_and_the_report(shared_data, tmp_path):
    # the report's own checks (self-contained, every fill drawn, dates, indicators): tests/backtest/test_report_html.py
    bars = load_bars(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")
    result = run_bar_backtest(bars, make_strategy("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}))
    write_outputs(tmp_path, bars, result.trades, result.equity, result.metrics, {"strategy": "rsi_reversion"})
    page = (tmp_path / "report.html").read_text()
    assert 'id="price-chart"' in page and "drawdown" in page and "<script src" not in page
    equity_rows = (tmp_path / "equity.csv").read_text().splitlines()
    assert len(equity_rows) == len(bars) + 1


def test_unknown_parameter_and_bad_values_are_rejected():
    with pytest.raises(InvalidInput, match="unknown parameter"):
        make_strategy("sma_cross", {"fast": 3, "slow": 10, "foo": 1})
    with pytest.raises(InvalidInput, match="smaller than slow"):
        make_strategy("sma_cross", {"fast": 10, "slow": 10})
    with pytest.raises(InvalidInput, match="unknown strategy"):
        make_strategy("macd", {})


def test_symbol_split_knows_binance_quotes():
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert split_symbol("ADABTC") == ("ADA", "BTC")


def test_python_api_backtest_matches_the_cli_contract(shared_data):
    import veloz_actors as vz

    data = str(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")
    params = {"period": 14, "lower": 30, "upper": 70}
    event = vz.run_backtest(data=data, strategy="rsi_reversion", params=params)
    kernel = vz.run_backtest({"data": data, "strategy": "rsi_reversion", "params": params}, engine="kernel")
    assert event["trades"] == kernel["trades"] and event["metrics"] == kernel["metrics"]
    assert event["metrics"]["n_trades"] > 10
    with pytest.raises(InvalidInput, match="unknown strategy"):
        vz.run_backtest(data=data, strategy="nope")


def test_the_python_api_given_a_data_file_as_its_config_says_to_give_it_as_data(shared_data):
    """``vz.run_backtest(path_of_candles)`` said "not UTF-8 text (byte 0x8b at offset 1): save it as UTF-8"."""
    import veloz_actors as vz

    data = shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz"
    with pytest.raises(InvalidInput) as refused:
        vz.run_backtest(data, strategy="sma_cross", params={"fast": 3, "slow": 9})
    assert str(refused.value) == f"{data} is a data file, not a backtest config: give it as --data {data}"


def test_the_python_api_result_shows_a_summary_in_a_notebook_and_stays_a_dict(shared_data):
    """Before: the result's repr was every trade (half a megabyte for the README's 5m example, here 38 kB), what a
    notebook cell ending in ``result`` printed."""
    import json

    import veloz_actors as vz

    data = str(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")
    result = vz.run_backtest(data=data, strategy="sma_cross", params={"fast": 10, "slow": 30})
    assert len(result["trades"]) == 383
    text = repr(result)
    assert len(text) < 2_000
    assert text.startswith(
        "BacktestResult(strategy='sma_cross', params={'fast': 10, 'slow': 30}, data='" + data + "', bars=8996, "
        "trades=383, warnings=0, metrics={'final_equity': Decimal("
    )

    class Printer:  # IPython's pretty printer, as Jupyter calls it
        def __init__(self) -> None:
            self.parts: list[str] = []

        def text(self, part: str) -> None:
            self.parts.append(part)

    printer = Printer()
    result._repr_pretty_(printer, False)
    assert printer.parts == [text]
    assert isinstance(result, dict) and dict(result) == result
    assert json.loads(json.dumps(result, default=str))["metrics"]["n_trades"] == 191


@pytest.mark.parametrize("engine", ["event", "kernel"])
def test_a_warm_up_too_long_for_the_data_is_a_warning_not_a_silent_no_trade(shared_data, engine):
    import veloz_actors as vz

    data = str(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")  # 8,996 bars
    run = vz.run_backtest(data=data, strategy="sma_cross", params={"fast": 5, "slow": 8995}, engine=engine)
    assert run["trades"] == []
    assert run["warnings"] == [
        "slow 8995 is too long to trade on the 8,996 bars of the data (a signal needs slow bars before it and one "
        "after it to fill): the run has no trades"
    ]
    params = {"period": 8994, "lower": 99, "upper": 100}  # bars - 2: the longest that could trade
    assert vz.run_backtest(data=data, strategy="rsi_reversion", params=params, engine=engine)["warnings"] == []


@pytest.mark.parametrize("engine", ["event", "kernel"])
def test_buys_whose_cash_cannot_pay_for_one_step_are_a_warning_not_a_silent_no_trade(shared_data, engine):
    """1 USDT cannot buy a whole ETH (qty_step 1, as the default step rule gives a coin priced in 1e-8 ticks, Binance's
    8h mark candles): every BUY was skipped without a word, and the run ended with no trade and no warning (the kernel
    engine said nothing until it counted them too)."""
    import veloz_actors as vz

    data = str(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")
    run = vz.run_backtest(data=data, strategy="sma_cross", params={"fast": 3, "slow": 9}, initial_cash="1",
                          qty_step="1", engine=engine)  # fmt: skip
    assert run["trades"] == [] and run["metrics"]["final_equity"] == 1
    assert run["warnings"] == [
        "633 strategy buys could not pay for one quantity step, not traded: the first had 1 USDT for 1 ETH at 1197.35 "
        "plus the fee; raise the initial cash or give a finer quantity step (--qty-step)"
    ]
    enough = vz.run_backtest(data=data, strategy="sma_cross", params={"fast": 3, "slow": 9}, initial_cash="1",
                             engine=engine)  # fmt: skip
    assert len(enough["trades"]) > 600 and enough["warnings"] == []  # 1 USDT buys 0.0008 ETH: every signal trades


class _RaisesOnBar(Strategy):
    def __init__(self) -> None:
        self.thresholds: tuple[int, int, int] | None = None

    def on_bar(self, bar):
        self.thresholds = gc.get_threshold()
        raise RuntimeError("a strategy bug")


def test_the_run_collects_garbage_less_often_and_leaves_the_caller_s_settings_as_they_were():
    before = gc.get_threshold()
    gc.set_threshold(1_234, 5, 6)  # a notebook's own settings
    try:
        strategy = _RaisesOnBar()
        with pytest.raises(RuntimeError, match="a strategy bug"):
            run_bar_backtest(_bars([100, 100, 100]), strategy, BacktestSettings())
        assert strategy.thresholds == (50_000, 20, 100)  # during the run: the engine's setting (kernel.tune_gc)
        assert gc.get_threshold() == (1_234, 5, 6)  # afterwards, even after an exception: the caller's again
        run_bar_backtest(_bars([100, 100, 100]), _BuyOnce(at=0), BacktestSettings())
        assert gc.get_threshold() == (1_234, 5, 6)
    finally:
        gc.set_threshold(*before)


class _PricedBuy(Strategy):
    def __init__(self, **order: object) -> None:
        self.order = order

    def on_bar(self, bar):
        self.ctx.place_order(bar.symbol, Side.BUY, qty=1_000_000, **self.order)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ({"price": 100 * SCALE}, "the bar backtest fills market orders at the next open"),
        ({"price": 100 * SCALE, "order_type": OrderType.MARKET}, "a market order takes no price"),
    ],
    ids=["price-alone-is-a-limit", "market-with-a-price"],
)
def test_a_priced_order_in_a_bar_backtest_is_an_error_not_a_market_order(order, message):
    """The bar backtest fills market orders only. A price given with no order type (a limit everywhere else) or with
    MARKET was dropped without a word and the order filled at the next open, whatever the price said."""
    with pytest.raises(InvalidInput, match=message):
        run_bar_backtest(_bars([100, 100, 100]), _PricedBuy(**order), BacktestSettings())


class _ScaleInAndOut(Strategy):
    """Buys with half its cash on bar 1 and the rest on bar 2, sells half the position on bar 3 and the rest on 4."""

    def on_start(self, ctx):
        self.ctx = ctx

    def on_bar(self, bar):
        free = self.ctx.free(self.ctx.quote_asset(bar.symbol))
        position = self.ctx.position(bar.symbol)
        if bar.index in (1, 2):
            self.ctx.buy_market(bar.symbol, quote_qty=free // 2 if bar.index == 1 else free)
        elif bar.index == 3:
            self.ctx.sell_market(bar.symbol, qty=position // 2 // 1000 * 1000)  # on the 0.00001 step
        elif bar.index == 4:
            self.ctx.sell_market(bar.symbol, qty=position)


def test_a_strategy_scaling_in_and_out_gets_its_metrics_and_one_round_trip(tmp_path):
    """Partial fills of a position (two BUYs, two SELLs) used to fail the finished run ("trades must alternate"):
    the metrics count one round trip, flat to flat, its PnL the cash it ended with minus the cash it began with."""
    bars = _bars([100, 100, 102, 104, 103, 103, 103])
    result = run_bar_backtest(bars, _ScaleInAndOut(), BacktestSettings())
    assert result.trades["side"].tolist() == [1, 1, -1, -1] and result.trades["fill_index"].tolist() == [2, 3, 4, 5]
    cash_after = int(result.trades["cash_after"][-1])
    assert result.metrics["n_trades"] == 1 and result.metrics["win_rate"] == (
        1.0 if cash_after > 10_000 * SCALE else 0.0
    )
    assert result.metrics["final_equity"] == cash_after / SCALE  # flat at the end: equity is the cash
    write_outputs(tmp_path, bars, result.trades, result.equity, result.metrics, {})
    page = (tmp_path / "report.html").read_text()
    assert "4 fills, 1 round trips" in page
    pnl = format_decimal(cash_after - 10_000 * SCALE)
    assert page.count(f"<td>{pnl}</td>") == 1  # on the last SELL only: the first left the position open


class _BuyAtTheStart(Strategy):
    """Buy and hold, ordered before the first bar: filled at the first bar's open."""

    def on_start(self, ctx):
        ctx.buy_market("BTCUSDT", quote_qty=ctx.free("USDT"))


def test_a_fall_within_the_first_bar_is_a_drawdown_from_the_initial_cash():
    """Bought at the first open (100), every close 50: half the money lost in the first bar. The running peak starts
    at the initial cash, so the drawdown is 50 % (it was 0 %: the peak started at the first close), from the start
    to the end."""
    bars = _bars([50, 50, 50, 50], opens=[100, 50, 50, 50])
    settings = BacktestSettings(fee_rate=0)
    result = run_bar_backtest(bars, _BuyAtTheStart(), settings)
    assert result.trades["fill_index"].tolist() == [0] and result.equity.tolist() == [5_000.0] * 4
    assert result.metrics["total_return"] == -0.5 and result.metrics["max_drawdown"] == 0.5
    report = report_metrics(bars, settings.for_bars(bars), result.trades, result.equity, result.metrics)
    assert (report["max_drawdown_peak"], report["max_drawdown_trough"], report["max_drawdown_recovery"]) == (
        "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", None)  # fmt: skip
    assert report["max_drawdown_duration_seconds"] == 3 * 60  # from the start to the last bar, never recovered


def test_the_first_months_return_starts_from_the_initial_cash(tmp_path):
    """The report's monthly returns: -50 % for January 1970, the month the money halved within its first bar (it
    was 0 %, from the first close)."""
    bars = _bars([50, 50, 50, 50], opens=[100, 50, 50, 50])
    result = run_bar_backtest(bars, _BuyAtTheStart(), BacktestSettings(fee_rate=0))
    write_outputs(tmp_path, bars, result.trades, result.equity, result.metrics, {})
    page = (tmp_path / "report.html").read_text()
    assert '"z":[[-0.5,null,null,null,null,null,null,null,null,null,null,null]]' in page
    drawdown = page[page.index('"name":"drawdown"') :]
    data = drawdown[drawdown.index('"bdata":"') + 9 :]
    y = np.frombuffer(base64.b64decode(data[: data.index('"')].replace("\\u002f", "/")), dtype="<f8")
    assert y.tolist() == [-0.5] * 4  # the drawdown panel agrees (it showed 0 %, from the first close)


def test_a_buy_above_what_the_venue_holds_is_an_error_not_a_silent_no_trade():
    """The venue holds what its 10**10 quote buy at the data's highest price (837,170 BTC at a spike to 11,945):
    45 million USDT at 46 buy more. The order expired unfilled without a word, and the run's trades silently
    differed from the kernel's, which fills it."""
    data = np.zeros(4, dtype=BAR_DTYPE)
    data["open_time"] = np.arange(4) * 60_000_000_000
    data["open"] = data["close"] = data["low"] = 46 * SCALE
    data["high"] = [46 * SCALE, 46 * SCALE, 11_945 * SCALE, 46 * SCALE]
    data["volume"] = SCALE
    bars = BarSeries("BTCUSDT", 60_000_000_000, data, 1_000_000, "synthetic")
    settings = BacktestSettings(initial_cash=45_000_000 * SCALE)
    with pytest.raises(
        InvalidInput, match=r"buying 977283\.58597 at 46 is more than the bar backtest's venue can trade"
    ):
        run_bar_backtest(bars, _BuyOnce(at=0), settings)
    from veloz_actors.backtest import kernel

    prepared = kernel.prepare(bars, "sma_cross", settings)
    assert len(kernel._walk(prepared, np.array([0]), np.zeros(0, dtype=np.int64))[0][0]) == 1  # the kernel buys

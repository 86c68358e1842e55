"""The one equity curve and the one set of statistics of a bar backtest, computed from its trade list.

The vectorised kernel (:mod:`veloz_actors.backtest.kernel`) and the event-driven backtest both build the same
``TRADE_DTYPE`` array and hand it to :func:`equity_and_metrics`, so their statistics agree by construction; only their
trades have to agree by independent implementation.

The semantics (shared with the kernel and the event-driven backtest):

* A trade is filled at the *open* of bar ``fill_index``; the position and cash it leaves are held from that bar on, so
  the equity at bar ``t``'s close uses the state after every fill at an open ``<= t``. Long only, one position at a
  time: trades alternate BUY, SELL, BUY, ... starting with a BUY; a SELL closes the whole position.
* Equity at each bar close, in quote units, computed in float64 from exact integer components (1e-8 units; cash must
  stay below 2**53, i.e. 90 million quote, where every value is exact as a float64)::

      equity[t] = (float(cash[t]) + float(qty[t]) * (float(close[t]) / 1e8)) / 1e8

  where ``cash[t]``/``qty[t]`` are the trade list's ``cash_after``/position after the last fill at a bar ``<= t``
  (``initial_cash``/0 before the first fill). An open position at the end is marked at the last close, not closed.
  A position may exceed 2**53 units (90 million of a base asset, as when 10,000 USDT buys billions of a coin priced
  at 0.00000123), up to ``fixed.MAX_ABS``; ``float(qty)`` then rounds by at most 2**-53 relative, the same order as
  ``close / 1e8``'s own rounding.
* ``final_equity`` = ``equity[-1]`` (quote units); ``total_return`` = ``final_equity / initial - 1`` with
  ``initial = initial_cash / 1e8``.
* ``max_drawdown`` = ``max((peak - equity) / peak)`` with ``peak`` the running maximum of bar-close equity: a positive
  fraction, 0.0 if equity never falls.
* ``n_trades`` = completed round trips (SELL fills). ``win_rate`` = round trips whose PnL net of *both* fees is
  positive (sell proceeds - sell fee - buy cost - buy fee > 0, which is exactly ``cash after the SELL > cash before
  the BUY`` in integers) over completed ones; 0.0 when there is none.
* ``sharpe`` = ``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)`` over the bar-to-bar returns
  ``r[t] = equity[t] / equity[t-1] - 1`` (t >= 1), with ``bars_per_year = 525600 / bar_minutes`` and
  ``bar_minutes = interval_ns / 60e9``; 0.0 when there are fewer than two returns or their standard deviation is 0.

>>> import numpy as np
>>> from veloz_actors.data.bars import BAR_DTYPE, BarSeries
>>> from veloz_actors.backtest.settings import BacktestSettings
>>> data = np.zeros(3, dtype=BAR_DTYPE)
>>> data["open_time"] = [0, 60_000_000_000, 120_000_000_000]
>>> data["open"] = data["close"] = [100 * 10**8, 100 * 10**8, 110 * 10**8]
>>> bars = BarSeries("BTCUSDT", 60_000_000_000, data, 1_000_000)
>>> trades = np.zeros(0, dtype=TRADE_DTYPE)
>>> equity, stats = equity_and_metrics(bars, BacktestSettings(), trades)
>>> equity.tolist(), stats["final_equity"], stats["n_trades"]
([10000.0, 10000.0, 10000.0], 10000.0, 0)
"""

from __future__ import annotations

import math

import numpy as np

from .._exceptions import InvalidInput
from ..data.bars import BarSeries
from ..fixed import MAX_ABS, SCALE, format_decimal
from .settings import BacktestSettings

__all__ = ["METRIC_NAMES", "TRADE_DTYPE", "bars_per_year", "equity_and_metrics", "trades_to_records"]

TRADE_DTYPE = np.dtype(
    [
        ("signal_index", "<i8"),  # bar whose close produced the signal
        ("fill_index", "<i8"),  # bar at whose open the order filled (signal_index + 1)
        ("open_time", "<i8"),  # open time of the fill bar, ns since the epoch
        ("side", "<i8"),  # +1 BUY, -1 SELL
        ("price", "<i8"),  # fill price, 1e-8 quote units
        ("qty", "<i8"),  # filled quantity, 1e-8 base units
        ("fee", "<i8"),  # fee paid, 1e-8 quote units
        ("cash_after", "<i8"),  # cash after the fill, 1e-8 quote units
    ]
)

METRIC_NAMES = ("final_equity", "total_return", "max_drawdown", "n_trades", "win_rate", "sharpe")

_MINUTES_PER_YEAR = 365 * 24 * 60
_FLOAT_EXACT = 2**53


def bars_per_year(interval_ns: int) -> float:
    """Bars in a 365-day year at this bar interval: ``525600 / (interval_ns / 60e9)`` (105120.0 for 5m bars)."""
    if interval_ns <= 0:
        raise InvalidInput(f"bar interval must be positive, got {interval_ns} ns")
    return _MINUTES_PER_YEAR / (interval_ns / 60e9)


def close_scaled(close: np.ndarray) -> np.ndarray:
    """``float64(close) / 1e8``: the per-bar factor of the equity formula (the kernel caches it per series)."""
    return close.astype(np.float64) / 1e8


def equity_and_metrics(
    bars: BarSeries, settings: BacktestSettings, trades: np.ndarray
) -> tuple[np.ndarray, dict[str, float | int]]:
    """Equity at every bar close (float64, quote units) and the metrics dict of a long-only trade list.

    ``trades`` is a ``TRADE_DTYPE`` array in fill order (see the module docstring for every formula). Raises
    :class:`InvalidInput` for a trade list that is not long-only alternating BUY/SELL, whose SELL does not close the
    preceding BUY's quantity, or whose fill bars are not strictly increasing inside the series.
    """
    if trades.dtype != TRADE_DTYPE:
        raise InvalidInput(f"trades must have TRADE_DTYPE, got {trades.dtype}")
    n = len(bars)
    if n == 0:
        raise InvalidInput("cannot compute an equity curve over an empty bar series")
    fill_index = trades["fill_index"]
    side = trades["side"]
    qty = trades["qty"]
    m = len(trades)
    if m:
        expected_side = np.where(np.arange(m) % 2 == 0, 1, -1)
        if not np.array_equal(side, expected_side):
            raise InvalidInput("trades must alternate BUY (+1), SELL (-1), ... starting with a BUY")
        if fill_index[0] < 0 or fill_index[-1] >= n or (m > 1 and np.any(np.diff(fill_index) <= 0)):
            raise InvalidInput(f"fill indices must be strictly increasing within 0..{n - 1}")
        if np.any(qty[1::2] != qty[0 : 2 * (m // 2) : 2]):
            raise InvalidInput("every SELL must close the whole quantity of the BUY before it")
    position = np.where(side > 0, qty, 0)
    return evaluate(
        close_scaled(bars.data["close"]),
        bars_per_year(bars.interval_ns),
        settings.initial_cash,
        fill_index,
        position,
        trades["cash_after"],
    )


def evaluate(
    close_factor: np.ndarray,
    per_year: float,
    initial_cash: int,
    fill_index: np.ndarray,
    position_after: np.ndarray,
    cash_after: np.ndarray,
) -> tuple[np.ndarray, dict[str, float | int]]:
    """Equity and metrics from the columns of a validated trade list (the kernel's sweep calls this directly).

    ``close_factor`` is :func:`close_scaled` of the closes, ``position_after``/``cash_after`` the position and cash
    after each fill (int64, 1e-8 units), ``fill_index`` the bar of each fill, strictly increasing.
    """
    n = len(close_factor)
    m = len(fill_index)
    if initial_cash >= _FLOAT_EXACT or (m and int(cash_after.max()) >= _FLOAT_EXACT):
        raise InvalidInput("cash above 2**53 units (90 million) cannot be valued exactly in float64")
    if m and int(position_after.max()) > MAX_ABS:
        raise InvalidInput(
            f"a position above {MAX_ABS // SCALE} whole units is beyond what VeloZ represents: lower the initial cash"
        )
    bounds = np.empty(m + 2, dtype=np.int64)
    bounds[0] = 0
    bounds[1 : m + 1] = fill_index
    bounds[m + 1] = n
    lengths = np.diff(bounds)
    cash_values = np.empty(m + 1, dtype=np.float64)
    cash_values[0] = initial_cash
    cash_values[1:] = cash_after
    qty_values = np.empty(m + 1, dtype=np.float64)
    qty_values[0] = 0.0
    qty_values[1:] = position_after
    equity = np.repeat(qty_values, lengths)
    equity *= close_factor
    equity += np.repeat(cash_values, lengths)
    equity /= 1e8

    peak = np.maximum.accumulate(equity)
    drawdown = peak - equity
    drawdown /= peak
    max_drawdown = float(drawdown.max())

    returns = equity[1:] / equity[:-1]
    returns -= 1.0
    sharpe = 0.0
    if len(returns) >= 2:
        mean = float(np.mean(returns))
        std = float(np.std(returns, ddof=1))
        if std > 0.0:
            sharpe = mean / std * math.sqrt(per_year)

    n_trades = m // 2
    wins = 0
    if n_trades:
        cash_before_buy = np.empty(n_trades, dtype=np.int64)
        cash_before_buy[0] = initial_cash
        cash_before_buy[1:] = cash_after[1 : 2 * n_trades - 1 : 2]
        wins = int(np.count_nonzero(cash_after[1 : 2 * n_trades : 2] > cash_before_buy))
    final_equity = float(equity[-1])
    metrics: dict[str, float | int] = {
        "final_equity": final_equity,
        "total_return": final_equity / (initial_cash / SCALE) - 1.0 if initial_cash else 0.0,
        "max_drawdown": max_drawdown,
        "n_trades": n_trades,
        "win_rate": wins / n_trades if n_trades else 0.0,
        "sharpe": sharpe,
    }
    return equity, metrics


def trades_to_records(trades: np.ndarray) -> list[dict[str, int | str]]:
    """Trades as JSON-ready dicts with exact decimal strings.

    >>> t = np.zeros(1, dtype=TRADE_DTYPE)
    >>> t[0] = (3, 4, 1_700_000_000_000_000_000, 1, 6183763000000, 16000, 9895, 0)
    >>> trades_to_records(t)
    [{'ts': 1700000000000, 'side': 'BUY', 'price': '61837.63', 'qty': '0.00016', 'fee': '0.00009895'}]
    """
    return [
        {
            "ts": int(open_time) // 1_000_000,
            "side": "BUY" if side > 0 else "SELL",
            "price": format_decimal(int(price)),
            "qty": format_decimal(int(qty)),
            "fee": format_decimal(int(fee)),
        }
        for open_time, side, price, qty, fee in zip(
            trades["open_time"].tolist(),
            trades["side"].tolist(),
            trades["price"].tolist(),
            trades["qty"].tolist(),
            trades["fee"].tolist(),
            strict=True,
        )
    ]

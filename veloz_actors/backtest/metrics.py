"""The one equity curve and the one set of statistics of a bar backtest, computed from its trade list.

The vectorised kernel (:mod:`veloz_actors.backtest.kernel`) and the event-driven backtest both build the same
``TRADE_DTYPE`` array and hand it to :func:`equity_and_metrics`, so their statistics agree by construction; only their
trades have to agree by independent implementation.

The semantics (shared with the kernel and the event-driven backtest):

* A trade is filled at the *open* of bar ``fill_index``; the position and cash it leaves are held from that bar on, so
  the equity at bar ``t``'s close uses the state after every fill at an open ``<= t``. Long only: a SELL never sells
  more than the position. The built-in strategies' trades alternate BUY, SELL, BUY, ..., each SELL closing the whole
  position; a strategy of one's own may also scale in and out (several fills in one bar included).
* A *round trip* is a position from flat back to flat (backtrader's trade, vectorbt's position), however many fills
  it takes; its PnL, net of every fee, is the cash after the fill that leaves it flat minus the cash before its
  first BUY. A position still open at the end is no round trip.
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
* ``max_drawdown`` = ``max((peak - equity) / peak)`` with ``peak`` the running maximum of bar-close equity and of the
  initial cash (a strategy ordering before the first bar fills at its open: a fall within that bar counts): a
  positive fraction, 0.0 if equity never falls.
* ``n_trades`` = completed round trips. ``win_rate`` = round trips whose PnL net of every fee is positive (for a BUY
  and a SELL, sell proceeds - sell fee - buy cost - buy fee > 0, which is exactly ``cash after the SELL > cash before
  the BUY`` in integers) over completed ones; 0.0 when there is none.
* ``sharpe`` = ``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)`` (risk-free rate 0) over the bar-to-bar returns
  ``r[t] = equity[t] / equity[t-1] - 1`` (t >= 1), with ``bars_per_year = 525600 / bar_minutes`` and
  ``bar_minutes = interval_ns / 60e9``; 0.0 when there are fewer than two returns or their standard deviation is 0.

These six are what a search ranks by (:func:`evaluate`, floats). A backtest's report adds, by
:func:`report_metrics` (``None``, JSON ``null``, where a statistic does not exist, never inf or NaN):

* money as exact :class:`~decimal.Decimal` (written to JSON as the exact decimal number): ``final_equity`` =
  ``cash + qty * close // 1e8`` at the last close, in integers (exact: tick x step is a whole 1e-8); ``total_fees``,
  the sum of every fill's fee; ``avg_trade``, ``avg_win`` and ``avg_loss``, the mean PnL (net of every fee) of all
  round trips, of those with PnL > 0 and of those with PnL < 0 (break-even ones are neither), each rounded to 1e-8
  half to even, ``None`` when there is none;
* ``cagr``, the compound annual growth rate, like quantstats' over the equity curve's actual time span (not its bar
  count, so a gap in the data counts for the time it lasted): ``(final_equity / initial) ** (1 / years) - 1`` with
  ``years`` the time from the first bar's open (the initial cash) to the last bar's close, in 365-day years (crypto
  trades every day); -1.0 when nothing is left, ``None`` when the rate is beyond a float (a run of minutes that
  doubled). On a run shorter than a year it extrapolates, as the peers' does: read it with the span;
* ``profit_factor`` = gross profit / gross loss over round trips (``None`` with no losing round trip: none at all,
  or only wins);
* ``exposure`` = the fraction of bars at whose close a position is held (a BUY filled at bar ``b``'s open and the
  SELL that leaves it flat at bar ``s``'s hold bars ``b .. s - 1``; an open position to the last bar);
* ``sortino`` = ``mean(r) / sqrt(mean(min(r, 0)**2)) * sqrt(bars_per_year)`` over the same returns as ``sharpe``
  (target 0, downside deviation over all returns); ``None`` when there are fewer than two returns or none below 0;
* the maximum drawdown's bars: its trough is the first bar where ``max_drawdown`` is reached, its peak the last bar
  before it whose equity is the running maximum (the first bar, the start, when that is the initial cash), its
  recovery the first bar after it back at or above the peak's equity (``None`` if never); ``max_drawdown_peak`` /
  ``_trough`` / ``_recovery`` are those bars' open times (the key of ``equity.csv``, ISO-8601 UTC).
  ``max_drawdown_duration_seconds`` is the longest time under water of *any* drawdown, as quantstats, vectorbt,
  pyfolio and backtrader (``DrawDown``'s ``max.len``) define a maximum drawdown's duration (a shallow fall that
  lasts months matters more than a deep one recovered in a day): over every stretch of bars below the running peak,
  the time from the last bar at the peak to the first bar back at or above it, or to the last bar when it never
  recovered. All four are ``None`` / 0 when equity never falls.

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

import itertools
import math
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import orjson

from .._exceptions import InvalidInput
from ..data.bars import BarSeries
from ..fixed import MAX_ABS, SCALE, as_decimal, format_decimal
from .settings import BacktestSettings

__all__ = [
    "METRIC_NAMES",
    "TRADE_DTYPE",
    "bars_per_year",
    "check_initial_cash",
    "equity_and_metrics",
    "equity_returns",
    "format_metric",
    "iso_times",
    "metrics_json",
    "report_metrics",
    "sharpe_ratio",
    "trades_to_records",
]

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
_NS_PER_YEAR = _MINUTES_PER_YEAR * 60 * 10**9
_FLOAT_EXACT = 2**53


def check_initial_cash(initial_cash: int) -> None:
    """Refuse, before a run, an initial cash the metrics cannot value exactly (2**53 units, 90 million, or more): every
    run of it would fail at its end (:func:`evaluate`)."""
    if initial_cash >= _FLOAT_EXACT:
        raise InvalidInput(
            f"settings.initial_cash {format_decimal(initial_cash)} is above the {format_decimal(_FLOAT_EXACT - 1)} "
            "that the metrics value exactly in float64 (2**53 - 1 units of 1e-8)"
        )


# How each statistic of a backtest (bar or L2) is shown to people: exact decimals (money and quantities, with
# thousands separators), fractions (as a percent), ratios (3 decimals), a duration; counts get separators.
_EXACT = frozenset(
    {"final_equity", "initial_equity", "pnl", "realized_pnl", "unrealized_pnl", "fees", "total_fees", "volume_quote",
     "final_position", "avg_trade", "avg_win", "avg_loss"}
)  # fmt: skip
_FRACTIONS = frozenset({"total_return", "cagr", "max_drawdown", "win_rate", "exposure"})
_RATIOS = frozenset({"sharpe", "sortino", "profit_factor"})


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
    :class:`InvalidInput` for a trade list with a SELL of more than the position, a side not +1/-1, a quantity not
    positive, or fill bars decreasing or outside the series.
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
    position = np.zeros(0, dtype=np.int64)
    if m:
        if not np.all((side == 1) | (side == -1)):
            raise InvalidInput("a trade's side must be BUY (+1) or SELL (-1)")
        if int(qty.min()) <= 0 or int(qty.max()) > MAX_ABS:
            raise InvalidInput(f"a trade's quantity must be within 1..{MAX_ABS} (1e-8 units)")
        if fill_index[0] < 0 or fill_index[-1] >= n or (m > 1 and np.any(np.diff(fill_index) < 0)):
            raise InvalidInput(f"fill indices must be non-decreasing within 0..{n - 1}")
        position = np.cumsum(side * qty)
        short = np.flatnonzero(position < 0)
        if len(short):
            raise InvalidInput(f"long only: fill {int(short[0]) + 1} sells more than the position held")
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
    after each fill (int64, 1e-8 units, the position never negative), ``fill_index`` the bar of each fill,
    non-decreasing.
    """
    n = len(close_factor)
    m = len(fill_index)
    if initial_cash >= _FLOAT_EXACT:
        raise InvalidInput("cash above 2**53 units (90 million) cannot be valued exactly in float64")
    if m and int(cash_after.max()) >= _FLOAT_EXACT:
        raise InvalidInput(
            f"cash above 2**53 units (90 million) cannot be valued exactly in float64: the run's cash grew to "
            f"{format_decimal(int(cash_after.max()))} from an initial cash of {format_decimal(initial_cash)}; "
            "lower the initial cash"
        )
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

    peak = _running_peak(equity, initial_cash)
    drawdown = peak - equity
    drawdown /= peak
    max_drawdown = float(drawdown.max())

    sharpe = sharpe_ratio(equity_returns(equity), per_year)

    # a round trip ends at each fill that leaves the position flat; it began with the cash the previous one left
    closed = cash_after[position_after == 0]
    n_trades = len(closed)
    wins = 0
    if n_trades:
        opened = np.empty(n_trades, dtype=np.int64)
        opened[0] = initial_cash
        opened[1:] = closed[:-1]
        wins = int(np.count_nonzero(closed > opened))
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


def _running_peak(equity: np.ndarray, initial_cash: int) -> np.ndarray:
    """The running maximum of the equity, starting at the initial cash (a fall within the first bar, after a fill at
    its open, is a drawdown too)."""
    peak = np.maximum.accumulate(equity)
    np.maximum(peak, initial_cash / SCALE, out=peak)
    return peak


def equity_returns(equity: np.ndarray) -> np.ndarray:
    """Sample-to-sample returns ``equity[t] / equity[t - 1] - 1``, t >= 1."""
    returns = equity[1:] / equity[:-1]
    returns -= 1.0
    return returns


def sharpe_ratio(returns: np.ndarray, per_year: float) -> float:
    """``mean(returns) / std(returns, ddof=1) * sqrt(per_year)``; 0.0 with fewer than two returns or no variation."""
    if len(returns) < 2:
        return 0.0
    mean = float(np.mean(returns))
    std = float(np.std(returns, ddof=1))
    return mean / std * math.sqrt(per_year) if std > 0.0 else 0.0


def report_metrics(
    bars: BarSeries, settings: BacktestSettings, trades: np.ndarray, equity: np.ndarray, metrics: dict[str, Any]
) -> dict[str, Any]:
    """A backtest's full statistics: :func:`equity_and_metrics`'s ``metrics`` (its ``equity`` curve and trade list)
    with ``final_equity`` exact and the report's statistics added (see the module docstring for each definition).

    Money is an exact :class:`~decimal.Decimal`; :func:`metrics_json` writes it as the exact JSON number.
    """
    n = len(equity)
    close = int(bars.data["close"][-1])
    m = len(trades)
    cash_after = [int(v) for v in trades["cash_after"].tolist()]
    fill_index = trades["fill_index"].tolist()
    position = np.cumsum(trades["side"] * trades["qty"]).tolist()
    cash = cash_after[-1] if m else settings.initial_cash
    qty = position[-1] if m else 0
    closed = [settings.initial_cash] + [c for c, p in zip(cash_after, position, strict=True) if p == 0]
    pnls = [after - before for before, after in itertools.pairwise(closed)]  # each round trip, flat to flat
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    # the position after fill i is held at the closes of its bar up to the next fill's bar (exclusive)
    ends = [*fill_index[1:], n] if m else []
    held = sum(end - start for start, end, p in zip(fill_index, ends, position, strict=True) if p)
    returns = equity_returns(equity)
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) >= 2 else 0.0
    drawdown = drawdown_times(equity, bars.data["open_time"], settings.initial_cash)
    final = cash + qty * close // SCALE
    open_time = bars.data["open_time"]
    span_ns = int(open_time[-1]) + bars.interval_ns - int(open_time[0])  # the first open to the last close
    return {
        "final_equity": as_decimal(final),
        "total_return": metrics["total_return"],
        "cagr": _cagr(final, settings.initial_cash, span_ns),
        "max_drawdown": metrics["max_drawdown"],
        **drawdown,
        "n_trades": metrics["n_trades"],
        "win_rate": metrics["win_rate"],
        "avg_trade": _mean(pnls),
        "avg_win": _mean(wins),
        "avg_loss": _mean(losses),
        "profit_factor": sum(wins) / -sum(losses) if losses else None,
        "total_fees": as_decimal(int(trades["fee"].sum()) if m else 0),
        "exposure": held / n,
        "sharpe": metrics["sharpe"],
        "sortino": float(np.mean(returns)) / downside * math.sqrt(bars_per_year(bars.interval_ns))
        if downside > 0.0
        else None,
    }


def _cagr(final: int, initial: int, span_ns: int) -> float | None:
    """``(final / initial) ** (1 / years) - 1`` over ``span_ns`` in 365-day years; -1.0 when nothing is left, ``None``
    when the growth rate is beyond a float (a run of minutes that doubled)."""
    if final <= 0:
        return -1.0
    try:
        return (final / initial) ** (_NS_PER_YEAR / span_ns) - 1.0
    except OverflowError:
        return None


def _mean(values: list[int]) -> Decimal | None:
    """The mean of 1e-8 amounts, rounded to 1e-8 half to even; ``None`` for no values."""
    if not values:
        return None
    quotient, remainder = divmod(sum(values), len(values))
    twice = 2 * remainder
    if twice > len(values) or (twice == len(values) and quotient % 2):
        quotient += 1
    return as_decimal(quotient)


def drawdown_times(equity: np.ndarray, open_time: np.ndarray, initial_cash: int) -> dict[str, Any]:
    """The maximum drawdown's peak, trough and recovery bars (or equity samples) as ISO times, and the longest time
    under water in seconds (of any drawdown, as the peers define a maximum drawdown's duration). ``equity`` is in
    quote units, ``initial_cash`` in 1e-8 units. A peak at the initial cash, before any bar closed, is the first
    bar's open time (the start)."""
    none = {"max_drawdown_peak": None, "max_drawdown_trough": None, "max_drawdown_recovery": None,
            "max_drawdown_duration_seconds": 0}  # fmt: skip
    peak_value = _running_peak(equity, initial_cash)
    fall = (peak_value - equity) / peak_value
    trough = int(np.argmax(fall))
    if fall[trough] <= 0.0:
        return none
    top = peak_value[trough]
    at_top = np.flatnonzero(equity[:trough] == top)
    peak = int(at_top[-1]) if len(at_top) else 0  # none: the initial cash, at the start
    back = np.flatnonzero(equity[trough + 1 :] >= top)
    recovery = trough + 1 + int(back[0]) if len(back) else None
    times = iso_times(open_time[[peak, trough]])
    # every stretch of bars under water: from the last bar at the peak before it (the start for a stretch from the
    # first bar) to the first bar back at the peak, or to the last bar
    under = equity < peak_value
    before = np.concatenate(([False], under[:-1]))
    after = np.concatenate((under[1:], [False]))
    first = np.flatnonzero(under & ~before)
    last = np.flatnonzero(under & ~after)
    n = len(equity)
    durations = open_time[np.minimum(last + 1, n - 1)] - open_time[np.maximum(first - 1, 0)]
    return {
        "max_drawdown_peak": times[0] + "Z",
        "max_drawdown_trough": times[1] + "Z",
        "max_drawdown_recovery": iso_times(open_time[[recovery]])[0] + "Z" if recovery is not None else None,
        "max_drawdown_duration_seconds": int(durations.max()) // 10**9,
    }


def iso_times(open_time_ns: np.ndarray, unit: Literal["s", "ms"] = "s") -> list[str]:
    """Nanosecond timestamps as ISO-8601 UTC strings to the second (``2024-03-01T00:05:00``; ``unit="ms"`` to the
    millisecond): plotly's date values.

    >>> iso_times(np.array([1_700_000_000_000_000_000]))
    ['2023-11-14T22:13:20']
    >>> iso_times(np.array([1_700_000_000_123_456_789]), unit="ms")
    ['2023-11-14T22:13:20.123']
    """
    return np.datetime_as_string(np.asarray(open_time_ns, dtype=np.int64).astype("datetime64[ns]"), unit=unit).tolist()


def _exact_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def metrics_json(value: Any, *, indent: bool = False) -> bytes:
    """``value`` as JSON, a :class:`~decimal.Decimal` as the exact decimal number (``37.61272962``, never the float
    noise of ``37.612729619999996``; a float-reading parser gets the float nearest the exact amount).

    >>> metrics_json({"final_equity": Decimal("1819534.26884073"), "sortino": None})
    b'{"final_equity":1819534.26884073,"sortino":null}'
    """
    return orjson.dumps(value, default=_exact_json, option=orjson.OPT_INDENT_2 if indent else None)


def format_metric(name: str, value: Any) -> str:
    """A statistic as people read it: exact money and quantities with thousands separators, fractions as a percent,
    ratios to 3 decimals, the drawdown's duration in days and hours, ``—`` for one that does not exist.

    A float amount (a search's row) is shown to 1e-8, where its float rounding vanishes.

    >>> format_metric("final_equity", Decimal("1819534.26884073")), format_metric("final_equity", 37.612729619999996)
    ('1,819,534.26884073', '37.61272962')
    >>> format_metric("total_return", -0.996238727038), format_metric("sharpe", 2.13229801767), format_metric("n_trades", 2834)
    ('-99.62 %', '2.132', '2,834')
    >>> format_metric("max_drawdown_duration_seconds", 3 * 86400 + 5400), format_metric("sortino", None)
    ('3 d 01:30:00', '—')
    """
    if value is None:
        return "—"
    if name in _EXACT and isinstance(value, Decimal | float):
        exact = value if isinstance(value, Decimal) else Decimal(repr(value)).quantize(Decimal(1).scaleb(-8))
        text = format(exact, ",f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if name == "max_drawdown_duration_seconds":
        days, seconds = divmod(int(value), 86_400)
        return f"{days} d {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if name in _FRACTIONS:
        return f"{value * 100:.2f} %"
    if name in _RATIOS:
        return f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


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

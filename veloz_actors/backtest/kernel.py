"""Vectorised backtest kernels for the built-in bar strategies, and the sweep API that parameter searches use.

The kernels find signals with whole-array integer comparisons, walk only the signal bars to fill orders with exact
integer money, and hand the trade list to :func:`veloz_actors.backtest.metrics.evaluate` (the one equity/metrics
implementation, shared with the event-driven backtest). They must give the same trades as the event-driven backtest;
``tests/backtest/test_kernel.py`` proves them against a deliberately simple reference written from the rules below.

The semantics (exact; the event-driven backtest implements the same):

* Bars are ordered by open time. A signal is evaluated at bar ``t``'s close and becomes a market order filled at bar
  ``t + 1``'s open; a signal on the last bar is dropped. Long only, one position at a time. The position "at bar
  ``t``'s close" is the one after every fill at an open ``<= t`` (a BUY signalled at ``t`` is not yet held at ``t``).
* Tick and step: ``settings.for_bars(bars)`` (the data's tick and the default step rule unless overridden; see
  :mod:`~veloz_actors.backtest.settings`). Fill price: BUY ``open * (1 + slippage)`` rounded UP to the tick, SELL
  ``open * (1 - slippage)`` rounded DOWN to the tick, in exact integers.
* BUY quantity ``floor(cash / (price * (1 + fee_rate)) / step) * step``, exactly:
  ``floor(cash * 1e16 / (price * (1e8 + fee_rate) * step)) * step`` in 1e-8 units. If it is 0 (or less) there is no
  trade and the strategy stays flat; such BUYs with cash above 0 are counted (:class:`SkippedBuys`, the first one's
  cash and price kept) for the warning the event-driven backtest gives about them. A SELL closes the whole position.
* Fee ``ceil(fee_rate * price * qty)`` in 1e-8 quote units (``ceil(fee_rate * price * qty / 1e16)`` on the raw ints).
  Notional ``price * qty / 1e8``; when that is not a whole 1e-8 unit (it always is: ``for_bars`` refuses a tick and a
  step whose product is finer than 1e-8), a BUY's cost is rounded UP and a SELL's proceeds DOWN, against the
  trader. BUY: ``cash -= cost + fee``; SELL: ``cash += proceeds - fee``. (With both rounded up, a BUY that spends
  everything can leave cash at most 2e-8 below zero; that is what the rules say, and a later BUY with cash <= 0 simply
  gets quantity 0.)
* ``sma_cross(fast, slow)``, ``1 <= fast < slow``: ``SMA_n[t]`` is the mean of the ``n`` closes ending at bar ``t``.
  Evaluated for ``t >= slow``. BUY when flat and ``fast[t-1] <= slow[t-1]`` and ``fast[t] > slow[t]``; SELL when long
  and ``fast[t-1] >= slow[t-1]`` and ``fast[t] < slow[t]``. Compared exactly as ``slow * sum_fast`` against
  ``fast * sum_slow`` on closes divided by their common divisor (the price tick of the data), in int64 after a bound
  check, so a flat series never produces a float-noise cross.
* ``rsi_reversion(period, lower, upper)``, ``period >= 1``, ``0 <= lower < upper <= 100``: Wilder's RSI in float64
  with exactly this operation order (so a per-bar loop in plain Python floats gives bit-identical values):
  ``d[i] = close[i] - close[i-1]`` (exact ints), ``gain = max(d, 0)``, ``loss = max(-d, 0)``; at ``t = period``,
  ``avg_gain = float(sum(gain[1..period])) / period`` (the exact int sum converted once), same for loss; for
  ``t > period``, ``avg = (avg_prev * (period - 1) + float(gain[t])) / period``;
  ``rsi = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)``. Evaluated for ``t >= period``:
  BUY when flat and ``rsi[t] < lower``; SELL when long and ``rsi[t] > upper``.
* Equity and metrics: see :mod:`veloz_actors.backtest.metrics`.

Sweeps: :func:`prepare` computes once what every parameter set shares (closes in ticks and their running sum, the
fill price of a BUY and of a SELL at every bar, the gains and losses), in an immutable, picklable :class:`Prepared`;
:func:`run_many` reuses it and, inside one call, each window's rolling sum and each period's RSI series across the
parameter sets that need them.

Why numba: the order walk is sequential (each quantity depends on the cash the previous trade left), with thousands
of fills per run; in Python it costs ~1 µs a fill and caps a 256-combination SMA sweep far below 400 combinations a
second. The walk and Wilder's recursion are therefore compiled with ``numba.njit(cache=True)`` (compiled once per
machine, then loaded from ``__pycache__``), working in int64 with every product bound-checked; the exact Python-int
walk is kept and used whenever numba is missing or a bound would be exceeded, and the tests pin both to the reference.

>>> from veloz_actors.data.loaders import load_bars  # doctest: +SKIP
>>> bars = load_bars("../shared/data/ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz")  # doctest: +SKIP
>>> trades, metrics = sma_cross(bars, 10, 30)  # doctest: +SKIP
>>> prepared = prepare(bars, "sma_cross", BacktestSettings())  # doctest: +SKIP
>>> results = run_many(prepared, [{"fast": f, "slow": s} for f in range(5, 21) for s in range(30, 61, 2)])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from math import gcd
from types import ModuleType
from typing import Any

import numpy as np

from .._exceptions import DataError, InvalidInput
from ..data.bars import BarSeries
from ..fixed import SCALE
from ..strategies.params import VALID_STRATEGIES, validate_params
from .metrics import TRADE_DTYPE, bars_per_year, check_initial_cash, close_scaled, evaluate
from .settings import BacktestSettings

_numba: ModuleType | None
try:  # numba is a pinned dependency; the exact pure-Python paths keep the kernel correct without it.
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    _numba = None

__all__ = [
    "Prepared",
    "SkippedBuys",
    "backtest",
    "backtest_with_skipped_buys",
    "prepare",
    "rsi_reversion",
    "run",
    "run_many",
    "share",
    "sma_cross",
]

_INT64_MAX = 2**63 - 1
# Products inside the compiled walk must stay below this (checked in float64, which is exact enough at this margin).
_WALK_LIMIT = 2.0**62
_USE_NUMBA = _numba is not None


# ------------------------------------------------------------------------------------------------ prepared inputs


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """Everything parameter sets of one strategy share on one bar series; immutable (read-only arrays), picklable.

    Prices are int64 1e-8 units unless named ``*_ticks``; ``buy_ticks[i]``/``sell_ticks[i]`` are the fill prices, in
    price ticks, of a BUY/SELL filled at bar ``i``'s open (slippage and tick rounding applied).
    """

    strategy: str
    settings: BacktestSettings
    interval_ns: int
    tick: int
    open_time: np.ndarray
    close: np.ndarray
    close_factor: np.ndarray  # metrics.close_scaled(close)
    buy_ticks: np.ndarray
    sell_ticks: np.ndarray
    # sma_cross: closes divided by their common divisor, as a running sum with a leading 0 (length n + 1).
    close_units_cumsum: np.ndarray | None
    max_close_units: int
    # rsi_reversion: gain[i], loss[i] of close[i] - close[i-1] (index 0 is 0), exact ints.
    gains: np.ndarray | None
    losses: np.ndarray | None
    # the int64 walk's reduced constants, or None when they do not fit (the exact Python walk is used then).
    walk_constants: tuple[int, int, int, int, int, int] | None
    # per-search work shared by every parameter set: ("sum", window) -> rolling sums, ("rsi", period) -> RSI series
    shared: Mapping[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.close)

    @property
    def bars_per_year(self) -> float:
        return bars_per_year(self.interval_ns)


def prepare(bars: BarSeries, strategy: str, settings: BacktestSettings | None = None) -> Prepared:
    """Compute once the inputs that every parameter set of ``strategy`` shares on ``bars``.

    Raises :class:`InvalidInput` for an unknown strategy or unusable settings, :class:`DataError` for an empty
    series, a non-positive open or an open above the int64-safe range.
    """
    if strategy not in VALID_STRATEGIES:
        raise InvalidInput(f"unknown strategy {strategy!r}; valid strategies: {', '.join(VALID_STRATEGIES)}")
    settings = (settings if settings is not None else BacktestSettings()).for_bars(bars)  # tick and step fixed
    tick = settings.tick_for(bars)
    _check_settings(settings, tick)
    data = bars.data
    n = len(data)
    if n == 0:
        raise DataError(f"{bars.symbol}: empty bar series")
    opens = np.ascontiguousarray(data["open"])
    close = np.ascontiguousarray(data["close"])
    if int(opens.min()) <= 0 or int(close.min()) <= 0:
        raise DataError(f"{bars.symbol}: prices must be positive")
    buy_ticks, sell_ticks = _fill_ticks(opens, settings.slippage_rate, tick)

    cumsum = gains = losses = None
    max_units = 0
    if strategy == "sma_cross":
        units = _close_units(close)
        max_units = int(units.max())
        if max_units * n > _INT64_MAX:
            raise DataError(f"{bars.symbol}: closes too large to sum exactly in int64 ({max_units} x {n} bars)")
        cumsum = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(units, out=cumsum[1:])
    else:
        delta = np.zeros(n, dtype=np.int64)
        np.subtract(close[1:], close[:-1], out=delta[1:])
        gains = np.maximum(delta, 0)
        losses = np.maximum(-delta, 0)

    arrays = [data["open_time"].copy(), close.copy(), close_scaled(close), buy_ticks, sell_ticks]
    arrays += [a for a in (cumsum, gains, losses) if a is not None]
    for array in arrays:
        array.setflags(write=False)
    return Prepared(
        strategy=strategy,
        settings=settings,
        interval_ns=bars.interval_ns,
        tick=tick,
        open_time=arrays[0],
        close=arrays[1],
        close_factor=arrays[2],
        buy_ticks=buy_ticks,
        sell_ticks=sell_ticks,
        close_units_cumsum=cumsum,
        max_close_units=max_units,
        gains=gains,
        losses=losses,
        walk_constants=_walk_constants(settings, tick),
    )


def _check_settings(settings: BacktestSettings, tick: int) -> None:
    for name in ("initial_cash", "fee_rate", "slippage_rate", "qty_step"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"settings.{name} must be an int in 1e-8 units, got {value!r}")
    if isinstance(tick, bool) or not isinstance(tick, int) or tick <= 0:
        raise InvalidInput(f"price tick must be a positive int in 1e-8 units, got {tick!r}")
    if settings.initial_cash < 0:
        raise InvalidInput(f"settings.initial_cash must not be negative, got {settings.initial_cash}")
    check_initial_cash(settings.initial_cash)
    if not 0 <= settings.fee_rate < SCALE:  # as the event engine
        raise InvalidInput(f"fee rate must be within [0, 1), got {settings.fee_rate / SCALE:g}")
    if not 0 <= settings.slippage_rate < SCALE:
        raise InvalidInput(
            f"settings.slippage_rate must be within [0, 1e8) (a fraction below 1), got {settings.slippage_rate}"
        )
    if settings.qty_step is None or settings.qty_step <= 0:  # for_bars has fixed it
        raise InvalidInput(f"settings.qty_step must be positive, got {settings.qty_step}")


def _fill_ticks(opens: np.ndarray, slippage: int, tick: int) -> tuple[np.ndarray, np.ndarray]:
    """BUY price ``ceil(open * (1e8 + s) / (1e8 * tick))`` and SELL ``floor(open * (1e8 - s) / (1e8 * tick))``, in ticks;
    a SELL never below one tick (an open of one tick less slippage would round to a price of 0: the event engine
    sells at one tick too).

    Exact in int64: with ``open = a * 1e8 + b`` and ``r = b * s``, ``open * (1e8 +- s) = 1e8 * (open +- a * s) +- r``.
    """
    if slippage == 0:
        buy = -((-opens) // tick)
        sell = np.maximum(opens // tick, 1)
        return buy, sell
    top = int(opens.max())
    if top + (top // SCALE) * slippage > _INT64_MAX:
        raise DataError(f"open price {top} too large to apply slippage exactly in int64")
    whole, frac = np.divmod(opens, SCALE)
    shift = whole * slippage
    r_whole, r_frac = np.divmod(frac * slippage, SCALE)
    up = opens + shift + r_whole
    buy = up // tick + ((up % tick != 0) | (r_frac != 0))
    sell = np.maximum((opens - shift - r_whole - (r_frac != 0)) // tick, 1)
    return buy, sell


def _walk_constants(settings: BacktestSettings, tick: int) -> tuple[int, int, int, int, int, int] | None:
    """Reduced fractions that put the BUY quantity, the notional and the fee in small integers (price in ticks).

    steps = floor(cash * A / (p * B)); notional = p * steps * a2 / b2; fee = ceil(p * steps * a3 / b3).
    """
    s, f, step = SCALE, settings.fee_rate, settings.qty_step
    assert step is not None  # fixed by for_bars in prepare()
    num, den = s * s, tick * (s + f) * step
    g = gcd(num, den)
    g2 = gcd(tick * step, s)
    g3 = gcd(f * tick * step, s * s)
    constants = (num // g, den // g, tick * step // g2, s // g2, f * tick * step // g3, s * s // g3)
    return constants if max(constants) < 2**62 else None


# ------------------------------------------------------------------------------------------------ runs


@dataclass(frozen=True, slots=True)
class SkippedBuys:
    """The BUY signals of a run whose cash (above 0) could not pay for one quantity step at the fill price plus the
    fee, so nothing was traded and the strategy stayed flat: how many, and the first one's cash and fill price (1e-8
    units). The event-driven backtest counts the same buys for its warning
    (:func:`~veloz_actors.backtest.runner.skipped_buys_warning` words it for both)."""

    count: int = 0
    first_cash: int = 0
    first_price: int = 0


def backtest(
    bars: BarSeries, strategy: str, params: dict[str, Any], settings: BacktestSettings | None = None
) -> tuple[np.ndarray, dict[str, float | int]]:
    """One backtest of a built-in strategy: ``(trades as TRADE_DTYPE array, metrics dict)``."""
    trades, metrics, _ = backtest_with_skipped_buys(bars, strategy, params, settings)
    return trades, metrics


def backtest_with_skipped_buys(
    bars: BarSeries, strategy: str, params: dict[str, Any], settings: BacktestSettings | None = None
) -> tuple[np.ndarray, dict[str, float | int], SkippedBuys]:
    """:func:`backtest`, and the BUYs it skipped because the cash could not pay for one quantity step."""
    params = validate_params(strategy, params)
    return _run(prepare(bars, strategy, settings), params)


def sma_cross(
    bars: BarSeries, fast: int, slow: int, settings: BacktestSettings | None = None
) -> tuple[np.ndarray, dict[str, float | int]]:
    """SMA crossover backtest (see the module docstring for the exact rules)."""
    return backtest(bars, "sma_cross", {"fast": fast, "slow": slow}, settings)


def rsi_reversion(
    bars: BarSeries, period: int, lower: float, upper: float, settings: BacktestSettings | None = None
) -> tuple[np.ndarray, dict[str, float | int]]:
    """RSI mean-reversion backtest: buy below ``lower``, sell above ``upper`` (Wilder's RSI, exact op order)."""
    return backtest(bars, "rsi_reversion", {"period": period, "lower": lower, "upper": upper}, settings)


def run(prepared: Prepared, params: dict[str, Any]) -> tuple[np.ndarray, dict[str, float | int]]:
    """One parameter set on prepared inputs: ``(trades, metrics)``."""
    trades, metrics, _ = _run(prepared, params)
    return trades, metrics


def _run(prepared: Prepared, params: dict[str, Any]) -> tuple[np.ndarray, dict[str, float | int], SkippedBuys]:
    params = validate_params(prepared.strategy, params)
    fills, skipped = _fills(prepared, params, dict(prepared.shared))
    signal, side, price_ticks, qty, fee, cash = fills
    trades = np.empty(len(signal), dtype=TRADE_DTYPE)
    trades["signal_index"] = signal
    trades["fill_index"] = signal + 1
    trades["open_time"] = prepared.open_time[signal + 1]
    trades["side"] = side
    trades["price"] = price_ticks * prepared.tick
    trades["qty"] = qty
    trades["fee"] = fee
    trades["cash_after"] = cash
    return trades, _metrics(prepared, fills), skipped


def run_many(prepared: Prepared, param_sets: list[dict[str, Any]]) -> list[dict[str, float | int]]:
    """Metrics of many parameter sets on the same prepared inputs, in order; equal to :func:`run` one by one.

    Every set is validated before any runs. Rolling sums (per window length) and RSI series (per period) are computed
    once per call and reused across the sets that need them.
    """
    validated = [validate_params(prepared.strategy, params) for params in param_sets]
    cache: dict[Any, np.ndarray] = dict(prepared.shared)
    return [_metrics(prepared, _fills(prepared, params, cache)[0]) for params in validated]


def share(prepared: Prepared, param_sets: Iterable[dict[str, Any]], max_bytes: int = 1 << 30) -> Prepared:
    """``prepared`` plus the per-window rolling sums (or per-period RSI series) that ``param_sets`` need.

    A search calls this once and ships the result to every worker, so each window's moving average is computed once
    per search, not once per chunk or per combination. Stops adding series past ``max_bytes`` (the rest are then
    computed per :func:`run_many` call, as without sharing).
    """
    keys: set[tuple[str, int]] = set()
    for params in param_sets:
        if prepared.strategy == "sma_cross":
            keys.update((("sum", int(params["fast"])), ("sum", int(params["slow"]))))
        else:
            keys.add(("rsi", int(params["period"])))
    cache: dict[Any, np.ndarray] = dict(prepared.shared)
    budget = max_bytes
    for kind, value in sorted(keys):
        if (kind, value) in cache or value >= len(prepared):
            continue
        array = _rolling_sum(prepared, value, cache) if kind == "sum" else wilder_rsi(prepared, value)
        cache[(kind, value)] = array
        array.setflags(write=False)
        budget -= array.nbytes
        if budget <= 0:
            break
    return dataclasses.replace(prepared, shared=cache)


def _metrics(prepared: Prepared, fills: tuple[np.ndarray, ...]) -> dict[str, float | int]:
    signal, side, _price, qty, _fee, cash = fills
    position = np.where(side > 0, qty, 0)
    _, metrics = evaluate(
        prepared.close_factor, prepared.bars_per_year, prepared.settings.initial_cash, signal + 1, position, cash
    )
    return metrics


def _fills(
    prepared: Prepared, params: dict[str, Any], cache: dict[Any, np.ndarray]
) -> tuple[tuple[np.ndarray, ...], SkippedBuys]:
    if prepared.strategy == "sma_cross":
        buy, sell = _sma_signals(prepared, params["fast"], params["slow"], cache)
    else:
        buy, sell = _rsi_signals(prepared, params["period"], params["lower"], params["upper"], cache)
    return _walk(prepared, buy, sell)


# ------------------------------------------------------------------------------------------------ signals


def _rolling_sum(prepared: Prepared, window: int, cache: dict[Any, np.ndarray]) -> np.ndarray:
    """``sums[j]`` = sum of the ``window`` close units ending at bar ``j + window - 1``."""
    key = ("sum", window)
    sums = cache.get(key)
    if sums is None:
        cumsum = prepared.close_units_cumsum
        assert cumsum is not None
        sums = cumsum[window:] - cumsum[:-window]
        cache[key] = sums
    return sums


def max_close_units(close: np.ndarray) -> int:
    """The largest close in the units ``sma_cross`` sums, as :attr:`Prepared.max_close_units`."""
    return int(_close_units(close).max())


def _close_units(close: np.ndarray) -> np.ndarray:
    """The closes divided by their common divisor: ``sma_cross``'s sums stay far from int64's bound."""
    return close // int(np.gcd.reduce(close))


def check_sma_windows(max_units: int, fast: int, slow: int) -> None:
    """Refuse windows whose cross test (``slow * sum_fast - fast * sum_slow``) would overflow int64 on closes up to
    ``max_units`` (:func:`max_close_units`); a search checks its grid with this before any work."""
    if max_units * slow * fast > _INT64_MAX:
        raise InvalidInput(
            f"sma_cross: fast*slow*max close = {fast}*{slow}*{max_units} overflows int64; use smaller windows"
        )


def _sma_signals(
    prepared: Prepared, fast: int, slow: int, cache: dict[Any, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    n = len(prepared)
    if slow >= n:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    check_sma_windows(prepared.max_close_units, fast, slow)
    # index k <-> bar t = k + slow - 1; diff = slow * sum_fast - fast * sum_slow has the sign of SMA_fast - SMA_slow.
    diff = _rolling_sum(prepared, fast, cache)[slow - fast :] * slow
    diff -= _rolling_sum(prepared, slow, cache) * fast
    above = diff > 0
    below = diff < 0
    # bar t >= slow: BUY where above[t] and not above[t-1]; SELL where below[t] and not below[t-1].
    buy = np.flatnonzero(above[1:] > above[:-1])
    buy += slow
    sell = np.flatnonzero(below[1:] > below[:-1])
    sell += slow
    return buy, sell


def _rsi_signals(
    prepared: Prepared, period: int, lower: float, upper: float, cache: dict[Any, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    key = ("rsi", period)
    rsi = cache.get(key)
    if rsi is None:
        rsi = wilder_rsi(prepared, period)
        cache[key] = rsi
    # NaN (t < period) compares False, so only t >= period can signal.
    return np.flatnonzero(rsi < lower), np.flatnonzero(rsi > upper)


def wilder_rsi(prepared: Prepared, period: int) -> np.ndarray:
    """Wilder's RSI of the prepared closes (NaN before bar ``period``), in the exact operation order documented above."""
    gains, losses = prepared.gains, prepared.losses
    if gains is None or losses is None:
        raise InvalidInput(
            f"RSI needs inputs prepared for 'rsi_reversion', these were prepared for {prepared.strategy!r}"
        )
    n = len(gains)
    rsi = np.full(n, np.nan)
    if period >= n:
        return rsi
    first_gain = float(int(gains[1 : period + 1].sum()))
    first_loss = float(int(losses[1 : period + 1].sum()))
    if _USE_NUMBA:
        _rsi_numba(gains, losses, period, first_gain, first_loss, rsi)
    else:
        _rsi_python(gains, losses, period, first_gain, first_loss, rsi)
    return rsi


def _rsi_python(
    gains: np.ndarray, losses: np.ndarray, period: int, first_gain: float, first_loss: float, out: np.ndarray
) -> None:
    avg_gain = first_gain / period
    avg_loss = first_loss / period
    values = [100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)]
    keep = period - 1
    for gain, loss in zip(gains[period + 1 :].tolist(), losses[period + 1 :].tolist(), strict=True):
        avg_gain = (avg_gain * keep + float(gain)) / period
        avg_loss = (avg_loss * keep + float(loss)) / period
        values.append(100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss))
    out[period:] = values


def _rsi_kernel(
    gains: np.ndarray, losses: np.ndarray, period: int, first_gain: float, first_loss: float, out: np.ndarray
) -> None:  # pragma: no cover - compiled by numba
    avg_gain = first_gain / period
    avg_loss = first_loss / period
    keep = period - 1
    for t in range(period, gains.shape[0]):
        if t > period:
            avg_gain = (avg_gain * keep + float(gains[t])) / period
            avg_loss = (avg_loss * keep + float(losses[t])) / period
        out[t] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


# ------------------------------------------------------------------------------------------------ order walk


def _walk(prepared: Prepared, buy: np.ndarray, sell: np.ndarray) -> tuple[tuple[np.ndarray, ...], SkippedBuys]:
    """Fill the signals in order: ``(signal_index, side, price_ticks, qty, fee, cash_after)`` int64 arrays, and the
    BUYs skipped for want of cash (their price in 1e-8 units)."""
    settings = prepared.settings
    if _USE_NUMBA and prepared.walk_constants is not None:
        size = len(buy) + len(sell)
        out = np.empty((6, size), dtype=np.int64)
        skipped = np.zeros(3, dtype=np.int64)  # how many, the first one's cash and price in ticks
        count = _walk_numba(
            buy, sell, len(prepared), prepared.buy_ticks, prepared.sell_ticks, settings.initial_cash,
            *prepared.walk_constants, settings.qty_step, out, skipped,
        )  # fmt: skip
        if count >= 0:
            n, cash, price = skipped.tolist()
            return tuple(out[:, :count]), SkippedBuys(n, cash, price * prepared.tick)
    return _walk_python(prepared, buy, sell)


def _walk_python(prepared: Prepared, buy: np.ndarray, sell: np.ndarray) -> tuple[tuple[np.ndarray, ...], SkippedBuys]:
    """The exact walk in Python ints, straight from the rules (any magnitude)."""
    settings = prepared.settings
    s, fee_rate, step, tick = SCALE, settings.fee_rate, settings.qty_step, prepared.tick
    assert step is not None  # fixed by for_bars in prepare()
    n = len(prepared)
    buy_list, sell_list = buy.tolist(), sell.tolist()
    cash, qty, last = settings.initial_cash, 0, -1
    rows: list[tuple[int, int, int, int, int, int]] = []
    skipped, first_cash, first_price = 0, 0, 0  # the BUYs with cash that could not pay for one step
    while True:
        signals = sell_list if qty else buy_list
        k = bisect_right(signals, last)
        if k == len(signals) or signals[k] + 1 >= n:
            break
        last = signals[k]
        if qty == 0:
            price = int(prepared.buy_ticks[last + 1])
            steps = cash * s * s // (price * tick * (s + fee_rate) * step)
            if steps <= 0:
                if cash > 0:
                    if not skipped:
                        first_cash, first_price = cash, price * tick
                    skipped += 1
                continue
            qty = steps * step
            notional = price * tick * qty
            fee = -(-(fee_rate * notional) // (s * s))
            cash -= -(-notional // s) + fee
            rows.append((last, 1, price, qty, fee, cash))
        else:
            price = int(prepared.sell_ticks[last + 1])
            notional = price * tick * qty
            fee = -(-(fee_rate * notional) // (s * s))
            cash += notional // s - fee
            rows.append((last, -1, price, qty, fee, cash))
            qty = 0
    if any(abs(v) > _INT64_MAX for row in rows for v in row):
        raise InvalidInput("a fill's cash, quantity or fee does not fit in int64 (1e-8 units)")
    table = np.array(rows, dtype=np.int64).reshape(len(rows), 6)
    return tuple(np.ascontiguousarray(table[:, j]) for j in range(6)), SkippedBuys(skipped, first_cash, first_price)


def _walk_kernel(
    buy, sell, n, buy_ticks, sell_ticks, cash, a1, b1, a2, b2, a3, b3, step, out, skipped
):  # pragma: no cover - compiled by numba
    """The walk in int64 with the reduced constants of :func:`_walk_constants`; returns -1 if a product could overflow.
    ``skipped`` gets the BUYs with cash that could not pay for one step: how many, the first one's cash and price."""
    limit = 4.0e18
    n_buy = buy.shape[0]
    n_sell = sell.shape[0]
    i_buy = 0
    i_sell = 0
    last = -1
    steps = 0
    count = 0
    while True:
        if steps == 0:
            while i_buy < n_buy and buy[i_buy] <= last:
                i_buy += 1
            if i_buy == n_buy or buy[i_buy] + 1 >= n:
                break
            last = buy[i_buy]
            price = buy_ticks[last + 1]
            if float(cash) * float(a1) >= limit or float(price) * float(b1) >= limit:
                return -1
            new_steps = (cash * a1) // (price * b1)
            if new_steps <= 0:
                if cash > 0:
                    if skipped[0] == 0:
                        skipped[1] = cash
                        skipped[2] = price
                    skipped[0] += 1
                continue
            if float(new_steps) * float(step) >= limit:
                return -1
            if float(price) * float(new_steps) * float(max(a2, a3) + 1) >= limit or float(b2) + float(b3) >= limit:
                return -1
            base = price * new_steps
            cost = (base * a2 + b2 - 1) // b2
            fee = (base * a3 + b3 - 1) // b3
            cash = cash - cost - fee
            steps = new_steps
            side = 1
        else:
            while i_sell < n_sell and sell[i_sell] <= last:
                i_sell += 1
            if i_sell == n_sell or sell[i_sell] + 1 >= n:
                break
            last = sell[i_sell]
            price = sell_ticks[last + 1]
            if float(price) * float(steps) * float(max(a2, a3) + 1) >= limit or float(b2) + float(b3) >= limit:
                return -1
            base = price * steps
            proceeds = (base * a2) // b2
            fee = (base * a3 + b3 - 1) // b3
            cash = cash + proceeds - fee
            side = -1
        out[0, count] = last
        out[1, count] = side
        out[2, count] = price
        out[3, count] = steps * step
        out[4, count] = fee
        out[5, count] = cash
        count += 1
        if side < 0:
            steps = 0
    return count


if _numba is not None:
    _walk_numba = _numba.njit(cache=True, nogil=True)(_walk_kernel)
    _rsi_numba = _numba.njit(cache=True, nogil=True)(_rsi_kernel)
else:  # pragma: no cover
    _walk_numba = _rsi_numba = None

"""Turning a validated config into a search plan, checked end to end before any work starts. Pure, no Ray.

:func:`make_plan` loads the bars, expands the space, applies constraints and validates every
parameter set, so an empty grid, an unknown parameter, a bad value, windows the kernel cannot sum exactly on these
bars, a missing data file or a constraint that leaves nothing all fail here with one
:class:`~veloz_actors.ConfigError` / :class:`~veloz_actors.DataError` line naming the set, before a runtime is
started. :func:`execute_chunk` is what a Ray task runs: the kernel over one chunk.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError, InvalidInput, VelozError, quoted
from ..backtest.settings import BacktestSettings
from ..data.bars import BarSeries
from ..fixed import format_decimal
from ..strategies.params import MAX_WINDOW, VALID_STRATEGIES, WARM_UP, never_trading_warm_up, validate_params
from .config import METRICS, SearchConfig
from .space import MAX_GRID_SETS, ParameterSpace, Window, walk_forward_windows

__all__ = [
    "SearchPlan",
    "data_identity",
    "execute_chunk",
    "failed_metrics",
    "fingerprint",
    "is_failed",
    "make_plan",
    "slice_bars",
]

# a strategy's rule between two of its parameters (its error's words) -> the constraint that keeps a grid within it
_ORDER_HINTS = {"must be smaller than slow": "fast < slow", "must be below upper": "lower < upper"}
# search.json lists a parameter's values up to this many; a longer range is recorded by its ends and its count.
_FINGERPRINT_MAX_VALUES = 10_000


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """Everything a search needs, validated: bars, settings, the space, and (random search) the drawn sets.

    ``warnings`` are what the person should know before trusting the results (a random search that found fewer sets
    than its budget); the CLI prints them and ``search.json`` records them.
    """

    config: SearchConfig
    bars: BarSeries
    settings: BacktestSettings
    space: ParameterSpace
    sampled: tuple[dict[str, Any], ...] | None
    windows: tuple[Window, ...]
    warnings: tuple[str, ...] = ()

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.space.names

    def param_sets(self) -> Iterator[dict[str, Any]]:
        """The sets to evaluate, in a fixed order: the random sample, or the constrained grid lazily."""
        return iter(self.sampled) if self.sampled is not None else iter(self.space)

    def count(self) -> int:
        return len(self.sampled) if self.sampled is not None else len(self.space)


def make_plan(config: SearchConfig) -> SearchPlan:
    """Load and validate everything a search needs. Raises ``ConfigError``/``DataError`` (one line) on bad input."""
    from ..backtest.l2 import is_tick_capture
    from ._backend import load_bars

    values = config.parameter_values()
    space = ParameterSpace(values, config.constraints)
    if config.random is None and space.product_size > MAX_GRID_SETS:
        sizes = " x ".join(f"{name} {len(vals):,}" for name, vals in zip(space.names, space.values, strict=True))
        raise ConfigError(
            f"the grid has {space.product_size:,} combinations ({sizes}), more than the {MAX_GRID_SETS:,} a grid "
            "search runs: narrow it, or sample it with --random N (random: {budget: N} in a config)"
        )
    settings = config.settings.to_settings()
    if not config.data.is_file():
        raise ConfigError(f"data file not found: {config.data}")
    if is_tick_capture(config.data):
        raise ConfigError(
            f"{config.data} is a recorded WebSocket capture: a search runs on bars (OHLCV CSV or feather, Binance "
            "klines); backtest a capture with `veloz backtest --data FILE --strategy book_imbalance`"
        )
    bars = load_bars(config.data)
    if len(bars) < 2:
        raise ConfigError(f"{config.data}: {len(bars)} bars is too few to backtest")
    try:
        settings = settings.for_bars(bars, flags=False)  # the tick and the step every backtest of the search uses
    except InvalidInput as exc:
        raise ConfigError(f"settings: {exc}") from exc
    sampled = None
    warnings: list[str] = []
    if config.random is not None:
        drawn, complete = space.draw(config.random.budget, config.random.seed)
        sampled = tuple(drawn)
        count = len(sampled)
        if not complete and count < config.random.budget:
            constraints = "; ".join(config.constraints)
            if count == 0:
                raise ConfigError(
                    f"random search found no parameter set that satisfies the constraints ({constraints}) in its draws from the "
                    f"grid's {space.product_size:,} combinations; loosen the constraints or narrow the grid"
                )
            warnings.append(
                f"random search found only {count} of the {config.random.budget} parameter sets asked for: few of "
                f"the grid's {space.product_size:,} combinations satisfy the constraints ({constraints}); loosen the "
                "constraints or narrow the grid"
            )
        elif 0 < count < config.random.budget:
            warnings.append(
                f"random search: the space holds only {count} parameter sets (after constraints), fewer than the "
                f"budget of {config.random.budget}; all {count} are evaluated"
            )
    else:
        count = len(space)
    if count == 0:
        raise ConfigError(
            f"no parameter set satisfies the constraints ({'; '.join(config.constraints)}) "
            f"over the {space.product_size} combinations of the grid"
        )
    windows: tuple[Window, ...] = ()
    if config.walk_forward is not None:
        wf = config.walk_forward
        windows = tuple(walk_forward_windows(len(bars), wf.train_bars, wf.test_bars, wf.step))
    plan = SearchPlan(config, bars, settings, space, sampled, windows, tuple(warnings))
    validate_parameters(plan)
    never = _never_trading(plan)
    return plan if never is None else dataclasses.replace(plan, warnings=(*plan.warnings, never))


def _never_trading(plan: SearchPlan) -> str | None:
    """What to say when some of the grid's windows are too long to ever trade on the bars a set runs on (the data, or
    the shortest walk-forward window: indicators warm up inside each window): such a set shows 0 round trips, and
    its Sharpe of 0 ranks above every losing set unless ``min_trades`` says otherwise. ``None`` when none is."""
    name = WARM_UP.get(plan.config.strategy)
    if name is None or name not in plan.param_names:
        return None
    if plan.windows:
        wf = plan.config.walk_forward
        assert wf is not None
        bars, where = min((wf.train_bars, "each walk-forward training window"), (wf.test_bars, "each test window"))
    else:
        bars, where = len(plan.bars), "the data"
    never = never_trading_warm_up(bars)
    values = plan.space.values[plan.param_names.index(name)]
    if isinstance(values, range):
        too_long = len(values[bisect.bisect_left(values, never) :]) if values.step > 0 else 0
    else:
        too_long = sum(1 for value in values if isinstance(value, int) and value >= never)
    if not too_long:
        return None
    return (
        f"{too_long} of the grid's {len(values)} values of {name} are {never} or more, too long to trade on the "
        f"{bars} bars of {where}: a set with one never trades (0 round trips; set min_trades to rank such sets last)"
    )


def validate_parameters(plan: SearchPlan) -> None:
    """Check every parameter set with the strategies' own rules (names, types, fast < slow, ...) and the kernel's
    int64 bound on ``sma_cross`` windows over these bars, before any work.

    :mod:`veloz_actors.strategies.params` is the one authority on what a strategy accepts (the kernel asks it too), so
    the search asks it rather than keeping a second list that could drift. Checking is pure Python over the sets
    (about 2 us each, 20 s for a grid of 10 million), no backtest runs; so a set that reaches a worker is one the kernel
    takes, and a search never stops halfway on a set it could have refused at the start.
    """
    strategy = plan.config.strategy
    if strategy not in VALID_STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(VALID_STRATEGIES)}")
    expected = VALID_STRATEGIES[strategy]
    unknown = [name for name in plan.param_names if name not in expected]
    if unknown:
        raise ConfigError(
            f"{strategy} has no parameter {', '.join(map(repr, unknown))}; its parameters are {', '.join(expected)}"
        )
    missing = [name for name in expected if name not in plan.param_names]
    if missing:
        raise ConfigError(f"the grid does not give {strategy}'s parameter(s) {', '.join(missing)}")
    from ._backend import kernel

    bounds = _window_bounds(plan)
    for params in plan.param_sets():
        try:
            checked = validate_params(strategy, params)
        except InvalidInput as exc:
            hint = next(
                (f"; add a constraint such as '{rule}'" for text, rule in _ORDER_HINTS.items() if text in str(exc)), ""
            )
            raise ConfigError(f"parameter set {_describe(params)}: {exc}{hint}") from exc
        for where, bars, units in bounds:
            fast, slow = int(checked["fast"]), int(checked["slow"])
            if slow < bars:  # a longer window never signals, so the kernel never sums it
                try:
                    kernel.check_sma_windows(units, fast, slow)
                except InvalidInput as exc:
                    raise ConfigError(f"parameter set {_describe(params)}{where}: {exc}") from exc


def _window_bounds(plan: SearchPlan) -> list[tuple[str, int, int]]:
    """``(where, bars, max close units)`` of each series the kernel will run ``sma_cross`` on (the data, or every
    walk-forward window) on which the grid's largest windows could overflow its int64 cross test; empty when none can
    (the usual case: then no set needs the check)."""
    from ._backend import kernel

    if plan.config.strategy != "sma_cross":
        return []
    if plan.windows:
        series = [
            (f" (walk-forward fold {w.fold}'s {part} window)", slice_bars(plan.bars, start, stop))
            for w in plan.windows
            for part, start, stop in (("training", w.train_start, w.train_stop), ("test", w.train_stop, w.test_stop))
        ]
    else:
        series = [("", plan.bars)]
    # a window above MAX_WINDOW is the strategy rules' error, found by the loop over the sets
    largest = [min(_largest(plan.space.values[plan.space.names.index(n)]), MAX_WINDOW) for n in ("fast", "slow")]
    bounds = []
    for where, bars in series:
        units = kernel.max_close_units(bars.data["close"])
        try:
            kernel.check_sma_windows(units, *largest)
        except InvalidInput:
            bounds.append((where, len(bars), units))
    return bounds


def _largest(values: Sequence[Any]) -> int:
    if isinstance(values, range):
        return max(values[0], values[-1])
    return max((v for v in values if isinstance(v, int)), default=0)


def execute_chunk(prepared: Any, param_sets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run the kernel over one chunk; return one metrics dict per set (exactly the result columns, in order).

    A set the kernel refuses on its own trades (a fill or a cash beyond what VeloZ represents: only its trades show
    it, so it cannot be refused before work) does not stop the search: its dict is :func:`failed_metrics`' (NaN
    metrics, ranked last) with ``"error"`` naming the set, and the other sets of the chunk are computed.
    """
    from .._allocator import tune_allocator
    from ._backend import kernel

    tune_allocator()  # a fresh worker would otherwise page-fault through every array (see _allocator)

    sets = [dict(p) for p in param_sets]
    try:
        results = kernel.run_many(prepared, sets)
    except VelozError:  # one set's trades went beyond what VeloZ represents: run the sets alone to find it
        results = [_alone(kernel, prepared, params) for params in sets]
    if len(results) != len(param_sets):
        raise InvalidInput(f"kernel returned {len(results)} results for {len(param_sets)} parameter sets")
    return [result if "error" in result else {m: _metric(result[m]) for m in METRICS} for result in results]


def failed_metrics(error: str) -> dict[str, Any]:
    """The row of a set that could not be computed: NaN metrics (:func:`~veloz_actors.search.store.best_first`
    ranks NaN last), no round trips, and ``error`` (given to the driver for its warning, never written to a file)."""
    nan = float("nan")
    return {**{m: nan for m in METRICS}, "n_trades": 0, "error": error}


def is_failed(row: Mapping[str, Any]) -> bool:
    """Whether a result row is one of :func:`failed_metrics` (a computed set's final equity is never NaN)."""
    return math.isnan(row["final_equity"])


def _alone(kernel: Any, prepared: Any, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return kernel.run_many(prepared, [params])[0]
    except VelozError as exc:
        return failed_metrics(f"parameter set {_describe(params)}: {exc}")


def _metric(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def slice_bars(bars: BarSeries, start: int, stop: int) -> BarSeries:
    """Bars ``[start, stop)`` as their own series (a view, no copy), with the gaps that fall inside."""
    data = bars.data[start:stop]
    if len(data) == 0:
        return dataclasses.replace(bars, data=data, gaps=())
    first, last = int(data["open_time"][0]), int(data["open_time"][-1])
    gaps = tuple(g for g in bars.gaps if first <= g.after_open_time < last)
    return dataclasses.replace(bars, data=data, gaps=gaps)


def fingerprint(config: SearchConfig, bars: BarSeries | None = None) -> dict[str, Any]:
    """What results depend on, recorded in ``search.json`` so ``--resume`` refuses a different search.

    With ``bars`` (the series loaded from ``config.data``), the data file's contents are recorded too
    (:func:`data_identity`), so a file changed in place under the same path is refused as different data.
    """
    settings = config.settings.to_settings()
    identity = {} if bars is None else {"data_file": data_identity(config.data, bars)}
    return {
        "data": str(config.data),
        **identity,
        "strategy": config.strategy,
        "settings": {
            "initial_cash": format_decimal(settings.initial_cash),
            "fee_rate": format_decimal(settings.fee_rate),
            "slippage_rate": format_decimal(settings.slippage_rate),
            "qty_step": None if settings.qty_step is None else format_decimal(settings.qty_step),
            "price_tick": None if settings.price_tick is None else format_decimal(settings.price_tick),
        },
        "grid": {name: _fingerprint_values(values) for name, values in config.parameter_values().items()},
        "constraints": list(config.constraints),
        "random": None if config.random is None else config.random.model_dump(),
    }


def data_identity(path: Path, bars: BarSeries) -> dict[str, Any]:
    """The data file's SHA-256 and size, with its bars' count and first and last open times (what a person reads when
    a resume is refused). Hashing costs about 5 ms per MB (13 ms for the 2.9 MB, 140k-bar 5m file)."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    opens = bars.data["open_time"]
    return {
        "sha256": digest,
        "bytes": path.stat().st_size,
        "bars": len(bars),
        "first_open": _utc(int(opens[0])),
        "last_open": _utc(int(opens[-1])),
    }


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fingerprint_values(values: Sequence[Any]) -> list[Any] | dict[str, Any]:
    if isinstance(values, tuple) or len(values) <= _FINGERPRINT_MAX_VALUES:
        return list(values)
    return {"first": values[0], "last": values[-1], "count": len(values)}


def _describe(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={quoted(v) if isinstance(v, int) else v}" for k, v in params.items())

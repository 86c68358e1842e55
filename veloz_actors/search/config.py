"""Search configuration: what a person writes in ``configs/search/*.yaml`` or types as flags, validated by pydantic.

A config names the data file, the strategy, the parameter space (lists and inclusive ranges), constraints between
parameters (``fast < slow``), the metric to rank by, the backtest settings, and optionally a random-search budget or a
walk-forward schedule::

    data: ../shared/data/ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz
    strategy: sma_cross
    grid:
      fast: {start: 5, stop: 20, step: 1}     # inclusive stop; also "5:20:1" or [5, 10, 15]
      slow: "30:60:2"
    constraints: ["fast < slow"]
    metric: sharpe                            # ranked descending (max_drawdown ascending) unless `mode` says otherwise
    min_trades: 10                            # sets with fewer round trips never rank above one with enough (default 0)
    settings: {initial_cash: "10000", fee_rate: "0.001", slippage_bps: 0}
    report_params: fast,slow                  # report.html's heatmap axes (default: the first two varying params)
    report_curves: 5                          # equity curves of the best sets drawn in report.html (0..20)

Everything here is pure (no Ray): it is shared by the CLI, the Python API and the job a cluster runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .._exceptions import ConfigError
from ..backtest.settings import BacktestSettings, parse_costs
from ..config import load_yaml
from ..fixed import parse_decimal
from .space import MAX_GRID_SETS, FloatSteps

__all__ = [
    "MAX_REPORT_CURVES",
    "METRICS",
    "RandomSearch",
    "Range",
    "SearchConfig",
    "SettingsConfig",
    "WalkForward",
    "load_config",
    "parse_grid_flag",
]

# The metric columns of every result row, in the order results.csv writes them.
METRICS = ("final_equity", "total_return", "max_drawdown", "n_trades", "win_rate", "sharpe")
# Metrics where smaller is better when ranking; every other metric is ranked largest first.
_MINIMISED = frozenset({"max_drawdown"})
# The most equity curves a search report re-runs and draws (each is one backtest in the driver).
MAX_REPORT_CURVES = 20

Scalar = int | float | str
_RANGE_TEXT = re.compile(r"^\s*([^:]+):([^:]+):([^:]+)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The most values one range may hold (a random search samples such a range without expanding it).
_MAX_RANGE_VALUES = 10**12


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """An inclusive arithmetic range of parameter values: ``start, start + step, ... <= stop``."""

    start: int | float
    stop: int | float
    step: int | float = 1

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not all(isinstance(v, int) or math.isfinite(v) for v in (self.start, self.stop, self.step)):
            raise ValueError(f"start, stop and step must be finite numbers, got {self.start}:{self.stop}:{self.step}")
        if self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.stop < self.start:
            raise ValueError(f"stop {self.stop} is below start {self.start}: the range is empty")
        if not self._is_int() and self.step < max(abs(self.start), abs(self.stop)) * 1e-11:
            raise ValueError(f"step {self.step} is too fine for values up to {max(abs(self.start), abs(self.stop))}")
        if self.count() > _MAX_RANGE_VALUES:
            raise ValueError(
                f"{self.start}:{self.stop}:{self.step} has {self.count():,} values, more than {_MAX_RANGE_VALUES:,}"
            )
        return self

    def _is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.start, self.stop, self.step))

    def count(self) -> int:
        """How many values the range holds (counted, not expanded)."""
        if self._is_int():
            return (int(self.stop) - int(self.start)) // int(self.step) + 1
        return int((self.stop - self.start) / self.step + 1e-9) + 1

    def values(self) -> Sequence[int | float]:
        """The values, computed when read (a ``range``, or floats rounded to 12 significant digits so 0.1 + 0.2
        does not leak in): a huge range costs nothing until a search reads it."""
        if self._is_int():
            return range(int(self.start), int(self.stop) + 1, int(self.step))
        return FloatSteps(self.start, self.step, self.count())


class SettingsConfig(_Strict):
    """Backtest settings as a person writes them (decimal strings or numbers); see :class:`BacktestSettings`."""

    initial_cash: str | int | float = "10000"
    fee_rate: str | float | int = "0.001"
    slippage_bps: str | float | int = 0
    qty_step: str | float | None = None  # None: 0.00001, or coarser when the price tick needs it (backtest.settings)
    price_tick: str | float | None = None  # None: the data's own tick

    def to_settings(self) -> BacktestSettings:
        """The settings in 1e-8 units, checked as the backtest checks them; errors name the key and the value given.

        Raises :class:`~veloz_actors.InvalidInput`: a fee rate of 1 or more, slippage of 10,000 bps or more or finer
        than 1e-4 bps, a value that is not a non-negative decimal with at most 8 places.
        """
        fee_rate, slippage_rate = parse_costs(self.fee_rate, self.slippage_bps, "settings.")
        return BacktestSettings(
            initial_cash=parse_decimal(_text(self.initial_cash), "settings.initial_cash", allow_zero=False),
            fee_rate=fee_rate,
            slippage_rate=slippage_rate,
            qty_step=None
            if self.qty_step is None
            else parse_decimal(_text(self.qty_step), "settings.qty_step", allow_zero=False),
            price_tick=None
            if self.price_tick is None
            else parse_decimal(_text(self.price_tick), "settings.price_tick", allow_zero=False),
        )


class RandomSearch(_Strict):
    """Sample ``budget`` distinct parameter sets from the space (after constraints), reproducibly from ``seed``."""

    budget: int = Field(gt=0, le=MAX_GRID_SETS)
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed


class WalkForward(_Strict):
    """Optimise on ``train_bars``, evaluate the winner on the next ``test_bars``, move on by ``step_bars``, repeat."""

    train_bars: int = Field(gt=1)
    test_bars: int = Field(gt=1)
    step_bars: int | None = Field(default=None, gt=0)

    @property
    def step(self) -> int:
        return self.step_bars if self.step_bars is not None else self.test_bars


class SearchConfig(_Strict):
    """One parameter search, fully described. Build it with :func:`load_config` or ``SearchConfig.model_validate``."""

    data: Path
    strategy: str
    grid: dict[str, Range | list[Scalar]]
    constraints: list[str] = Field(default_factory=list)
    metric: str = "sharpe"
    mode: Literal["max", "min"] | None = None
    # a set with fewer round trips ranks below every set with enough (kept in the results, never the best): a set that
    # never trades has no drawdown and a Sharpe of 0, which would otherwise beat every real strategy on those metrics
    min_trades: int = Field(default=0, ge=0)
    settings: SettingsConfig = Field(default_factory=SettingsConfig)
    random: RandomSearch | None = None
    walk_forward: WalkForward | None = None
    chunk_size: int | None = Field(default=None, gt=0)
    max_in_flight: int | None = Field(default=None, gt=0)
    # report.html (written beside the results): the heatmap's one or two parameters (default: the first two that vary)
    # and how many of the best sets get their equity curve drawn (each is one more backtest after the search).
    report_params: list[str] | None = None
    report_curves: int = Field(default=5, ge=0, le=MAX_REPORT_CURVES)

    @field_validator("report_params", mode="before")
    @classmethod
    def _report_params_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value

    @model_validator(mode="after")
    def _report_params_in_grid(self) -> SearchConfig:
        names = self.report_params
        if names is None:
            return self
        if not 1 <= len(names) <= 2 or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"report_params: expected one or two distinct parameter names (a,b), got {names}")
        unknown = [name for name in names if name not in self.grid]
        if unknown:
            raise ValueError(
                f"report_params: {', '.join(map(repr, unknown))} is not a parameter of the grid; "
                f"the grid's parameters are {', '.join(self.grid)}"
            )
        return self

    @field_validator("grid", mode="before")
    @classmethod
    def _ranges_from_text(cls, grid: Any) -> Any:
        if not isinstance(grid, dict):
            return grid
        for name, value in grid.items():
            _refuse_booleans(name, value)
        return {name: _parse_values(value) for name, value in grid.items()}

    @field_validator("grid")
    @classmethod
    def _grid_not_empty(cls, grid: dict[str, Range | list[Scalar]]) -> dict[str, Range | list[Scalar]]:
        if not grid:
            raise ValueError("the grid is empty: give at least one parameter, e.g. fast: 5:20:1")
        for name, values in grid.items():
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a parameter name")
            if isinstance(values, list) and not values:
                raise ValueError(f"parameter {name!r} has no values")
        return grid

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric

    @property
    def maximise(self) -> bool:
        """True when a larger ``metric`` ranks higher."""
        if self.mode is not None:
            return self.mode == "max"
        return self.metric not in _MINIMISED

    def parameter_values(self) -> dict[str, Sequence[Scalar]]:
        """Each parameter's candidate values, in the order the config gives them (duplicates removed).

        A range's values stay a lazy sequence (its values are distinct by construction), so a huge one is never
        expanded here.
        """
        out: dict[str, Sequence[Scalar]] = {}
        for name, values in self.grid.items():
            if isinstance(values, Range):
                out[name] = values.values()
                continue
            seq = tuple(values)
            if any(isinstance(v, float) for v in seq) and all(isinstance(v, int | float) for v in seq):
                seq = tuple(float(v) for v in seq)  # one type per column, so results.csv reads back exactly
            out[name] = tuple(dict.fromkeys(seq))
        return out


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else repr(value)


def _refuse_booleans(name: str, value: Any) -> None:
    """YAML reads true/false/yes/no/on/off as booleans, which pydantic would quietly take as 1 and 0."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool):
            raise ValueError(
                f"parameter {name!r}: {str(item).lower()} is a yes/no value, not a parameter value; "
                "give numbers (or quote text)"
            )


def _scalar(text: str) -> Scalar:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_values(value: Any) -> Any:
    """``"5:20:1"`` -> Range, ``"5,10,15"`` -> list, a single scalar -> a one-element list; others unchanged."""
    if isinstance(value, str):
        match = _RANGE_TEXT.match(value)
        if match:
            start, stop, step = (_scalar(part) for part in match.groups())
            return {"start": start, "stop": stop, "step": step}
        if ":" in value:
            raise ValueError(f"{value!r}: expected START:STOP:STEP (stop inclusive) or V1,V2,...")
        return [_scalar(part) for part in value.split(",") if part.strip()]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return value


def parse_grid_flag(text: str) -> tuple[str, Range | list[Scalar]]:
    """Parse one ``--grid`` flag: ``NAME=START:STOP:STEP`` (stop inclusive) or ``NAME=V1,V2,...``."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name or not spec.strip():
        raise ConfigError(f"--grid {text!r}: expected NAME=START:STOP:STEP or NAME=V1,V2,...")
    try:
        parsed = _parse_values(spec)
        return name, Range.model_validate(parsed) if isinstance(parsed, dict) else parsed
    except ValidationError as exc:
        raise ConfigError(f"--grid {text!r}: {_first_error(exc)}") from exc
    except ValueError as exc:
        raise ConfigError(f"--grid {text!r}: expected NAME=START:STOP:STEP (stop inclusive) or NAME=V1,V2,...") from exc


def load_config(
    source: str | Path | dict[str, Any] | SearchConfig | None,
    *,
    overrides: dict[str, Any] | None = None,
    base_dir: Path | None = None,
) -> SearchConfig:
    """Read and validate a search config from a YAML file, a dict or a ready model; apply flag ``overrides``.

    ``overrides`` replace top-level keys, except ``grid`` and ``random``, whose keys are merged into the config's (a
    ``random`` override without a budget, a seed alone, needs the config's random section); a ``metric`` other than
    the config's drops the config's ``mode``, which was meant for its own metric. A relative
    ``data`` path is looked up from the current directory, then from the config file's directory.

    Raises :class:`ConfigError` with one readable line for anything invalid.
    """
    raw: dict[str, Any]
    if isinstance(source, SearchConfig):
        raw = source.model_dump(exclude_unset=True)
    elif isinstance(source, dict):
        raw = dict(source)
    elif source is None:
        raw = {}
    else:
        path = Path(source)
        raw = load_yaml(path)
        base_dir = base_dir or path.resolve().parent
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "random" and not raw.get("random") and "budget" not in value:
            raise ConfigError("--seed without a random search: add --random N (or a random: section with its budget)")
        if key in ("grid", "random"):
            raw[key] = {**(raw.get(key) or {}), **value}
        else:
            if key == "metric" and value != raw.get("metric", "sharpe") and "mode" not in (overrides or {}):
                # the config's mode was written for its own metric: another metric ranks in its own direction
                # (``mode: min`` for a drawdown must not rank ``--metric sharpe`` lowest first)
                raw.pop("mode", None)
            raw[key] = value
    if "grid" in raw and raw["grid"] is None:
        raw["grid"] = {}
    try:
        config = SearchConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from exc
    return config.model_copy(update={"data": _resolve_data(config.data, base_dir)})


def _resolve_data(data: Path, base_dir: Path | None) -> Path:
    data = data.expanduser()
    if data.is_absolute():
        return data
    if data.exists() or base_dir is None:
        return data.resolve()
    beside = (base_dir / data).resolve()
    return beside if beside.exists() else data.resolve()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"] if not str(part).startswith(("function-", "list[", "union[")))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"missing required key {where!r} in the search config"
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r} in the search config"
    return f"{where}: {message}" if where else message

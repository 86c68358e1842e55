"""The parameter space: grid expansion, constraints, random sampling and walk-forward windows. Pure, no Ray.

A :class:`ParameterSpace` is the cartesian product of each parameter's values, filtered by constraints such as
``fast < slow``. Parameter sets come out in a fixed order (the product order of the config), so a search, its resume
and a random sample with the same seed always see the same sets.

>>> space = ParameterSpace({"fast": (5, 10), "slow": (8, 20)}, ["fast < slow"])
>>> list(space)
[{'fast': 5, 'slow': 8}, {'fast': 5, 'slow': 20}, {'fast': 10, 'slow': 20}]
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from .._exceptions import ConfigError

__all__ = [
    "MAX_GRID_SETS",
    "Constraint",
    "FloatSteps",
    "ParameterSpace",
    "Window",
    "parameter_key",
    "walk_forward_windows",
]

Value = int | float | str
ParamSet = dict[str, Value]

# The most combinations a grid search enumerates (counting them, checking constraints and running them take minutes
# beyond this); a larger space can still be sampled with a random search, which never expands it.
MAX_GRID_SETS = 10_000_000
# Random draws per wanted set before a random search gives up looking (constraints that leave few valid sets).
_DRAWS_PER_SET = 100

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_CONSTRAINT = re.compile(
    r"^\s*([A-Za-z_]\w*|[-+]?\d+(?:\.\d+)?)\s*(<=|>=|==|!=|<|>)\s*([A-Za-z_]\w*|[-+]?\d+(?:\.\d+)?)\s*$"
)


@dataclass(frozen=True, slots=True)
class Constraint:
    """``left OP right`` where each side is a parameter name or a number, e.g. ``fast < slow`` or ``period >= 2``."""

    text: str
    left: str | float
    op: str
    right: str | float

    @classmethod
    def parse(cls, text: str, names: Sequence[str]) -> Constraint:
        match = _CONSTRAINT.match(text)
        if match is None:
            raise ConfigError(
                f"constraint {text!r}: expected NAME OP NAME or NAME OP NUMBER with OP one of < <= > >= == !="
            )
        left, op, right = (_operand(match.group(1)), match.group(2), _operand(match.group(3)))
        for side in (left, right):
            if isinstance(side, str) and side not in names:
                raise ConfigError(f"constraint {text!r}: {side!r} is not a parameter of the grid ({', '.join(names)})")
        if not isinstance(left, str) and not isinstance(right, str):
            raise ConfigError(f"constraint {text!r}: compares two numbers; name at least one parameter")
        return cls(text=text.strip(), left=left, op=op, right=right)

    def names(self) -> set[str]:
        """The parameters the constraint reads."""
        return {side for side in (self.left, self.right) if isinstance(side, str)}

    def holds(self, params: Mapping[str, Value]) -> bool:
        left = params[self.left] if isinstance(self.left, str) else self.left
        right = params[self.right] if isinstance(self.right, str) else self.right
        try:
            return _OPERATORS[self.op](left, right)
        except TypeError as exc:
            raise ConfigError(f"constraint {self.text!r}: cannot compare {left!r} with {right!r}") from exc


def _operand(text: str) -> str | float:
    if text[0].isalpha() or text[0] == "_":
        return text
    number = float(text)
    return int(number) if number.is_integer() else number


class FloatSteps(Sequence[float]):
    """``length`` floats ``start, start + step, ...``, each rounded to 12 significant digits, computed when read.

    A float range's values without materialising them (an int range is a plain ``range``).

    >>> FloatSteps(0.1, 0.1, 3)[:]
    (0.1, 0.2, 0.3)
    """

    __slots__ = ("length", "start", "step")

    def __init__(self, start: float, step: float, length: int) -> None:
        self.start = start
        self.step = step
        self.length = length

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[float, ...]: ...

    def __getitem__(self, index: int | slice) -> float | tuple[float, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self.length)))
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(index)
        return float(f"{self.start + index * self.step:.12g}")

    def __contains__(self, value: object) -> bool:
        """Whether ``value`` is one of the steps, found by its index (a ``Sequence`` would walk every step)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        index = round((value - self.start) / self.step)
        return 0 <= index < self.length and self[index] == value

    def __repr__(self) -> str:
        return f"FloatSteps(start={self.start!r}, step={self.step!r}, length={self.length})"


class ParameterSpace:
    """Every parameter set of a grid that satisfies the constraints, in product order; iterable, never materialised."""

    def __init__(self, values: Mapping[str, Sequence[Value]], constraints: Sequence[str] = ()) -> None:
        if not values:
            raise ConfigError("the grid is empty: give at least one parameter")
        self.names: tuple[str, ...] = tuple(values)
        self.values: tuple[Sequence[Value], ...] = tuple(
            v if isinstance(v, tuple | range | FloatSteps) else tuple(v) for v in values.values()
        )
        for name, vals in zip(self.names, self.values, strict=True):
            if not vals:
                raise ConfigError(f"parameter {name!r} has no values")
        self.constraints = tuple(Constraint.parse(text, self.names) for text in constraints)
        self._size: int | None = None

    @property
    def product_size(self) -> int:
        """Number of combinations before constraints (counted, never enumerated)."""
        return math.prod(len(v) for v in self.values)

    def __iter__(self) -> Iterator[ParamSet]:
        for combo in itertools.product(*self._pruned_values()):
            params = dict(zip(self.names, combo, strict=True))
            if all(c.holds(params) for c in self.constraints):
                yield params

    def __len__(self) -> int:
        if self._size is None:
            self._size = self.product_size if not self.constraints else sum(1 for _ in self)
        return self._size

    def _pruned_values(self) -> tuple[Sequence[Value], ...]:
        """Each parameter's values without those a one-parameter constraint (``fast == 500``) rejects: the same sets
        in the same order, without walking the combinations that could never pass."""
        pruned: list[Sequence[Value]] = []
        for name, vals in zip(self.names, self.values, strict=True):
            own = [c for c in self.constraints if c.names() == {name}]
            if own and len(vals) <= MAX_GRID_SETS:  # a longer one is never enumerated, so never pruned either
                vals = tuple(v for v in vals if all(c.holds({name: v}) for c in own))
            pruned.append(vals)
        return tuple(pruned)

    def sample(self, budget: int, seed: int) -> list[ParamSet]:
        """``budget`` distinct sets drawn uniformly from the constrained space (all of it if smaller), reproducibly.

        Indices into the product are drawn with a seeded generator and decoded mixed-radix, so a huge space is never
        expanded; the draws come back in product order. See :meth:`draw` for when fewer than ``budget`` come back.
        """
        return self.draw(budget, seed)[0]

    def draw(self, budget: int, seed: int) -> tuple[list[ParamSet], bool]:
        """:meth:`sample`'s sets, and whether every valid set was looked at to pick them.

        When the draws are complete, fewer than ``budget`` sets means the space holds no more. When they are not (a
        space above :data:`MAX_GRID_SETS` whose constraints reject almost every draw), the search gave up after
        ``100 x budget`` draws and there may be more valid sets it did not find. A space small enough to enumerate
        is enumerated when the draws fall short, so the shortfall is never an accident of the draws there.
        """
        total = self.product_size
        if total <= min(max(4 * budget, 100_000), MAX_GRID_SETS):
            return self._pick(budget, seed), True
        rng = np.random.default_rng(seed)
        chosen: dict[int, ParamSet] = {}
        attempts = 0
        while len(chosen) < budget and attempts < _DRAWS_PER_SET * budget:
            attempts += 1
            index = self._random_index(rng, total)
            if index in chosen:
                continue
            params = self._decode(index)
            if all(c.holds(params) for c in self.constraints):
                chosen[index] = params
        if len(chosen) < budget and math.prod(len(v) for v in self._pruned_values()) <= MAX_GRID_SETS:
            return self._pick(budget, seed), True
        return [chosen[i] for i in sorted(chosen)], False

    def _pick(self, budget: int, seed: int) -> list[ParamSet]:
        allowed = list(self)
        if budget >= len(allowed):
            return allowed
        picks = np.random.default_rng(seed).choice(len(allowed), size=budget, replace=False)
        return [allowed[i] for i in sorted(picks.tolist())]

    def _random_index(self, rng: np.random.Generator, total: int) -> int:
        if total < 2**63:
            return int(rng.integers(total))
        index = 0  # beyond int64: one uniform digit per parameter is the same uniform index
        for vals in self.values:
            index = index * len(vals) + int(rng.integers(len(vals)))
        return index

    def value_indices(self, name: str, column: Sequence[Value] | np.ndarray) -> np.ndarray:
        """Each of ``column``'s values as its index among ``name``'s values: a set's place in the product order is
        these indices, first parameter first (how :func:`~veloz_actors.search.store.best_first` breaks ties).

        >>> ParameterSpace({"fast": (10, 5)}).value_indices("fast", [5, 10]).tolist()
        [1, 0]
        """
        values = self.values[self.names.index(name)]
        if isinstance(values, range):
            return (np.asarray(column, dtype=np.int64) - values.start) // values.step
        if isinstance(values, FloatSteps):
            return np.rint((np.asarray(column, dtype=np.float64) - values.start) / values.step).astype(np.int64)
        index = {value: i for i, value in enumerate(values)}
        return np.fromiter((index[value] for value in column), dtype=np.int64, count=len(column))

    def _decode(self, index: int) -> ParamSet:
        out: list[Value] = []
        for vals in reversed(self.values):
            index, digit = divmod(index, len(vals))
            out.append(vals[digit])
        return dict(zip(self.names, reversed(out), strict=True))


def parameter_key(params: Mapping[str, Value], names: Sequence[str]) -> tuple[str, ...]:
    """A parameter set as the exact text results.csv stores, so a resumed search recognises what it has done."""
    return tuple(format_value(params[name]) for name in names)


def format_value(value: object) -> str:
    """Exact, round-trippable text for a CSV cell (``repr`` for floats, so 0.1 stays 0.1)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward fold: bars ``[train_start, train_stop)`` to optimise on, ``[train_stop, test_stop)`` to test."""

    fold: int
    train_start: int
    train_stop: int
    test_stop: int


def walk_forward_windows(n_bars: int, train_bars: int, test_bars: int, step_bars: int) -> list[Window]:
    """Rolling folds over ``n_bars``; the last fold's test window must fit entirely."""
    if train_bars + test_bars > n_bars:
        raise ConfigError(
            f"walk-forward needs train_bars + test_bars <= the {n_bars} bars of the data, got {train_bars} + {test_bars}"
        )
    windows: list[Window] = []
    start = 0
    while start + train_bars + test_bars <= n_bars:
        windows.append(Window(len(windows), start, start + train_bars, start + train_bars + test_bars))
        start += step_bars
    return windows

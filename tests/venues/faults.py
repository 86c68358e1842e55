"""An injected venue failure for tests: one method of one object raises once, from inside the real code path."""

from __future__ import annotations

from typing import Any


def raise_once(obj: Any, method: str) -> None:
    """The next call of ``obj.method`` raises ``RuntimeError`` before doing anything; later calls work again. The
    object's class is swapped for a subclass of the same layout (``__slots__`` classes included)."""
    base = type(obj)

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.__class__ = base
        raise RuntimeError(f"injected: {base.__name__}.{method} failed")

    obj.__class__ = type(f"Failing{base.__name__}", (base,), {"__slots__": (), method: failing})

"""An injected venue failure for tests: one method of one object raises once, from inside the real code path."""

from __future__ import annotations

from typing import Any


def raise_once(obj: Any, method: str) -> None:
    """The next call of ``obj.method`` raises ``RuntimeError`` before doing anything; later calls work again. The
    object's class is swapped for a subclass of the same layout (``__slots__`` classes included)."""
    raise_on_call(obj, method, 1)


def raise_on_call(obj: Any, method: str, call: int, *, after: bool = False) -> None:
    """The ``call``-th call of ``obj.method`` from now raises ``RuntimeError``: before doing anything, or with
    ``after`` once it has done its work (the object stays consistent, its caller is cut off there). The calls before
    and after it work. The object's class is swapped for a subclass of the same layout (``__slots__`` included)."""
    base = type(obj)
    real = getattr(base, method)
    calls = 0

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < call:
            return real(self, *args, **kwargs)
        self.__class__ = base
        if after:
            real(self, *args, **kwargs)
        raise RuntimeError(f"injected: {base.__name__}.{method} failed (call {call})")

    obj.__class__ = type(f"Failing{base.__name__}", (base,), {"__slots__": (), method: failing})

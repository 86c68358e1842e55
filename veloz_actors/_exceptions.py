"""The one exception hierarchy of VeloZ.

Expected business outcomes (a risk rejection, a duplicate client order id, an order that expired) are *events*, not
exceptions. Exceptions are for input that cannot become a message, for broken invariants and for infrastructure
failures::

    VelozError
    ├── InvalidInput            bad input from outside: a malformed command, a NaN price, an unknown symbol
    │   └── ConfigError         a config file or config value that does not validate
    ├── DataError               a market-data file or payload that is corrupt (unsorted, duplicate, negative, ...)
    ├── SequenceGap             an L2 book saw an update-id gap and must be resynchronised from a snapshot
    ├── IllegalTransition       an order state transition the transition table forbids (a bug, raised at once)
    ├── JournalError            a journal that cannot be written, read, or does not match its engine
    ├── VenueFailed             a venue's call raised part-way, with the reports it had made (venues.base.guarded)
    └── EngineUnavailable       the engine (local or on a cluster) cannot be reached or is not running
        └── EngineStopped       it has stopped for good (`veloz stop`, another handle's shutdown): no use waiting

Foreign errors (OSError, orjson.JSONDecodeError, pydantic.ValidationError, Ray errors) are translated once, at the
boundary that sees them, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "DataError",
    "EngineStopped",
    "EngineUnavailable",
    "IllegalTransition",
    "InvalidInput",
    "JournalError",
    "SequenceGap",
    "VelozError",
    "VenueFailed",
    "quoted",
]

QUOTED_MAX = 40  # characters of a bad value an error message repeats


def quoted(value: object, limit: int = QUOTED_MAX) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with the full length said: a bad input of a
    megabyte must not come back as a megabyte of error. An integer too long to show (Python refuses to write one past
    4,300 digits) is told by its size."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # 4 bits > 1 digit: longer than ``limit`` digits
        return f"an integer of about {round(abs(value).bit_length() * 0.30103):,} digits"
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str | bytes) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({size})"


class VelozError(Exception):
    """Base class of every error VeloZ raises on purpose."""


class InvalidInput(VelozError, ValueError):
    """Input from outside (a person, a file, an HTTP body) that cannot become a message."""


class ConfigError(InvalidInput):
    """A configuration file or value that does not validate."""


class DataError(VelozError, ValueError):
    """Market data that is corrupt: unsorted or duplicate times, non-positive prices, high below low, bad JSON."""


class SequenceGap(VelozError):
    """An order book missed updates; it must be rebuilt from a fresh snapshot before it can be trusted."""

    def __init__(self, symbol: str, expected: int, got: int) -> None:
        super().__init__(f"{symbol}: depth update gap, expected update id {expected}, got {got}; resync needed")
        self.symbol = symbol
        self.expected = expected
        self.got = got


class IllegalTransition(VelozError):
    """An order state change that the transition table does not allow."""


class JournalError(VelozError):
    """A journal that cannot be written or read, or that belongs to a different engine configuration."""


class VenueFailed(VelozError):
    """A venue's call raised part-way, after it had made ``reports``: fills among them moved quantity at the venue
    (a maker's order is smaller there), facts the kernel must book. The venue raises it ``from`` the exception;
    :func:`~veloz_actors.venues.base.guarded` delivers the reports before it says that exception."""

    def __init__(self, reports: list[Any]) -> None:
        super().__init__(f"a venue call failed after {len(reports)} reports")
        self.reports = reports


class EngineUnavailable(VelozError):
    """The engine cannot be reached, or is not running at the given address."""


class EngineStopped(EngineUnavailable):
    """The engine has stopped for good (``veloz stop``, another handle's shutdown, the end of the process that owned
    it): it never comes back, so a caller that waits out an :class:`EngineUnavailable` (an actor Ray is restarting)
    stops waiting. ``veloz attach`` ends on it with one ``error:`` line (exit status 2)::

        try:
            engine.balances()
        except vz.EngineStopped:
            engine = vz.connect(address)  # start or connect another
    """

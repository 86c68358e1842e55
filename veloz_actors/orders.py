"""One way to build a :class:`~veloz_actors.messages.PlaceOrder`, and one client-order-id rule, for every client.

The stdio protocol, the Python handle (``EngineHandle.place_order``) and the strategy contexts build their orders with
:func:`build_place_order`, so an order means the same wherever it comes from:

* **client order ids** are 1 to 36 characters of letters, digits and ``- _ . :`` (:func:`check_client_order_id`).
  A given id is checked; a missing one comes from a :class:`ClientOrderIds`.
* **new ids never cost a round trip**: :class:`ClientOrderIds` counts ``<prefix>-1``, ``<prefix>-2``, ... locally.
  A client of a long-lived engine takes a session prefix (:meth:`ClientOrderIds.for_session`: its kind, the
  microsecond it started and its process id, in base 36), so a new session's ids never meet those an earlier session
  left in the engine's journal, nor those of a session another process started in the same microsecond (two live
  strategies of one type, two scripts); a backtest takes a fixed prefix (``ClientOrderIds("bt")``), so its ids are
  the same every run.
* **side, time in force and order type** are the enums or their names; the type is LIMIT when a price is given and
  MARKET otherwise unless stated, and a MARKET order cannot be POST_ONLY.

Amounts are exact ints in 1e-8 units here; :func:`parse_amount` turns what a person types (a decimal string, a
``Decimal``, an int of whole units) into them without rounding. Everything that depends on the market (tick and lot
sizes, funds, limits) is the kernel's to check, and comes back as an ``OrderRejected`` event, not an exception::

    >>> ids = ClientOrderIds("bt")
    >>> order = build_place_order("BTCUSDT", "BUY", qty=parse_amount("0.01", "quantity"), ids=ids, ts=1)
    >>> order.client_order_id, order.order_type.value, order.qty
    ('bt-1', 'MARKET', 1000000)
"""

from __future__ import annotations

import numbers
import os
import threading
import time
from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Any

from ._exceptions import InvalidInput, quoted
from .fixed import float_text, parse_decimal
from .messages import OrderType, PlaceOrder, Side, TimeInForce

__all__ = [
    "CLIENT_ORDER_ID_MAX_LENGTH",
    "ClientOrderIds",
    "build_place_order",
    "check_client_order_id",
    "parse_amount",
]

CLIENT_ORDER_ID_MAX_LENGTH = 36
_CID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_KIND_MAX_LENGTH = 14  # kind + "-" + 10 stamp digits + "." + pid (<= 5) + "-" + at least 4 counter digits fit in 36
_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def check_client_order_id(value: Any, *, new: bool = False) -> str:
    """``value`` if it is a valid client order id (1-36 of letters, digits, ``- _ . :``; for a ``new`` order not
    ``open`` in any case, which ``QUERY OPEN`` means, while an existing order so named can still be cancelled);
    :class:`InvalidInput` naming it otherwise."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= CLIENT_ORDER_ID_MAX_LENGTH
        or not _CID_CHARS.issuperset(value)
    ):
        raise InvalidInput(f"client order id {quoted(value)} must be 1-36 characters of letters, digits, - _ . :")
    if new and value.upper() == "OPEN":
        raise InvalidInput(f"client order id {value!r} is reserved: QUERY OPEN lists the open orders")
    return value


def _base36(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS36[digit] + out
        if not number:
            return out


_stamp_lock = threading.Lock()
_last_stamp = 0


def _session_stamp(clock: Callable[[], int]) -> str:
    """The clock's microsecond in base 36, strictly increasing within this process (two sessions started in the same
    microsecond get different stamps), then ``.`` and this process's id in base 36 (two processes of a machine alive
    at once never share one, so sessions they start in the same microsecond differ too)."""
    global _last_stamp
    with _stamp_lock:
        stamp = max(clock() // 1_000, _last_stamp + 1)
        _last_stamp = stamp
    return f"{_base36(stamp)}.{_base36(os.getpid())}"


class ClientOrderIds:
    """Fresh client order ids ``<prefix>-1``, ``<prefix>-2``, ... made locally (see the module docstring).

    A session source (:meth:`for_session`) takes a new stamp when its ids would outgrow 36 characters; a fixed prefix
    raises :class:`InvalidInput` then.
    """

    __slots__ = ("kind", "prefix", "count", "_clock")

    def __init__(self, prefix: str) -> None:
        check_client_order_id(f"{prefix}-1")
        self.kind = prefix
        self.prefix = prefix
        self.count = 0
        self._clock: Callable[[], int] | None = None

    @classmethod
    def for_session(cls, kind: str, *, clock: Callable[[], int] = time.time_ns) -> ClientOrderIds:
        """Ids ``<kind>-<stamp>-<n>`` for one client session; ``clock`` gives wall-clock nanoseconds."""
        if not isinstance(kind, str) or not 0 < len(kind) <= _KIND_MAX_LENGTH:
            raise InvalidInput(f"client order id kind {kind!r} must be 1-{_KIND_MAX_LENGTH} characters")
        ids = cls(f"{kind}-{_session_stamp(clock)}")
        ids.kind = kind
        ids._clock = clock
        return ids

    def __call__(self) -> str:
        self.count += 1
        cid = f"{self.prefix}-{self.count}"
        if len(cid) > CLIENT_ORDER_ID_MAX_LENGTH:
            if self._clock is None:
                raise InvalidInput(
                    f"client order ids {self.prefix}-<n> outgrew {CLIENT_ORDER_ID_MAX_LENGTH} characters"
                )
            self.prefix = f"{self.kind}-{_session_stamp(self._clock)}"
            self.count = 1
            cid = f"{self.prefix}-1"
        return cid

    def __repr__(self) -> str:
        return f"ClientOrderIds({self.prefix!r}, issued={self.count})"


def parse_amount(value: Any, what: str) -> int:
    """A positive amount a person typed, exactly, in 1e-8 units: a decimal string (``"0.01"``), a ``Decimal``, an int
    of whole units, or a float whose shortest repr is the decimal. numpy's numbers (``df.close.iloc[-1]``, an
    ``np.int64``) count as the Python int or float they hold. :class:`InvalidInput` names ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | Decimal | numbers.Real):
        raise InvalidInput(f"{what} must be a decimal string, got {type(value).__name__}")
    if isinstance(value, str):
        text: str | int = value
    elif isinstance(value, Decimal):
        text = format(value, "f") if value.is_finite() else str(value)
    elif isinstance(value, numbers.Integral):
        text = int(value)  # parse_decimal judges its size before writing it out
    else:
        text = float_text(float(value), what)
    return parse_decimal(text, what, allow_zero=False)


def _enum(enum: Any, value: Any, message: str) -> Any:
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).upper())
    except ValueError:
        raise InvalidInput(f"{message}, got {value!r}") from None


def _units(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an int in 1e-8 units, got {value!r}")
    return value


def build_place_order(
    symbol: str,
    side: Side | str,
    *,
    qty: int = 0,
    price: int | None = None,
    quote_qty: int | None = None,
    protect_price: int | None = None,
    order_type: OrderType | str | None = None,
    tif: TimeInForce | str = TimeInForce.GTC,
    client_order_id: str | None = None,
    ids: ClientOrderIds | None = None,
    account_id: str = "main",
    ts: int,
    symbols: Collection[str] | None = None,
) -> PlaceOrder:
    """A checked :class:`PlaceOrder` (see the module docstring); :class:`InvalidInput` names what is wrong.

    ``qty``, ``price``, ``quote_qty`` and ``protect_price`` (a market order's worst fill price, when the sender fixes
    it) are ints in 1e-8 units (:func:`parse_amount` for typed text). A missing ``client_order_id`` is taken from
    ``ids``. ``symbols``, when given, is the set of tradable symbols.
    """
    if not isinstance(symbol, str) or (symbols is not None and symbol.upper() not in symbols):
        known = f"; configured: {', '.join(sorted(symbols))}" if symbols is not None else ""
        raise InvalidInput(f"unknown symbol {symbol!r}{known}")
    side_value: Side = _enum(Side, side, "side must be BUY or SELL")
    tif_value: TimeInForce = _enum(TimeInForce, tif, "tif must be GTC, IOC, FOK or POST_ONLY")
    price_value = None if price is None else _units(price, "price")
    if order_type is None:
        type_value = OrderType.MARKET if price_value is None else OrderType.LIMIT
    else:
        type_value = _enum(OrderType, order_type, "order type must be MARKET or LIMIT")
    if type_value is OrderType.MARKET and tif_value is TimeInForce.POST_ONLY:
        raise InvalidInput("a MARKET order cannot be POST_ONLY")
    if client_order_id is None:
        if ids is None:
            raise InvalidInput("no client order id: give one, or a ClientOrderIds to make one")
        client_order_id = ids()  # valid by construction: a checked prefix, "-" and digits, at most 36 characters
    else:
        client_order_id = check_client_order_id(client_order_id, new=True)
    return PlaceOrder(
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=symbol.upper(),
        side=side_value,
        order_type=type_value,
        qty=_units(qty, "quantity"),
        price=price_value,
        quote_qty=None if quote_qty is None else _units(quote_qty, "quote quantity"),
        tif=tif_value,
        protect_price=None if protect_price is None else _units(protect_price, "protect price"),
        ts=ts,
    )

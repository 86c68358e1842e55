"""Strategies live: a strategy written for backtests (:class:`~veloz_actors.strategies.base.Strategy`) runs
unchanged against the actor engine.

A :class:`StrategyNode` actor subscribes to the event bus (its own bounded queue), turns top-of-book updates into
bars of ``bar_ms`` (mid price; a bar is delivered when the first update of the next bar arrives), calls the
strategy's callbacks, and sends its orders through the OMS (risk, funds reservation, matching) with a
:class:`LiveContext` that implements the backtest's :class:`~veloz_actors.strategies.base.StrategyContext`.
An exception in strategy code is counted and reported in ``status()``; the engine goes on.

Configured in the ``actors:`` section of the engine config::

    actors:
      strategies:
        - {strategy: sma_cross, params: {fast: 5, slow: 20}, symbol: BTCUSDT, bar_ms: 1000, account: main}
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import ray

from ..messages import BookTop, OrderType, Side, TimeInForce, Trade
from ..orders import ClientOrderIds, build_place_order
from ..strategies.bar_strategies import make_strategy
from ..strategies.base import Bar, StrategyContext
from .batches import BookTopBatch

__all__ = ["LiveContext", "StrategyNode"]

_POLL_SECONDS = 0.01
_ORDER_EVENT_TYPES = frozenset(
    {"OrderAccepted", "OrderRejected", "OrderFilled", "OrderCancelled", "OrderExpired"}
)  # fmt: skip


class LiveContext(StrategyContext):
    """:class:`~veloz_actors.strategies.base.StrategyContext` over the OMS actor (one account)."""

    def __init__(
        self, oms: Any, account_id: str, instruments: dict[str, tuple[str, str]], ids: ClientOrderIds
    ) -> None:
        self.oms = oms
        self.account_id = account_id
        self.instruments = instruments  # symbol -> (base, quote)
        self.ids = ids  # where the orders' client order ids come from, made locally
        self.ts = 0
        self.orders = 0
        self.events: list[Any] = []

    def now(self) -> int:
        return self.ts

    def position(self, symbol: str) -> int:
        positions = ray.get(self.oms.positions.remote(self.account_id), timeout=30)
        return next((p.qty for p in positions if p.symbol == symbol), 0)

    def _balance(self, asset: str) -> tuple[int, int]:
        return ray.get(self.oms.balances.remote(self.account_id), timeout=30).get(asset, (0, 0))

    def free(self, asset: str) -> int:
        return self._balance(asset)[0]

    def locked(self, asset: str) -> int:
        return self._balance(asset)[1]

    def base_asset(self, symbol: str) -> str:
        return self.instruments[symbol][0]

    def quote_asset(self, symbol: str) -> str:
        return self.instruments[symbol][1]

    def place_order(
        self,
        symbol: str,
        side: Side,
        *,
        qty: int = 0,
        price: int | None = None,
        order_type: OrderType = OrderType.MARKET,
        tif: TimeInForce = TimeInForce.GTC,
        quote_qty: int | None = None,
        client_order_id: str | None = None,
    ) -> str:
        command = build_place_order(
            symbol,
            side,
            qty=qty,
            price=price,
            order_type=order_type,
            tif=tif,
            quote_qty=quote_qty,
            client_order_id=client_order_id,
            ids=self.ids,
            account_id=self.account_id,
            ts=max(self.ts, time.time_ns()),
        )
        self.orders += 1
        self.events.extend(ray.get(self.oms.submit.remote(command), timeout=30))
        return command.client_order_id

    def cancel_order(self, client_order_id: str) -> None:
        from ..messages import CancelOrder

        command = CancelOrder(client_order_id=client_order_id, account_id=self.account_id, ts=time.time_ns())
        self.events.extend(ray.get(self.oms.submit.remote(command), timeout=30))


class StrategyNode:
    """Runs one configured strategy on one symbol's bars (see the module docstring)."""

    def __init__(self, settings: dict[str, Any], oms: Any, bus: Any, instruments: dict[str, tuple[str, str]]) -> None:
        self.settings = dict(settings)
        self.symbol = str(settings["symbol"])
        self.bar_ns = int(settings.get("bar_ms", 1000)) * 1_000_000
        name = str(settings["strategy"])
        self.strategy = make_strategy(name, dict(settings.get("params", {})))
        ids = ClientOrderIds.for_session(name[:14])  # the strategy's name, then this session's stamp
        self.ctx = LiveContext(oms, str(settings.get("account", "main")), instruments, ids)
        self.bus = bus
        self.queue = int(settings.get("queue", 10_000))
        self.sid = ray.get(bus.subscribe.remote(self.queue, ["BookTop", "Trade"]), timeout=30)
        self.bar = Bar(self.symbol)
        self.bar_start = -1
        self.bars = 0
        self.errors = 0
        self.last_error: str | None = None
        self.dropped = 0
        self._stop = threading.Event()
        self._guard(self.strategy.on_start, self.ctx)
        self._thread = threading.Thread(target=self._run, name="veloz-strategy", daemon=True)
        self._thread.start()

    def _guard(self, callback: Any, *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - strategy code: count it, report it, keep the engine running
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        if self.ctx.events:
            events, self.ctx.events = self.ctx.events, []
            for event in events:
                if (
                    type(event).__name__ in _ORDER_EVENT_TYPES
                    and getattr(event, "account_id", None) == self.ctx.account_id
                ):
                    self._guard(self.strategy.on_order_event, event)

    def _run(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            try:
                items, dropped = ray.get(self.bus.poll.remote(self.sid), timeout=30)
            except Exception:  # noqa: BLE001 - the bus is restarting: poll again
                continue
            if dropped < 0:  # the bus restarted: subscribe again (bars resume with the next update)
                with contextlib.suppress(Exception):
                    self.sid = ray.get(self.bus.subscribe.remote(self.queue, ["BookTop", "Trade"]), timeout=30)
                continue
            self.dropped = max(self.dropped, dropped)
            for item in items:
                for event in item.events() if type(item) is BookTopBatch else (item,):
                    if event.symbol != self.symbol:
                        continue
                    if type(event) is BookTop:
                        self._on_top(event)
                    elif type(event) is Trade:
                        self._guard(self.strategy.on_trade, event)

    def _on_top(self, top: BookTop) -> None:
        if not top.bid_price or not top.ask_price:
            return
        self.ctx.ts = top.ts_event
        mid = (top.bid_price + top.ask_price) // 2
        start = top.ts_event - top.ts_event % self.bar_ns
        bar = self.bar
        if start != self.bar_start:
            if self.bar_start >= 0:
                self.bars += 1
                self._guard(self.strategy.on_bar, bar)
            self.bar_start = start
            bar.index += 1
            bar.open_time = start
            bar.open = bar.high = bar.low = bar.close = mid
            bar.volume = 0
        else:
            bar.high = max(bar.high, mid)
            bar.low = min(bar.low, mid)
            bar.close = mid
        self._guard(self.strategy.on_book, top)

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.bars,
            "strategy": self.settings["strategy"],
            "symbol": self.symbol,
            "bars": self.bars,
            "orders": self.ctx.orders,
            "errors": self.errors,
            "last_error": self.last_error,
            "dropped": self.dropped,
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.bars

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._guard(self.strategy.on_stop)

"""The terminal view of ``veloz start``: a prompt, readable lines and a status panel that refreshes itself.

When stdin and stdout are a terminal, ``veloz start`` shows this view instead of the JSON lines (``--json``, a pipe or
a file keep the JSON protocol, byte for byte). The screen is split with plain ANSI escapes (no curses, no full-screen
takeover)::

    12:01:03  veloz> ORDER BUY BTCUSDT 0.01 MARKET                        \\
    12:01:03  ORDER ACCEPTED  BUY 0.01 BTCUSDT MARKET  cid=cli-...  id=1    } the messages: a scroll region
    12:01:03  FILL  BUY 0.01 BTCUSDT @ 60025.18  fee 0.6002518 USDT ...   /
     VeloZ  SIM  single-process  open orders 0  fills 1  last event 0.2s ago  API http://...   \\
    BTCUSDT 60044.39 / 60044.41  pos 0.01    ETHUSDT 2497.84 / 2497.86                          } the panel
    balances  BTC 1.01   ETH 10   USDT 99399.1479482                                           /
    veloz> _                                                                   the prompt (readline)

- Orders, fills, rejections, errors and status events are one readable line each; the answers to BALANCE,
  POSITIONS, QUERY, STATUS and HELP are tables and lines. Market events only update the panel.
- The panel shows each symbol's best bid/ask (or last trade, or the mark of the start snapshot), the position held,
  the balances, the open orders, the mode, the API's URL (``service.urls["api"]``) and how long ago the last event
  came; a halt, a venue disconnected and a symbol halted or unsynced are marked there until they end. Every figure
  comes from the objects the JSON protocol prints (and one :meth:`EngineService.snapshot` at start), kept in
  :class:`ViewState`.
- The prompt is Python's :mod:`readline` (arrow keys, history in ``~/.veloz_history``, Tab completes commands and
  symbols). Each line goes to :meth:`EngineService.submit_line`; Ctrl-D is the end of input, Ctrl-C stops cleanly.

Threads: :meth:`TerminalView.write` runs on the engine thread and only updates :class:`ViewState` and queues what
to print (bounded, drop-oldest, counted), so the engine never waits for the terminal. A view thread draws at most
four times a second, each frame in one ``write(2)``: save the cursor, print into the scroll region (or redraw the
panel), restore the cursor. The prompt's row is outside the region, so what the person is typing is never touched.
An input thread runs the readline prompt.

>>> balances_table({"USDT": {"free": "99369.1", "locked": "630.9"}})
['ASSET     FREE  LOCKED   TOTAL', 'USDT   99369.1   630.9  100000']
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from .._exceptions import InvalidInput
from ..fixed import format_decimal, parse_formatted
from ..logs import output_handlers
from .stdio import closes_order

if TYPE_CHECKING:
    from .service import EngineService

try:  # not on every platform (Windows): then a plain prompt without history
    import readline
except ImportError:  # pragma: no cover
    readline = None  # type: ignore[assignment]

__all__ = [
    "PROMPT",
    "Line",
    "TerminalView",
    "ViewState",
    "balances_table",
    "describe",
    "fill_line",
    "order_line",
    "orders_table",
    "positions_table",
    "status_lines",
]

PROMPT = "veloz> "
FRAME_SECONDS = 0.25  # the view draws at most once per frame: four times a second
PROMPT_SET_UP_SECONDS = 2.0  # the most close() waits for a prompt that has just started to set the terminal up
PANEL_ROWS = 3
HALT_CHECK_SECONDS = 2.0  # while the panel shows a halt, how often the view asks the engine whether it still holds
MAX_TABLE_ROWS = 200  # a QUERY OPEN with thousands of orders shows this many and says how many more
COMMANDS = ("ORDER", "CANCEL", "QUERY", "BALANCE", "POSITIONS", "STATUS", "RESET", "HELP", "QUIT")
KEYS_HELP = "keys: Up/Down history, Tab completes, Ctrl-D or QUIT stops, Ctrl-C stops at once"

_STYLES = {
    "": "",
    "good": "\x1b[32m",
    "bad": "\x1b[31m",
    "warn": "\x1b[33m",
    "info": "\x1b[36m",
    "dim": "\x1b[2m",
    "bar": "\x1b[7m",
    "live": "\x1b[1;7;31m",
}
_RESET = "\x1b[0m"
# a venue connection's states that the panel marks until the one that ends them (VenueConnection)
_VENUE_PROBLEMS = {"disconnected": "DISCONNECTED", "error": "UNSYNCED", "halted": "HALTED"}
_VENUE_RECOVERIES = {"connected": "DISCONNECTED", "resynced": "UNSYNCED", "trading": "HALTED"}


class Line(NamedTuple):
    """One printed line: the event's ``ts`` (ns; 0 for a continuation line), a style name, the plain text."""

    ts: int
    style: str
    text: str


# ------------------------------------------------------------------------------------------- formatting


def fill_line(fill: dict[str, Any]) -> str:
    """``FILL  BUY 0.01 BTCUSDT @ 60012.5  fee 0.06 USDT  TAKER  cid=a1``"""
    parts = [f"FILL  {fill.get('side')} {fill.get('qty')} {fill.get('symbol')} @ {fill.get('price')}"]
    if fill.get("fee") is not None:
        parts.append(f"fee {fill['fee']} {fill.get('fee_asset') or ''}".rstrip())
    if fill.get("liquidity"):
        parts.append(str(fill["liquidity"]))
    parts.append(f"cid={fill.get('cid')}")
    return "  ".join(parts)


def _order_text(order: dict[str, Any], *, filled: bool = False) -> str:
    """``BUY 0.01 BTCUSDT @ 60000 GTC`` / ``SELL 0.005/0.01 ETHUSDT MARKET`` from whatever fields the object has."""
    qty = order.get("qty")
    if filled and qty is not None:
        qty = f"{order.get('filled_qty') or '0'}/{qty}"
    words = [w for w in (order.get("side"), qty, order.get("symbol")) if w is not None]
    if order.get("price") is not None:
        words.append(f"@ {order['price']}")
        if order.get("tif") and order["tif"] != "GTC":
            words.append(order["tif"])
    elif order.get("order_type") == "MARKET":
        words.append("MARKET")
    return " ".join(str(w) for w in words)


def order_line(update: dict[str, Any]) -> str:
    """One ``order_update`` as a line: ``ORDER ACCEPTED ...``, ``REJECTED ... reason=CODE (detail)``, ..."""
    status = str(update.get("status"))
    cid = f"cid={update.get('cid')}"
    reason = ""
    if update.get("reason"):
        reason = f"reason={update['reason']}" + (f" ({update['detail']})" if update.get("detail") else "")
    if status == "REJECTED":
        return "  ".join(p for p in ("REJECTED", _order_text(update), reason, cid) if p)
    if status == "CANCEL_REJECTED":
        return "  ".join(p for p in ("CANCEL REJECTED", cid, reason) if p)
    if status in ("CANCELLED", "EXPIRED"):
        filled = f"filled {update.get('filled_qty') or '0'}"
        return "  ".join(p for p in (f"ORDER {status}", _order_text(update), filled, reason, cid) if p)
    if status == "PARTIALLY_FILLED":
        return "  ".join(p for p in ("ORDER PARTIALLY FILLED", _order_text(update, filled=True), cid) if p)
    text = _order_text(update)
    order_id = f"id={update['order_id']}" if status == "ACCEPTED" and update.get("order_id") is not None else ""
    return "  ".join(p for p in (f"ORDER {status.replace('_', ' ')}", text, reason, cid, order_id) if p)


def _total(free: str, locked: str) -> str:
    try:
        return format_decimal(parse_formatted(free) + parse_formatted(locked))
    except InvalidInput:
        return "?"


def _decimal_column(values: Sequence[str]) -> list[str]:
    """Decimal strings padded so their decimal points line up (anything else is right-aligned)."""
    split = [v.partition(".") if re.fullmatch(r"-?\d+(\.\d+)?", v) else None for v in values]
    whole = max((len(s[0]) for s in split if s is not None), default=0)
    frac = max((len(s[2]) + 1 for s in split if s is not None and s[1]), default=0)
    out = []
    for value, parts in zip(values, split, strict=True):
        if parts is None:
            out.append(value.rjust(whole + frac))
        else:
            out.append(parts[0].rjust(whole) + (parts[1] + parts[2]).ljust(frac))
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    columns = [[str(row[i]) for row in rows] for i in range(len(headers))]
    columns = [_decimal_column(c) if n else c for c, n in zip(columns, numeric, strict=True)]
    widths = [max([len(h), *(len(v) for v in c)]) for h, c in zip(headers, columns, strict=True)]

    def cell(text: str, i: int) -> str:
        return text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i])

    lines = ["  ".join(cell(h, i) for i, h in enumerate(headers)).rstrip()]
    for r in range(len(rows)):
        lines.append("  ".join(cell(columns[i][r], i) for i in range(len(headers))).rstrip())
    return lines


def balances_table(balances: dict[str, dict[str, str]]) -> list[str]:
    """An ``account`` object's balances as a table: asset, free, locked, total (exact decimals, points aligned)."""
    rows = [
        (asset, b.get("free", "0"), b.get("locked", "0"), _total(b.get("free", "0"), b.get("locked", "0")))
        for asset, b in sorted(balances.items())
    ]
    if not rows:
        return ["no balances"]
    return _table(("ASSET", "FREE", "LOCKED", "TOTAL"), rows, (False, True, True, True))


def positions_table(positions: Iterable[dict[str, Any]]) -> list[str]:
    """The answer to POSITIONS (``position`` objects) as a table."""
    rows = [
        (p["symbol"], p.get("qty", "0"), p.get("avg_entry_price", "0"), p.get("mark_price", "0"),
         p.get("unrealized_pnl", "0"), p.get("realized_pnl", "0"))
        for p in positions
        if p.get("symbol")
    ]  # fmt: skip
    if not rows:
        return ["no positions"]
    headers = ("SYMBOL", "QTY", "AVG ENTRY", "MARK", "UNREALIZED PNL", "REALIZED PNL")
    return _table(headers, rows, (False, True, True, True, True, True))


def orders_table(orders: Sequence[dict[str, Any]]) -> list[str]:
    """The answer to QUERY (``order_state``'s orders) as a table; at most :data:`MAX_TABLE_ROWS` rows."""
    if not orders:
        return ["no open orders"]
    shown = orders[:MAX_TABLE_ROWS]
    rows = [
        (str(o.get("cid")), str(o.get("side")), str(o.get("symbol")), str(o.get("order_type")),
         "MARKET" if o.get("price") is None else str(o["price"]), str(o.get("qty")), str(o.get("filled_qty") or "0"),
         str(o.get("status")), str(o.get("tif") or ""))
        for o in shown
    ]  # fmt: skip
    headers = ("CID", "SIDE", "SYMBOL", "TYPE", "PRICE", "QTY", "FILLED", "STATUS", "TIF")
    lines = _table(headers, rows, (False, False, False, False, True, True, True, False, False))
    if len(orders) > len(shown):
        lines.append(f"... and {len(orders) - len(shown)} more (QUERY <cid> shows one)")
    return lines


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in value):
            return ",".join(_scalar(v) for v in value) or "none"
        return f"{len(value)} items"
    return str(value)


def status_lines(status: dict[str, Any]) -> list[str]:
    """The answer to STATUS as ``key=value`` lines: the top level first, then one line per nested section."""
    lines: list[str] = []

    def walk(path: str, values: dict[str, Any]) -> None:
        scalars = [f"{k}={_scalar(v)}" for k, v in values.items() if not isinstance(v, dict)]
        if scalars:
            lines.append((f"{path}: " if path else "") + "  ".join(scalars))
        for key, value in values.items():
            if isinstance(value, dict) and value:
                walk(f"{path}.{key}" if path else str(key), value)

    walk("", {k: v for k, v in status.items() if k not in ("type", "ts")})
    if not lines:
        return ["STATUS"]
    return ["STATUS  " + lines[0], *("  " + line for line in lines[1:])]


def _event_status_line(status: dict[str, Any]) -> tuple[str, str]:
    """A status event (not an answer): the circuit breaker, a venue's connection, the engine starting or stopping."""
    event = str(status.get("event") or "")
    rest = {k: v for k, v in status.items() if k not in ("type", "ts", "event", "state")}
    if event == "circuit_breaker_tripped":
        return "bad", (
            f"CIRCUIT BREAKER TRIPPED  reason={status.get('reason')}  equity={status.get('equity')}  "
            f"peak={status.get('peak_equity')}  (RESET re-arms this account's breaker; a halt of the whole engine, the "
            "risk actor's or the kill switch's, is lifted by the API's resume)"
        )
    if event.startswith("venue_"):
        venue = rest.pop("venue", "")
        words = "  ".join(f"{k}={_scalar(v)}" for k, v in rest.items())
        style = "warn" if event[len("venue_") :] in _VENUE_PROBLEMS else "info"
        return style, f"venue {venue} {event[len('venue_') :]}  {words}".rstrip()
    state = status.get("state")
    if state == "started":
        engine = status.get("engine", "engine")
        return "info", f"{engine} engine started: type HELP for the commands ({KEYS_HELP})"
    if state == "stopped":
        return "info", "engine stopped"
    words = "  ".join(f"{k}={_scalar(v)}" for k, v in rest.items() if not isinstance(v, dict))
    return "info", f"status {event or state or ''}  {words}".strip()


def error_line(error: dict[str, Any]) -> str:
    """``error: BAD_COMMAND unknown command 'X'; ...  (line: X)``"""
    text = f"error: {error.get('code', 'ERROR')} {error.get('message', '')}".rstrip()
    if error.get("line"):
        text += f"  (line: {error['line']})"
    return text


def describe(objects: Sequence[dict[str, Any]], *, reply: bool) -> list[Line]:
    """The lines a batch of protocol objects prints (``reply``: the answer to a typed line).

    A fill absorbs the order update that follows it for the same order (``(order filled)``); ``account`` and
    ``position`` objects are tables when they are the whole answer (BALANCE, POSITIONS), else the panel's only;
    ``market`` objects print nothing.
    """
    kinds = {o.get("type") for o in objects}
    if reply and objects and kinds == {"account"}:
        out: list[Line] = []
        for obj in objects:
            table = balances_table(obj.get("balances") or {})
            out.append(Line(obj.get("ts") or 0, "", f"BALANCE  account {obj.get('account')}"))
            out.extend(Line(0, "", "  " + row) for row in table)
        return out
    if reply and objects and kinds == {"position"}:
        rows = positions_table(objects)
        return [Line(objects[0].get("ts") or 0, "", "POSITIONS"), *(Line(0, "", "  " + r) for r in rows)]
    out = []
    last_fill: tuple[str, int] | None = None  # (cid, index in out) of the fill line just printed
    for obj in objects:
        kind = obj.get("type")
        ts = obj.get("ts") or 0
        if kind == "fill":
            out.append(Line(ts, "good", fill_line(obj)))
            last_fill = (str(obj.get("cid")), len(out) - 1)
            continue
        if kind == "order_update":
            status = obj.get("status")
            if last_fill is not None and last_fill[0] == obj.get("cid") and status in ("FILLED", "PARTIALLY_FILLED"):
                index = last_fill[1]
                note = "(order filled)" if status == "FILLED" else f"(filled {obj.get('filled_qty')}/{obj.get('qty')})"
                out[index] = out[index]._replace(text=f"{out[index].text}  {note}")
                last_fill = None
                continue
            style = {"REJECTED": "bad", "CANCEL_REJECTED": "bad", "CANCELLED": "warn", "EXPIRED": "warn"}.get(
                str(status), ""
            )
            out.append(Line(ts, style, order_line(obj)))
        elif kind == "error":
            out.append(Line(ts, "bad", error_line(obj)))
        elif kind == "order_state":
            orders = obj.get("orders") or []
            out.append(Line(ts, "", f"ORDERS  {len(orders)}"))
            out.extend(Line(0, "", "  " + row) for row in orders_table(orders))
        elif kind == "status":
            if "help" in obj:
                out.append(Line(ts, "", "commands:"))
                out.extend(Line(0, "", "  " + row.strip()) for row in str(obj["help"]).splitlines() if row.strip())
                out.append(Line(0, "dim", "  " + KEYS_HELP))
            elif reply and "event" not in obj and obj.get("state") not in ("started", "stopped"):
                rows = status_lines(obj)
                out.append(Line(ts, "", rows[0]))
                out.extend(Line(0, "", row) for row in rows[1:])
            else:
                style, text = _event_status_line(obj)
                out.append(Line(ts, style, text))
        elif kind in ("account", "position", "market"):
            pass  # the panel's
        else:
            words = "  ".join(f"{k}={_scalar(v)}" for k, v in obj.items() if k not in ("type", "ts"))
            out.append(Line(ts, "", f"{kind}  {words}".rstrip()))
        last_fill = None
    return out


# ----------------------------------------------------------------------------------------------- the panel


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class ViewState:
    """What the panel shows, kept from the protocol's objects (:meth:`observe`) and the start snapshot.

    Not locked: :class:`TerminalView` holds its lock around every use. ``halted`` (why new risk-increasing orders
    are refused) comes from a breaker's trip, a refusal for it, and any status that tells the engine's halts (the
    start, STATUS, and what the view asks while it shows one: a halt lifted elsewhere has no event of its own).
    """

    def __init__(self, account_id: str = "main") -> None:
        self.account_id = account_id
        self.halted: str | None = None
        # (venue, symbol or "" for the whole venue) -> what is wrong: disconnected, unsynced, halted (until it recovers)
        self.venue_problems: dict[tuple[str, str], str] = {}
        self.books: dict[str, tuple[str, str]] = {}  # symbol -> (bid, ask)
        self.last_trades: dict[str, str] = {}
        self.marks: dict[str, str] = {}  # the snapshot's, until the market says more
        self.balances: dict[str, tuple[str, str]] = {}  # asset -> (free, locked)
        self.positions: dict[str, str] = {}  # symbol -> qty
        self.open_orders: set[str] = set()
        self.fills = 0
        self.engine = ""
        self.last_event: float | None = None  # the view's clock when the last object came

    def observe(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "market":
            symbol = str(obj.get("symbol"))
            if obj.get("kind") == "book_top":
                self.books[symbol] = (obj.get("bid") or "0", obj.get("ask") or "0")
            elif obj.get("kind") == "trade":
                self.last_trades[symbol] = obj.get("price") or "0"
        elif kind == "order_update":
            cid, status = obj.get("cid"), obj.get("status")
            if closes_order(obj):
                self.open_orders.discard(cid)
            elif status not in ("CANCEL_REJECTED", "REJECTED") and cid:
                self.open_orders.add(cid)
            if status == "REJECTED" and obj.get("reason") == "CIRCUIT_BREAKER" and not self.halted:
                self.halted = "circuit breaker"
        elif kind == "fill":
            self.fills += 1
        elif kind == "account":
            self.balances = {a: (b.get("free", "0"), b.get("locked", "0")) for a, b in obj["balances"].items()}
        elif kind == "position" and obj.get("symbol"):
            self._position(obj)
        elif kind == "status":
            if obj.get("engine"):
                self.engine = str(obj["engine"])
            event = str(obj.get("event") or "")
            if event == "circuit_breaker_tripped":
                self.halted = str(obj.get("reason") or "circuit breaker")
            elif event.startswith("venue_"):
                self._venue(event[len("venue_") :], str(obj.get("venue") or ""), str(obj.get("symbol") or ""))
            elif "engine_halt" in obj or "circuit_breaker" in obj:
                self.halt_from_status(obj)

    def _venue(self, state: str, venue: str, symbol: str) -> None:
        problems = self.venue_problems
        if state in _VENUE_PROBLEMS:
            problems[(venue, symbol)] = _VENUE_PROBLEMS[state]
        elif state in _VENUE_RECOVERIES:
            gone = _VENUE_RECOVERIES[state]
            for key, problem in list(problems.items()):
                if key[0] == venue and problem == gone and (not symbol or key[1] == symbol):
                    del problems[key]
        elif state == "closed":
            self.venue_problems = {k: v for k, v in problems.items() if k[0] != venue}

    def halt_from_status(self, status: dict[str, Any]) -> None:
        """The engine-wide halt, else this account's own breaker, as an engine status tells them."""
        breakers = status.get("circuit_breaker")
        own = breakers.get(self.account_id) if isinstance(breakers, dict) else None
        halt = status.get("engine_halt") or own
        self.halted = str(halt) if halt else None

    def _position(self, obj: dict[str, Any]) -> None:
        qty = obj.get("qty") or "0"
        if qty in ("0", "-0"):
            self.positions.pop(obj["symbol"], None)
        else:
            self.positions[obj["symbol"]] = qty

    def apply_snapshot(self, snapshot: dict[str, Any]) -> None:
        """The engine's snapshot at start: balances, positions, open orders and marks (engine thread, in order)."""
        self.balances = {
            a: (b.get("free", "0"), b.get("locked", "0")) for a, b in (snapshot.get("balances") or {}).items()
        }
        for position in snapshot.get("positions") or []:
            self._position(position)
        self.open_orders = {o["cid"] for o in snapshot.get("open_orders") or [] if o.get("cid")}
        self.marks.update(snapshot.get("marks") or {})

    def panel(self, width: int, now: float, *, mode: str, urls: dict[str, str]) -> list[tuple[str, str]]:
        """The panel's rows as (style, text), each at most ``width`` characters."""
        age = "no events yet" if self.last_event is None else f"last event {_age(max(0.0, now - self.last_event))} ago"
        words = ["VeloZ", mode.upper(), self.engine, f"open orders {len(self.open_orders)}", f"fills {self.fills}", age]
        if self.halted:
            words.insert(2, f"HALTED ({self.halted}): new orders refused")
        down = sorted(f"{venue} {problem}" for (venue, symbol), problem in self.venue_problems.items() if not symbol)
        words[2:2] = down
        symbol_problems = {symbol: problem for (_, symbol), problem in self.venue_problems.items() if symbol}
        if urls.get("api"):
            words.append(f"API {urls['api'].partition('?')[0]}")  # never a ?token=... on the screen
        bar = " " + "  ".join(w for w in words if w)
        markets = []
        shown = set(self.books) | set(self.last_trades) | set(self.marks) | set(self.positions) | set(symbol_problems)
        for symbol in sorted(shown):
            if symbol in self.books and self.books[symbol] != ("0", "0"):
                bid, ask = (price if price != "0" else "-" for price in self.books[symbol])  # "0": that side is empty
                text = f"{symbol} {bid} / {ask}"
            elif symbol in self.last_trades:
                text = f"{symbol} last {self.last_trades[symbol]}"
            elif symbol in self.marks:
                text = f"{symbol} mark {self.marks[symbol]}"
            else:
                text = symbol
            if symbol in self.positions:
                text += f"  pos {self.positions[symbol]}"
            if symbol in symbol_problems:
                text += f"  {symbol_problems[symbol]}"
            markets.append(text)
        balances = []
        for asset, (free, locked) in sorted(self.balances.items()):
            balances.append(f"{asset} {free}" + ("" if locked in ("0", "") else f" ({locked} locked)"))
        rows = [
            ("live" if mode == "live" or self.halted or down else "bar", bar.ljust(width)),
            ("", "    ".join(markets) or "no market data yet"),
            ("", "balances  " + ("   ".join(balances) or "-")),
        ]
        return [(style, text[:width]) for style, text in rows]


# ------------------------------------------------------------------------------------------------ the view


class _LogLines:
    """A stream for the ``veloz`` logger's stderr handler while the view runs: its lines scroll above the panel."""

    def __init__(self, view: TerminalView) -> None:
        self.view = view

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.view.note("warn", line)
        return len(text)

    def flush(self) -> None:
        pass


class TerminalView:
    """The :class:`~veloz_actors.interfaces.service.Sink` of ``veloz start`` on a terminal (see the module docstring).

    ``write`` (engine thread) is cheap: the panel's state and a bounded queue of what to print. :meth:`start` lays
    the screen out and starts the view and input threads; :meth:`close` prints what is left and gives the terminal
    back as it was (modes, scroll region, history saved).
    """

    def __init__(
        self,
        service: EngineService,
        *,
        stdin: IO[str],
        out: IO[str],
        history: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 10_000,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"the view's queue holds at least one batch, got {max_pending}")
        self.service = service
        self.stdin = stdin
        self.out = out
        self.history = history if history is not None else Path("~/.veloz_history").expanduser()
        self.clock = clock
        self.max_pending = max_pending
        self.state = ViewState(service.session.account_id)
        self.dropped = 0  # batches dropped because the terminal fell behind
        self.observe_failures = 0  # events the panel's state could not take
        self.plain = os.environ.get("TERM", "") in ("", "dumb")  # no escapes: lines only, no panel
        self.color = not self.plain and "NO_COLOR" not in os.environ
        self._lock = threading.Lock()  # state, pending
        self._out_lock = threading.Lock()  # the terminal
        self._pending: collections.deque[tuple[bool | None, Any]] = collections.deque()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._closed = False
        self._size = (0, 0)
        self._bottom = 0  # the scroll region's last row
        self._saved_modes: list[Any] | None = None
        # readline sets the terminal up (raw keys, no echo) when a prompt starts, on the prompt thread, without the GIL:
        # a prompt that starts after close() gave the modes back, while the process is still exiting, would leave the
        # person's terminal raw. So the prompt starts only under _prompt_lock while not closing, and close() waits for
        # the started prompt's set-up (readline's pre-input hook, which runs right after it) before it gives them back.
        self._prompt_lock = threading.Lock()
        self._prompting = False  # a prompt started and has not returned
        self._prompt_set_up = threading.Event()  # that prompt's readline has set the terminal up
        self._prompt_hooked = False  # readline says so (its pre-input hook is ours)
        self._log_handlers: list[tuple[logging.StreamHandler[Any], Any, int]] = []
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------- the engine thread

    def write(self, objects: list[dict[str, Any]], *, reply: bool) -> None:
        if not objects:
            return
        shown = []
        with self._lock:
            state = self.state
            for obj in objects:
                try:
                    state.observe(obj)
                except Exception as exc:  # noqa: BLE001 - on the engine thread: the view never stops trading
                    self._failed(obj, exc)
                if obj.get("type") != "market":
                    shown.append(obj)
            state.last_event = self.clock()
            if shown:
                self._push((reply, shown))
        if shown:
            self._wake.set()

    def _failed(self, obj: dict[str, Any], exc: Exception) -> None:
        """An event the panel could not take (a bug of the view's): said once on the screen (the lock held), counted."""
        self.observe_failures += 1
        if self.observe_failures == 1:
            text = (
                f"view: cannot show an event ({type(exc).__name__}: {exc}) in the panel; its figures may lag "
                f"(type {obj.get('type')!r}; later failures are not said)"
            )
            self._push((None, ("bad", text)))

    def _push(self, item: tuple[bool | None, Any]) -> None:
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(item)

    def note(self, style: str, text: str) -> None:
        """A line of the view's own (an echoed command, a log record), from any thread."""
        with self._lock:
            self._push((None, (style, text)))
        self._wake.set()

    def _refresh_halt(self, service: EngineService) -> None:
        """The engine's halts as its status tells them now (on the engine thread, ordered with every write)."""
        status = service.session.backend.status()
        with self._lock:
            self.state.halt_from_status(status)

    def _take_snapshot(self, service: EngineService) -> None:
        snapshot = service.snapshot()
        with self._lock:  # on the engine thread: ordered with every write
            self.state.apply_snapshot(snapshot)

    # -------------------------------------------------------------------------------------- start, close

    def start(self) -> None:
        """Lay the screen out, load the history, start the view and input threads; the snapshot comes first."""
        fd = self._in_fd()
        if fd is not None:
            import termios

            with contextlib.suppress(termios.error, OSError):
                self._saved_modes = termios.tcgetattr(fd)
        self._setup_readline()
        self._redirect_logs()
        with self._out_lock:
            self._emit(self._layout(initial=True))
        snapshot = self.service.call_async(self._take_snapshot)
        snapshot.add_done_callback(self._snapshot_done)
        for target, name in ((self._draw_loop, "veloz-view"), (self._read_loop, "veloz-prompt")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _snapshot_done(self, future: Any) -> None:
        error = future.exception()
        if error is not None and not self.service.stopping:
            self.note(
                "bad", f"view: no start snapshot ({type(error).__name__}: {error}); figures fill in as events come"
            )

    def close(self) -> None:
        """Print what is left, then give the terminal back: scroll region, modes, history, the log handler."""
        if self._closed:
            return
        with self._prompt_lock:
            self._closing.set()
            prompting = self._prompting
        self._wake.set()
        view = self._threads[0] if self._threads else None
        if view is not None:
            view.join(timeout=2.0)
        with contextlib.suppress(OSError):
            self._draw()
        with self._out_lock:
            self._closed = True
            rows = self._size[0]
            if not self.plain and rows:
                with contextlib.suppress(OSError):
                    self._write_now(f"\x1b[r\x1b[?2004l{_RESET}\x1b[{rows};1H\x1b[2K")
        if prompting and self._prompt_hooked:
            self._prompt_set_up.wait(PROMPT_SET_UP_SECONDS)  # at once, unless it has only just started
        self._restore_modes()
        self._restore_logs()
        if readline is not None and self._uses_readline():
            with contextlib.suppress(OSError):
                readline.write_history_file(self.history)

    def _in_fd(self) -> int | None:
        try:
            fd = self.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        return fd if os.isatty(fd) else None

    def _uses_readline(self) -> bool:
        return self.stdin is sys.stdin and self._in_fd() is not None

    def _restore_modes(self) -> None:
        fd = self._in_fd()
        if fd is None or self._saved_modes is None:
            return
        import termios

        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, self._saved_modes)

    def _setup_readline(self) -> None:
        if readline is None or not self._uses_readline():
            return
        with contextlib.suppress(OSError):
            readline.read_history_file(self.history)
        readline.set_history_length(1000)
        readline.set_completer(self._complete)
        if hasattr(readline, "set_pre_input_hook"):  # not in every readline library Python may be built with
            readline.set_pre_input_hook(self._on_prompt_set_up)
            self._prompt_hooked = True
        readline.set_completer_delims(" \t")
        readline.parse_and_bind("tab: complete")
        readline.parse_and_bind("set horizontal-scroll-mode on")  # the prompt keeps to its one row

    def _on_prompt_set_up(self) -> None:
        self._prompt_set_up.set()
        if self._closing.is_set():  # later than close() waits: the terminal is given back here too
            self._restore_modes()

    def _complete(self, text: str, index: int) -> str | None:
        """Tab completion: the command, then BUY/SELL, a symbol, MARKET; a cid for CANCEL and QUERY."""
        if readline is None:
            return None
        words = readline.get_line_buffer()[: readline.get_endidx()].split()
        position = len(words) - (1 if text else 0)
        first = words[0].upper() if words else ""
        with self._lock:
            symbols = sorted(set(self.state.books) | set(self.state.marks) | set(self.service.session.symbols))
            cids = sorted(self.state.open_orders)
        if position == 0:
            choices: Sequence[str] = COMMANDS
        elif first == "ORDER":
            choices = {1: ("BUY", "SELL"), 2: symbols, 4: ("MARKET",)}.get(position, ("tif=", "cid="))
        elif first in ("CANCEL", "QUERY") and position == 1:
            choices = cids + (["OPEN"] if first == "QUERY" else [])
        else:
            choices = ()
        matches = [c + " " for c in choices if c.upper().startswith(text.upper()) and not c.endswith("=")]
        matches += [c for c in choices if c.endswith("=") and c.startswith(text.lower())]
        return matches[index] if index < len(matches) else None

    def _redirect_logs(self) -> None:
        """The ``veloz`` logger's stderr lines (warnings and errors: the info lines say what the view shows) scroll
        above the panel instead of breaking it; restored by :meth:`close`."""
        if self.plain:
            return
        for handler in output_handlers():
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr and sys.stderr.isatty():
                self._log_handlers.append((handler, handler.stream, handler.level))
                handler.setStream(_LogLines(self))  # type: ignore[arg-type]
                handler.setLevel(max(handler.level, logging.WARNING))

    def _restore_logs(self) -> None:
        for handler, stream, level in self._log_handlers:
            handler.setStream(stream)
            handler.setLevel(level)
        self._log_handlers = []

    # ---------------------------------------------------------------------------------------- the terminal

    def _terminal_size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.out.fileno())
            return max(size.lines, 2), max(size.columns, 20)
        except (AttributeError, OSError, ValueError):
            return 24, 80

    def _layout(self, *, initial: bool) -> str:
        """The escapes that (re)draw the layout: scroll region above the panel, the prompt on the last row."""
        rows, cols = self._size = self._terminal_size()
        if self.plain:
            return ""
        panel = PANEL_ROWS if rows >= PANEL_ROWS + 4 else 0
        self._bottom = rows - panel - 1
        text = "\n" * (panel + 1) if initial else ""  # room for the panel below what the screen shows
        text += f"\x1b[1;{self._bottom}r\x1b[{self._bottom + 1};1H\x1b[J"
        text += self._panel_text()
        text += f"\x1b[{rows};1H"
        if not initial and readline is not None and self._uses_readline():
            text += PROMPT + readline.get_line_buffer()
        return text

    def _panel_text(self) -> str:
        rows, cols = self._size
        if self.plain or self._bottom >= rows - 1:
            return ""
        with self._lock:
            lines = self.state.panel(cols - 1, self.clock(), mode=self.service.mode, urls=dict(self.service.urls))
        out = []
        for row, (style, text) in enumerate(lines[: rows - 1 - self._bottom], start=self._bottom + 1):
            out.append(f"\x1b[{row};1H\x1b[2K{self._styled(style, text)}")
        return "".join(out)

    def _styled(self, style: str, text: str) -> str:
        if not self.color or not style:
            return text
        return f"{_STYLES[style]}{text}{_RESET}"

    def _emit(self, text: str) -> None:
        """Write under the terminal lock, unless closed (call with ``_out_lock`` held)."""
        if text and not self._closed:
            self._write_now(text)

    def _write_now(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):
            self.out.write(text)
            self.out.flush()
            return
        while data:  # one write(2) per frame, so readline's own output never lands inside it
            written = os.write(fd, data)
            data = data[written:]

    def _message_text(self, lines: list[Line]) -> str:
        if not lines:
            return ""
        body = []
        for line in lines:
            prefix = time.strftime("%H:%M:%S", time.localtime(line.ts / 1e9)) + "  " if line.ts else " " * 10
            body.append(prefix + self._styled(line.style, line.text))
        if self.plain:
            return "".join(text + "\n" for text in body)
        return f"\x1b7\x1b[{self._bottom};1H" + "".join("\n" + text for text in body) + "\x1b8"

    def _draw(self) -> None:
        """One frame: the queued lines into the scroll region, then the panel (the cursor put back where it was)."""
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
            dropped, self.dropped = self.dropped, 0
        lines: list[Line] = []
        if dropped:
            lines.append(Line(time.time_ns(), "warn", f"view: {dropped} batches of events not shown (terminal slow)"))
        for reply, payload in pending:
            if reply is None:
                style, text = payload
                lines.append(Line(time.time_ns(), style, text))
            else:
                lines.extend(describe(payload, reply=reply))
        with self._out_lock:
            text = ""
            if self._terminal_size() != self._size and not self.plain:
                text += self._layout(initial=False)
            text += self._message_text(lines)
            if not self.plain:
                text += "\x1b7" + self._panel_text() + "\x1b8"
            self._emit(text)

    def _draw_loop(self) -> None:
        asked = self.clock()
        while True:
            self._wake.wait(FRAME_SECONDS)  # something to print, or the panel's period
            if self._closing.is_set():
                return
            self._wake.clear()
            if self.state.halted and self.clock() - asked >= HALT_CHECK_SECONDS:  # lifted elsewhere (the API)?
                asked = self.clock()
                self.service.call_async(self._refresh_halt)
            try:
                self._draw()
            except OSError:  # the terminal is gone: nobody watches, nobody types
                self.service.stop()
                return
            except Exception as exc:  # noqa: BLE001 - the view must never stop the engine; say it and go on
                self.note("bad", f"view: cannot draw ({type(exc).__name__}: {exc})")
            if self._closing.wait(FRAME_SECONDS):  # at most one frame per period
                return

    # ------------------------------------------------------------------------------------------- the prompt

    def _read_loop(self) -> None:
        service = self.service
        while not self._closing.is_set() and not service.stopping:
            self._clear_prompt_row()
            with self._prompt_lock:
                if self._closing.is_set():
                    return
                self._prompting = True
                self._prompt_set_up.clear()
            try:
                line = self._input()
            except EOFError:
                self._clear_prompt_row()
                self.note("dim", "end of input: stopping")
                service.end_of_input()
                return
            except (OSError, ValueError):  # the terminal is gone
                service.end_of_input()
                return
            finally:
                self._prompting = False
            if self._closing.is_set() or service.stopping:
                return
            self._clear_prompt_row()
            if line.strip():
                self.note("dim", PROMPT + line)
            service.submit_line(line)
            # the next prompt once the line is applied: a QUIT stops here instead of prompting over the shutdown
            with contextlib.suppress(Exception):
                service.call_async(lambda s: None).result(timeout=2.0)

    def _input(self) -> str:
        if self.stdin is sys.stdin:
            return input(PROMPT)
        with self._out_lock:
            self._emit(PROMPT)
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def _clear_prompt_row(self) -> None:
        with self._out_lock:
            if not self.plain and self._size[0]:
                self._emit(f"\x1b[{self._size[0]};1H\x1b[2K")

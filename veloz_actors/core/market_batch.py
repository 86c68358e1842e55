"""Market data in columnar batches: what crosses between processes on the market-data path (feed -> venue actors ->
bus -> subscribers) is one int64 matrix per batch instead of a list of small frozen messages.

Pickling a thousand ``BookTop``/``Trade``/``BookDelta`` objects costs about 3 us an event each way, per hop; a batch
pickles its arrays out of band in microseconds. Messages are made only where they are used: a paper venue takes the
depth diffs and trades of its own symbols (:meth:`MarketBatch.market_inputs`), a subscriber or a strategy turns the
batch back into the core's messages at the edge (:meth:`MarketBatch.events`), in order, equal to what went in.

Row layout (``rows[i]``, int64), ``KIND`` and ``SYMBOL`` (an index into ``symbols``) first, the event's times last:

======= ======== ========= ========== ========== ========= ======== ======= ========= =========
kind    2        3         4          5          6         7        8       9         10
======= ======== ========= ========== ========== ========= ======== ======= ========= =========
TOP     bid      bid qty   ask        ask qty    update id                  ts_event  ts_recv
TRADE   trade id price     qty        aggressor                             ts_event  ts_recv
DELTA   first id last id   prev id    snapshot   level at  bids     asks    ts_event  ts_recv
OTHER   index in ``objects``
======= ======== ========= ========== ========== ========= ======== ======= ========= =========

A diff's levels are rows ``level at .. level at + bids + asks`` of ``levels`` (price, qty), bids first. Any other
message (a kline, a connection notice) rides along as an object at its place, so the order of a mixed stream is kept;
its ``SYMBOL`` is its ``symbol``'s index, or -1 when it has none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..messages import BookDelta, BookTop, Side, Trade, positional

__all__ = ["DELTA", "OTHER", "TOP", "TRADE", "WIDTH", "MarketBatch", "MarketBatchBuilder"]

TOP, TRADE, DELTA, OTHER = 0, 1, 2, 3
KIND, SYMBOL, TS_EVENT, TS_RECV = 0, 1, 9, 10
WIDTH = 11
_KIND_OF = {BookTop: TOP, Trade: TRADE, BookDelta: DELTA}
_NAME_OF = {TOP: "BookTop", TRADE: "Trade", DELTA: "BookDelta"}
_CODE_OF_NAME = {name: code for code, name in _NAME_OF.items()}
_SELL = 1  # the TRADE row's aggressor column (0: BUY)
_NO_LEVELS = np.zeros((0, 2), dtype=np.int64)
_NO_ROWS = np.zeros((0, WIDTH), dtype=np.int64)
_MAKE_TOP, _MAKE_TRADE, _MAKE_DELTA = positional(BookTop), positional(Trade), positional(BookDelta)


class MarketBatch:
    """Market events of one or more symbols, in order, as columns (see the module docstring). Immutable by use:
    nothing here writes to the arrays after construction, and every selection makes new ones."""

    __slots__ = ("symbols", "rows", "levels", "objects")

    def __init__(
        self,
        symbols: tuple[str, ...],
        rows: np.ndarray,
        levels: np.ndarray | None = None,
        objects: tuple[Any, ...] = (),
    ) -> None:
        if rows.dtype != np.int64 or rows.ndim != 2 or rows.shape[1] != WIDTH:
            raise ValueError(f"rows must be an int64 matrix of {WIDTH} columns, got {rows.dtype} {rows.shape}")
        levels = _NO_LEVELS if levels is None else levels
        if levels.dtype != np.int64 or levels.ndim != 2 or levels.shape[1] != 2:
            raise ValueError(f"levels must be an int64 matrix of (price, qty) rows, got {levels.dtype} {levels.shape}")
        if len(rows):
            if int(rows[:, KIND].max()) > OTHER or int(rows[:, KIND].min()) < TOP:
                raise ValueError("a row's kind is not TOP, TRADE, DELTA or OTHER")
            sym = rows[:, SYMBOL]
            if int(sym.max()) >= len(symbols) or int(sym[rows[:, KIND] != OTHER].min(initial=0)) < 0 or sym.min() < -1:
                raise ValueError("a row's symbol index is outside the symbol table")
        self.symbols = symbols
        self.rows = rows
        self.levels = levels
        self.objects = objects

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.symbols, self.rows, self.levels, self.objects))

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.events())

    def __eq__(self, other: object) -> bool:
        if type(other) is not MarketBatch:
            return NotImplemented
        return self.events() == other.events()

    __hash__ = None  # type: ignore[assignment]  # equal by content, and mutable arrays: not a dictionary key

    def __repr__(self) -> str:
        counts = np.bincount(self.rows[:, KIND], minlength=OTHER + 1).tolist() if len(self.rows) else [0] * 4
        names = ("tops", "trades", "diffs", "others")
        kinds = ", ".join(f"{n} {name}" for name, n in zip(names, counts, strict=True) if n)
        return f"MarketBatch({len(self.rows)} events of {list(self.symbols)}: {kinds or 'empty'})"

    # ------------------------------------------------------------------------------------------------- building

    @classmethod
    def from_events(cls, events: Iterable[Any]) -> MarketBatch:
        """Columns of ``events`` (any messages: tops, trades and diffs become rows, the rest ride as objects)."""
        builder = MarketBatchBuilder()
        add = builder.add
        for event in events:
            add(event)
        return builder.build()

    @classmethod
    def of_tops(cls, symbols: tuple[str, ...], columns: Mapping[str, Any]) -> MarketBatch:
        """Tops of book from whole columns (``symbol`` indexes ``symbols``; ``bid_price``, ``bid_qty``, ``ask_price``,
        ``ask_qty``, ``update_id``, ``ts_event``, ``ts_recv``): a synthetic feed builds a batch without a loop."""
        n = len(columns["symbol"])
        rows = np.zeros((n, WIDTH), dtype=np.int64)
        rows[:, KIND] = TOP
        rows[:, SYMBOL] = columns["symbol"]
        for col, name in enumerate(("bid_price", "bid_qty", "ask_price", "ask_qty", "update_id"), start=2):
            rows[:, col] = columns[name]
        rows[:, TS_EVENT] = columns["ts_event"]
        rows[:, TS_RECV] = columns["ts_recv"]
        return cls(symbols, rows)

    # ---------------------------------------------------------------------------------------------- the messages

    def events(self) -> list[Any]:
        """The batch as the core's messages, in order."""
        return self._materialise(self.rows.tolist())

    def _materialise(self, rows: list[list[int]]) -> list[Any]:
        # the messages' positional makers (fields in declaration order): about 40% cheaper than keyword construction
        symbols = self.symbols
        objects = self.objects
        levels: list[list[int]] | None = None
        sell, buy = Side.SELL, Side.BUY
        out: list[Any] = []
        append = out.append
        for kind, sym, a, b, c, d, e, f, g, ts_event, ts_recv in rows:
            if kind == TOP:
                append(_MAKE_TOP(symbols[sym], a, b, c, d, e, ts_event, ts_recv))
            elif kind == TRADE:
                append(_MAKE_TRADE(symbols[sym], a, b, c, sell if d else buy, ts_event, ts_recv))
            elif kind == DELTA:
                if levels is None:
                    levels = self.levels.tolist()
                mid = e + f
                bids = tuple(map(tuple, levels[e:mid]))
                asks = tuple(map(tuple, levels[mid : mid + g]))
                append(_MAKE_DELTA(symbols[sym], a, b, c, bids, asks, bool(d), ts_event, ts_recv))
            else:
                append(objects[a])
        return out

    def market_inputs(self, symbols: Collection[str]) -> list[Any]:
        """The depth messages (snapshots, diffs, book resets) and public trades of ``symbols``, in order, as messages:
        what a paper venue consumes."""
        codes = [i for i, s in enumerate(self.symbols) if s in symbols]
        if not codes or not len(self.rows):
            return []
        rows = self.rows
        kind = rows[:, KIND]
        mask = (kind == TRADE) | (kind == DELTA)
        if len(codes) < len(self.symbols):
            mask &= _among(rows[:, SYMBOL], codes)
        return self._materialise(rows[mask].tolist())

    def latest(self, kinds: Collection[str] = ("BookTop",)) -> dict[str, Any]:
        """The last event of each symbol among the rows of ``kinds`` (type names of tops, trades, diffs)."""
        codes = [_CODE_OF_NAME[k] for k in kinds if k in _CODE_OF_NAME]
        rows = self.rows
        if not codes or not len(rows):
            return {}
        chosen = _among(rows[:, KIND], codes)
        sym = rows[:, SYMBOL]
        if len(self.symbols) <= _FEW:  # one pass over the column per symbol
            last = []
            for code in range(len(self.symbols)):
                hits = np.flatnonzero(chosen & (sym == code))
                if len(hits):
                    last.append(hits[-1])
            last.sort()
        else:  # many symbols (a live feed's whole batch): each symbol's first row from the end, in one sort
            picked = np.flatnonzero(chosen)
            _, first_from_end = np.unique(sym[picked][::-1], return_index=True)
            last = np.sort(picked[len(picked) - 1 - first_from_end]).tolist()
        if not last:
            return {}
        return {event.symbol: event for event in self._materialise(rows[last].tolist())}

    # ---------------------------------------------------------------------------------------------- selections

    def _subset(self, mask: np.ndarray | slice) -> MarketBatch:
        return _rebuild(self.symbols, self.rows[mask], self.levels, self.objects)

    def __getitem__(self, part: slice) -> MarketBatch:
        """A run of the batch's events (``batch[i:j]``) as a batch of its own."""
        if type(part) is not slice:
            raise TypeError(f"a MarketBatch is sliced (batch[i:j]), not indexed: got {part!r}")
        return self._subset(part)

    @classmethod
    def concat(cls, batches: Iterable[MarketBatch]) -> MarketBatch:
        """The events of ``batches`` one after the other, as one batch."""
        parts = [b for b in batches if len(b)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls((), _NO_ROWS)
        index: dict[str, int] = {}
        rows_out: list[np.ndarray] = []
        levels_out: list[np.ndarray] = []
        objects_out: list[Any] = []
        level_base = 0
        for part in parts:
            codes = np.array([index.setdefault(s, len(index)) for s in part.symbols] or [0], dtype=np.int64)
            rows = part.rows.copy()
            sym = rows[:, SYMBOL]
            has = sym >= 0
            sym[has] = codes[sym[has]]
            kind = rows[:, KIND]
            rows[kind == DELTA, 6] += level_base
            rows[kind == OTHER, 2] += len(objects_out)
            rows_out.append(rows)
            levels_out.append(part.levels)
            objects_out.extend(part.objects)
            level_base += len(part.levels)
        return _rebuild(tuple(index), np.concatenate(rows_out), np.concatenate(levels_out), tuple(objects_out))

    def select(self, kinds: Collection[str], *, exclude: bool = False) -> MarketBatch:
        """The rows whose type name is in ``kinds`` (a subscriber's filter), or with ``exclude`` those whose type is
        not; this batch itself when that is every row."""
        rows = self.rows
        if not len(rows):
            return self
        kind = rows[:, KIND]
        mask = _among(kind, [_CODE_OF_NAME[k] for k in kinds if k in _CODE_OF_NAME])
        if self.objects:
            others = np.flatnonzero(kind == OTHER)
            wanted = [type(self.objects[i]).__name__ in kinds for i in rows[others, 2].tolist()]
            mask[others[np.array(wanted, dtype=bool)]] = True
        if exclude:
            mask = ~mask
        if mask.all():
            return self
        return self._subset(mask)

    def split(self, shard_of: Mapping[str, str]) -> dict[str, MarketBatch]:
        """One batch per shard of its symbols' events (symbols without a shard, and objects without a symbol, are
        left out)."""
        shards: dict[str, list[int]] = {}
        for i, symbol in enumerate(self.symbols):
            shard = shard_of.get(symbol)
            if shard is not None:
                shards.setdefault(shard, []).append(i)
        rows = self.rows
        if len(shards) == 1:
            ((shard, codes),) = shards.items()
            if len(codes) == len(self.symbols) and not (rows[:, SYMBOL] < 0).any():
                return {shard: self}
        out: dict[str, MarketBatch] = {}
        for shard, codes in shards.items():
            mask = _among(rows[:, SYMBOL], codes)
            if mask.any():
                out[shard] = self._subset(mask)
        return out

    def times(self) -> tuple[int, int] | None:
        """(first, last) receive time of the batch's market rows; None when it has none."""
        rows = self.rows
        market = rows[rows[:, KIND] != OTHER]
        if not len(market):
            return None
        return int(market[0, TS_RECV]), int(market[-1, TS_RECV])


_FEW = 4  # up to this many kinds or symbols, a comparison per value beats numpy's set operations


def _among(column: np.ndarray, codes: list[int]) -> np.ndarray:
    """``column``'s rows whose value is one of ``codes`` (a few kinds or symbols: comparisons beat ``np.isin``)."""
    if len(codes) > _FEW:
        return np.isin(column, codes)
    mask = np.zeros(len(column), dtype=bool)
    for code in codes:
        mask |= column == code
    return mask


def _rebuild(symbols: tuple[str, ...], rows: np.ndarray, levels: np.ndarray, objects: tuple[Any, ...]) -> MarketBatch:
    batch = MarketBatch.__new__(MarketBatch)  # the arrays were checked when the batch was made
    batch.symbols, batch.rows, batch.levels, batch.objects = symbols, rows, levels, objects
    return batch


class MarketBatchBuilder:
    """A batch built one event at a time: a market-data client's pending output. Tops and trades go in as their fields
    (no message is made for them at all), any other message whole; :meth:`build` makes the batch.

    A pending row can be dropped again (:meth:`drop`: a kline update that a later one of the same candle superseded).
    """

    __slots__ = ("_index", "_rows", "_levels", "_objects", "_holes")

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._rows: list[tuple[int, ...] | None] = []
        self._levels: list[tuple[int, int]] = []
        self._objects: list[Any] = []
        self._holes = False

    def __len__(self) -> int:
        return len(self._rows)

    def _code(self, symbol: str) -> int:
        code = self._index.get(symbol)
        if code is None:
            code = self._index[symbol] = len(self._index)
        return code

    def top(
        self, symbol: str, bid: int, bid_qty: int, ask: int, ask_qty: int, update_id: int, ts_event: int, ts_recv: int
    ) -> None:
        code = self._index.get(symbol)  # _code() written out: a live feed's most frequent call
        if code is None:
            code = self._code(symbol)
        self._rows.append((TOP, code, bid, bid_qty, ask, ask_qty, update_id, 0, 0, ts_event, ts_recv))

    def trade(self, symbol: str, trade_id: int, price: int, qty: int, sell: bool, ts_event: int, ts_recv: int) -> None:
        code = self._index.get(symbol)
        if code is None:
            code = self._code(symbol)
        self._rows.append((TRADE, code, trade_id, price, qty, _SELL if sell else 0, 0, 0, 0, ts_event, ts_recv))

    def add(self, e: Any) -> int:
        """Append one message (as a row when it is a top, a trade or a diff); returns its row's index."""
        kind = _KIND_OF.get(type(e), OTHER)
        rows = self._rows
        if kind == TOP:
            self.top(e.symbol, e.bid_price, e.bid_qty, e.ask_price, e.ask_qty, e.update_id, e.ts_event, e.ts_recv)
        elif kind == TRADE:
            self.trade(e.symbol, e.trade_id, e.price, e.qty, e.aggressor is Side.SELL, e.ts_event, e.ts_recv)
        elif kind == DELTA:
            levels = self._levels
            at = len(levels)
            levels.extend(e.bids)
            levels.extend(e.asks)
            rows.append(
                (DELTA, self._code(e.symbol), e.first_update_id, e.last_update_id, e.prev_update_id, int(e.is_snapshot),
                 at, len(e.bids), len(e.asks), e.ts_event, e.ts_recv)
            )  # fmt: skip
        else:
            symbol = getattr(e, "symbol", None)
            code = -1 if symbol is None else self._code(symbol)
            rows.append((OTHER, code, len(self._objects), 0, 0, 0, 0, 0, 0, 0, 0))
            self._objects.append(e)
        return len(rows) - 1

    def object_at(self, row: int) -> Any:
        """The message of a row that holds one (None for a top, trade or diff row, or a dropped one)."""
        values = self._rows[row]
        return self._objects[values[2]] if values is not None and values[0] == OTHER else None

    def drop(self, row: int) -> None:
        """Leave a pending row out of the batch."""
        self._rows[row] = None
        self._holes = True

    def build(self) -> MarketBatch:
        """The batch of everything added (and not dropped), in order."""
        rows = [r for r in self._rows if r is not None] if self._holes else self._rows
        matrix = np.array(rows, dtype=np.int64) if rows else _NO_ROWS
        levels = np.array(self._levels, dtype=np.int64) if self._levels else _NO_LEVELS
        return _rebuild(tuple(self._index), matrix, levels, tuple(self._objects))

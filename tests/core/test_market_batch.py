"""Columnar market batches: every message goes in and comes back out equal, in order; selections, shards and the
latest prices agree with the same questions asked of the messages; bad shapes are refused by name."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from veloz_actors.core.market_batch import DELTA, OTHER, WIDTH, MarketBatch, MarketBatchBuilder
from veloz_actors.data.loaders import load_market_events
from veloz_actors.messages import BookDelta, BookTop, Kline, Side, Trade, VenueConnection

CAPTURE = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "ticks_l2" / "binance_spot_btcusdt_20230405_ws.txt.gz"
)


def _top(symbol: str, update_id: int, bid: int = 100) -> BookTop:
    return BookTop(
        symbol=symbol,
        bid_price=bid,
        bid_qty=1,
        ask_price=bid + 1,
        ask_qty=2,
        update_id=update_id,
        ts_event=5,
        ts_recv=6,
    )


def _trade(symbol: str, trade_id: int, side: Side = Side.SELL) -> Trade:
    return Trade(symbol=symbol, trade_id=trade_id, price=101, qty=3, aggressor=side, ts_event=7, ts_recv=8)


def _delta(symbol: str, first: int, *, snapshot: bool = False) -> BookDelta:
    return BookDelta(
        symbol=symbol,
        first_update_id=first,
        last_update_id=first + 2,
        bids=((100, 5), (99, 0)),
        asks=() if snapshot else ((102, 1),),
        is_snapshot=snapshot,
        ts_event=9,
        ts_recv=10,
    )


def _kline(symbol: str) -> Kline:
    return Kline(
        symbol=symbol, interval_ns=60_000_000_000, open_time=0, open=1, high=2, low=1, close=2, volume=3,
        closed=False, ts_event=11, ts_recv=12,
    )  # fmt: skip


def _mixed() -> list[object]:
    return [
        _top("BTCUSDT", 1),
        _trade("ETHUSDT", 2, Side.BUY),
        _delta("BTCUSDT", 3, snapshot=True),
        _kline("ETHUSDT"),
        _delta("ETHUSDT", 7),
        _trade("BTCUSDT", 4),
        VenueConnection(venue="binance", state="connected", detail="", ts=13),
        _top("ETHUSDT", 5, bid=200),
        _top("BTCUSDT", 6, bid=300),
    ]


def test_a_mixed_stream_round_trips_equal_and_in_order_through_pickle():
    events = _mixed()
    batch = MarketBatch.from_events(events)
    assert len(batch) == len(events)
    assert batch.events() == events and list(batch) == events
    back = pickle.loads(pickle.dumps(batch, protocol=5))
    assert back.events() == events and back == batch
    assert type(back.events()[1].aggressor) is Side and back.events()[2].is_snapshot is True


def test_a_recorded_capture_round_trips_exactly():
    events = load_market_events(CAPTURE)
    assert {type(e) for e in events} >= {BookDelta, Trade}
    batch = MarketBatch.from_events(events)
    assert batch.events() == events
    deltas = batch.rows[batch.rows[:, 0] == DELTA]
    assert len(batch.levels) == sum(len(e.bids) + len(e.asks) for e in events if type(e) is BookDelta) > len(deltas)


def test_selections_agree_with_the_messages():
    events = _mixed()
    batch = MarketBatch.from_events(events)
    for kinds in ({"BookTop"}, {"Trade", "Kline"}, {"BookDelta", "VenueConnection"}, {"OrderFilled"}):
        assert batch.select(kinds).events() == [e for e in events if type(e).__name__ in kinds]
    assert batch.select({"BookTop", "Trade", "BookDelta", "Kline", "VenueConnection"}) is batch
    assert batch.select({"VenueConnection"}, exclude=True).events() == [
        e for e in events if type(e) is not VenueConnection
    ]
    assert batch.select({"OrderFilled"}, exclude=True) is batch
    assert batch.market_inputs({"BTCUSDT"}) == [events[2], events[5]]
    assert batch.market_inputs({"BTCUSDT", "ETHUSDT"}) == [events[1], events[2], events[4], events[5]]
    assert batch.market_inputs({"XRPUSDT"}) == []
    assert batch.latest() == {"ETHUSDT": events[7], "BTCUSDT": events[8]}
    assert batch.latest(("Trade",)) == {"ETHUSDT": events[1], "BTCUSDT": events[5]}
    assert batch.latest(("BookTop", "Trade")) == {"ETHUSDT": events[7], "BTCUSDT": events[8]}
    assert batch.times() == (6, 6)


def test_split_by_shard_keeps_each_symbols_events_and_objects_in_order():
    events = _mixed()
    batch = MarketBatch.from_events(events)
    shards = batch.split({"BTCUSDT": "a", "ETHUSDT": "b"})
    assert shards["a"].events() == [e for e in events if getattr(e, "symbol", None) == "BTCUSDT"]
    assert shards["b"].events() == [e for e in events if getattr(e, "symbol", None) == "ETHUSDT"]
    only_btc = batch.split({"BTCUSDT": "a"})
    assert list(only_btc) == ["a"] and only_btc["a"].events() == shards["a"].events()
    tops = MarketBatch.from_events([_top("BTCUSDT", 1), _top("ETHUSDT", 2)])
    assert tops.split({"BTCUSDT": "x", "ETHUSDT": "x"})["x"] is tops  # one shard of every symbol: no copy
    # a notice without a symbol belongs to no shard
    assert all(type(e) is not VenueConnection for shard in shards.values() for e in shard.events())


def test_tops_from_whole_columns_equal_the_messages():
    batch = MarketBatch.of_tops(
        ("BTCUSDT", "ETHUSDT"),
        {
            "symbol": np.array([0, 1]), "bid_price": np.array([100, 200]), "bid_qty": 1, "ask_price": np.array([101, 201]),
            "ask_qty": 2, "update_id": np.array([1, 2]), "ts_event": 5, "ts_recv": 6,
        },
    )  # fmt: skip
    assert batch.events() == [_top("BTCUSDT", 1), _top("ETHUSDT", 2, bid=200)]


def test_an_empty_batch_is_harmless():
    batch = MarketBatch.from_events([])
    assert len(batch) == 0 and batch.events() == [] and batch.latest() == {} and batch.times() is None
    assert batch.split({"BTCUSDT": "a"}) == {} and batch.market_inputs({"BTCUSDT"}) == []


def test_bad_shapes_are_refused_by_name():
    with pytest.raises(ValueError, match="int64 matrix of 11 columns"):
        MarketBatch(("BTCUSDT",), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="int64 matrix of 11 columns"):
        MarketBatch(("BTCUSDT",), np.zeros((2, WIDTH), dtype=np.float64))
    rows = np.zeros((1, WIDTH), dtype=np.int64)
    rows[0, 1] = 3
    with pytest.raises(ValueError, match="symbol table"):
        MarketBatch(("BTCUSDT",), rows)
    rows[0, 1] = -1
    with pytest.raises(ValueError, match="symbol table"):
        MarketBatch(("BTCUSDT",), rows)  # only an object may lack a symbol
    rows[0, 0], rows[0, 1] = OTHER + 1, 0
    with pytest.raises(ValueError, match="kind"):
        MarketBatch(("BTCUSDT",), rows)
    with pytest.raises(ValueError, match="levels"):
        MarketBatch(("BTCUSDT",), np.zeros((0, WIDTH), dtype=np.int64), np.zeros((1, 3), dtype=np.int64))


def test_slices_and_concatenation_give_back_the_same_stream():
    events = _mixed()
    batch = MarketBatch.from_events(events)
    assert batch[2:5].events() == events[2:5] and batch[:0].events() == []
    with pytest.raises(TypeError, match="sliced"):
        batch[0]  # noqa: B018
    parts = [MarketBatch.from_events(events[:3]), MarketBatch.from_events([]), MarketBatch.from_events(events[3:])]
    joined = MarketBatch.concat(parts)
    assert joined.events() == events
    assert MarketBatch.concat([parts[0]]) is parts[0] and MarketBatch.concat([]).events() == []
    # symbols numbered differently in each part, diffs' levels and objects shifted: still the same messages
    reordered = [MarketBatch.from_events(events[4:]), MarketBatch.from_events(events[:4])]
    assert MarketBatch.concat(reordered).events() == events[4:] + events[:4]


def test_a_builder_takes_fields_or_messages_and_can_drop_a_pending_row():
    events = _mixed()
    builder = MarketBatchBuilder()
    for e in events:
        if type(e) is BookTop:
            builder.top(e.symbol, e.bid_price, e.bid_qty, e.ask_price, e.ask_qty, e.update_id, e.ts_event, e.ts_recv)
        elif type(e) is Trade:
            builder.trade(e.symbol, e.trade_id, e.price, e.qty, e.aggressor is Side.SELL, e.ts_event, e.ts_recv)
        else:
            builder.add(e)
    assert len(builder) == len(events) and builder.build().events() == events
    assert builder.object_at(3) == events[3] and builder.object_at(0) is None
    builder.drop(3)
    assert builder.object_at(3) is None
    assert builder.build().events() == events[:3] + events[4:]


def test_latest_agrees_with_the_messages_for_few_and_many_symbols():
    rng = np.random.default_rng(3)
    for n_symbols in (2, 40):  # a shard's few symbols, and a live feed's whole batch
        symbols = [f"S{i}USDT" for i in range(n_symbols)]
        events: list = []
        for i in range(600):
            symbol = symbols[int(rng.integers(n_symbols))]
            events.append(_top(symbol, i) if rng.random() < 0.7 else _trade(symbol, i))
        batch = MarketBatch.from_events(events)
        for kinds in (("BookTop",), ("Trade",), ("BookTop", "Trade")):
            expected = {e.symbol: e for e in events if type(e).__name__ in kinds}
            got = batch.latest(kinds)
            assert got == expected and list(got) == sorted(expected, key=lambda s: events.index(expected[s]))

"""Messages: frozen values, and the one JSON codec that round-trips every one of them exactly."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veloz_actors import InvalidInput
from veloz_actors import messages as m
from veloz_actors.messages import decode, encode, from_dict, to_dict

ints = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
units = st.integers(min_value=0, max_value=2**63 - 1)
ts = st.integers(min_value=0, max_value=2**63 - 1)
text = st.text(max_size=20)
symbols = st.sampled_from(["BTCUSDT", "ETHUSDT", "BNBBTC"])
levels = st.lists(st.tuples(units, units), max_size=4).map(tuple)
balances = st.lists(st.builds(m.Balance, asset=symbols, free=units, locked=units), max_size=3).map(tuple)
optional_price = st.none() | units


def _enum(cls: type) -> st.SearchStrategy:
    return st.sampled_from(list(cls))


STRATEGIES: dict[type, st.SearchStrategy] = {
    m.Trade: st.builds(m.Trade, symbol=symbols, trade_id=ints, price=units, qty=units, aggressor=_enum(m.Side),
                       ts_event=ts, ts_recv=ts),
    m.BookTop: st.builds(m.BookTop, symbol=symbols, bid_price=units, bid_qty=units, ask_price=units, ask_qty=units,
                         update_id=ints, ts_event=ts, ts_recv=ts),
    m.BookDelta: st.builds(m.BookDelta, symbol=symbols, first_update_id=ints, last_update_id=ints,
                           prev_update_id=ints, bids=levels, asks=levels, is_snapshot=st.booleans(), ts_event=ts,
                           ts_recv=ts),
    m.Kline: st.builds(m.Kline, symbol=symbols, interval_ns=units, open_time=ts, open=units, high=units, low=units,
                       close=units, volume=units, closed=st.booleans(), ts_event=ts, ts_recv=ts),
    m.Ticker: st.builds(m.Ticker, symbol=symbols, last_price=units, open_price=units, high_price=units,
                        low_price=units, volume=units, quote_volume=units, ts_event=ts, ts_recv=ts),
    m.FundingRate: st.builds(m.FundingRate, symbol=symbols, rate=ints, funding_time=ts, ts_event=ts, ts_recv=ts),
    m.MarkPrice: st.builds(m.MarkPrice, symbol=symbols, mark_price=units, index_price=units, funding_rate=ints,
                           next_funding_time=ts, ts_event=ts, ts_recv=ts),
    m.PlaceOrder: st.builds(m.PlaceOrder, client_order_id=text, account_id=text, symbol=symbols,
                            side=_enum(m.Side), order_type=_enum(m.OrderType), qty=units, price=optional_price,
                            quote_qty=optional_price, tif=_enum(m.TimeInForce), ts=ts),
    m.CancelOrder: st.builds(m.CancelOrder, client_order_id=text, account_id=text, ts=ts),
    m.ResetCircuitBreaker: st.builds(m.ResetCircuitBreaker, account_id=text, ts=ts),
    m.Tick: st.builds(m.Tick, ts=ts),
    m.OrderAccepted: st.builds(m.OrderAccepted, client_order_id=text, order_id=units, account_id=text,
                               symbol=symbols, side=_enum(m.Side), order_type=_enum(m.OrderType),
                               tif=_enum(m.TimeInForce), price=optional_price, qty=units, ts=ts),
    m.OrderRejected: st.builds(m.OrderRejected, client_order_id=text, account_id=text, symbol=symbols,
                               side=st.none() | _enum(m.Side), order_type=st.none() | _enum(m.OrderType),
                               price=optional_price, qty=units, reason=_enum(m.RejectReason), detail=text, ts=ts),
    m.OrderFilled: st.builds(m.OrderFilled, client_order_id=text, order_id=units, account_id=text, symbol=symbols,
                             side=_enum(m.Side), trade_id=units, price=units, qty=units, fee=units, fee_asset=symbols,
                             liquidity=_enum(m.Liquidity), cum_qty=units, leaves_qty=units, ts=ts),
    m.OrderCancelled: st.builds(m.OrderCancelled, client_order_id=text, order_id=units, account_id=text,
                                symbol=symbols, filled_qty=units, reason=_enum(m.RejectReason), ts=ts),
    m.OrderExpired: st.builds(m.OrderExpired, client_order_id=text, order_id=units, account_id=text,
                              symbol=symbols, filled_qty=units, reason=_enum(m.RejectReason), ts=ts),
    m.AccountUpdated: st.builds(m.AccountUpdated, account_id=text, balances=balances, ts=ts),
    m.PositionUpdated: st.builds(m.PositionUpdated, account_id=text, symbol=symbols, qty=ints,
                                 avg_entry_price=units, cost=ints, realized_pnl=ints, unrealized_pnl=ints,
                                 mark_price=units, ts=ts),
    m.CircuitBreakerTripped: st.builds(m.CircuitBreakerTripped, account_id=text, reason=text, equity=ints,
                                       peak_equity=ints, ts=ts),
    m.Error: st.builds(m.Error, code=text, message=text, ts=ts),
    m.VenueConnection: st.builds(m.VenueConnection, venue=text, state=text, detail=text, symbol=text, reconnects=ints,
                                 resyncs=ints, ts=ts),
    m.HaltTrading: st.builds(m.HaltTrading, account_id=text, reason=text, ts=ts),
    m.CancelAllOrders: st.builds(m.CancelAllOrders, account_id=text, ts=ts),
    m.SubmitOrder: st.builds(m.SubmitOrder, command=st.builds(m.PlaceOrder, client_order_id=text, account_id=text,
                             symbol=symbols, side=_enum(m.Side), order_type=_enum(m.OrderType), qty=units,
                             price=optional_price, quote_qty=optional_price, tif=_enum(m.TimeInForce), ts=ts),
                             order_id=units, limit=optional_price),
    m.SubmitCancel: st.builds(m.SubmitCancel, client_order_id=text, account_id=text, symbol=symbols, ts=ts),
    m.VenueOrderAccepted: st.builds(m.VenueOrderAccepted, venue=text, client_order_id=text, account_id=text,
                                    symbol=symbols, venue_order_id=text, ts=ts),
    m.VenueOrderRejected: st.builds(m.VenueOrderRejected, venue=text, client_order_id=text, account_id=text,
                                    symbol=symbols, reason=_enum(m.RejectReason), detail=text, ts=ts),
    m.VenueOrderFilled: st.builds(m.VenueOrderFilled, venue=text, client_order_id=text, account_id=text,
                                  symbol=symbols, venue_order_id=text, trade_id=units, price=units, qty=units,
                                  fee=units, fee_asset=symbols, liquidity=_enum(m.Liquidity), leaves_qty=units, ts=ts),
    m.VenueOrderCancelled: st.builds(m.VenueOrderCancelled, venue=text, client_order_id=text, account_id=text,
                                     symbol=symbols, reason=_enum(m.RejectReason), ts=ts),
    m.VenueOrderExpired: st.builds(m.VenueOrderExpired, venue=text, client_order_id=text, account_id=text,
                                   symbol=symbols, reason=_enum(m.RejectReason), ts=ts),
    m.VenueCancelRejected: st.builds(m.VenueCancelRejected, venue=text, client_order_id=text, account_id=text,
                                     symbol=symbols, reason=_enum(m.RejectReason), detail=text, ts=ts),
    m.VenueOrderStatusUnknown: st.builds(m.VenueOrderStatusUnknown, venue=text, client_order_id=text,
                                         account_id=text, symbol=symbols, detail=text, ts=ts),
    m.VenueBalance: st.builds(m.VenueBalance, venue=text, account_id=text, asset=symbols, free=units, locked=units,
                              ts=ts),
    m.VenueBalanceDelta: st.builds(m.VenueBalanceDelta, venue=text, account_id=text, asset=symbols, delta=ints, ts=ts),
}  # fmt: skip

ALL_TYPES = sorted(m._TYPES.values(), key=lambda cls: cls.TYPE)


def test_every_message_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(ALL_TYPES)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_message_round_trips_through_encode_and_decode(cls: type) -> None:
    @settings(max_examples=40, deadline=None)
    @given(STRATEGIES[cls])
    def check(message: m.Message) -> None:
        raw = encode(message)
        back = decode(raw)
        assert back == message
        assert type(back) is cls
        assert encode(back) == raw

    check()


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_message_round_trips_through_to_dict_and_from_dict(cls: type) -> None:
    @settings(max_examples=20, deadline=None)
    @given(STRATEGIES[cls])
    def check(message: m.Message) -> None:
        data = to_dict(message)
        assert data["type"] == cls.TYPE
        assert from_dict(data) == message
        assert orjson.loads(encode(message)) == data

    check()


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_message_is_frozen_and_slotted(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in cls.__dict__


def test_message_fields_cannot_be_assigned() -> None:
    tick = m.Tick(ts=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tick.ts = 2  # type: ignore[misc]


def test_decoded_enums_are_enum_members_not_strings() -> None:
    order = m.PlaceOrder(client_order_id="c", symbol="BTCUSDT", side=m.Side.SELL, order_type=m.OrderType.LIMIT,
                         qty=1, price=2, tif=m.TimeInForce.FOK, ts=3)  # fmt: skip
    back = decode(encode(order))
    assert back.side is m.Side.SELL and back.tif is m.TimeInForce.FOK


def test_circuit_breaker_reason_stays_free_text() -> None:
    event = m.CircuitBreakerTripped(account_id="a", reason="drawdown 0.3", equity=1, peak_equity=2, ts=3)
    assert decode(encode(event)).reason == "drawdown 0.3"


def test_encode_starts_with_the_type_tag() -> None:
    assert encode(m.Tick(ts=5)) == b'{"type":"Tick","ts":5}'


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"type": "Nope", "ts": 1}', b'{"ts": 1}', b'{"type": "Tick"}',
     b'{"type": "Tick", "ts": 1, "extra": 2}', b'{"type": "PlaceOrder", "client_order_id": "c", "symbol": "X", '
     b'"side": "UP", "order_type": "LIMIT", "ts": 1}'],
)  # fmt: skip
def test_decode_rejects_bad_payloads_with_invalid_input(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode(raw)


def _plain_fields(cls: type) -> list[tuple[str, str]]:
    """(name, annotation) of the fields held as a bare int, str or bool (optionally None)."""
    out = []
    for f in dataclasses.fields(cls):
        kinds = {k.strip() for k in str(f.type).split("|")} - {"None"}
        if kinds <= {"int", "str", "bool"}:
            out.append((f.name, str(f.type)))
    return out


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_a_field_of_the_wrong_type_is_invalid_input_naming_it(cls: type) -> None:
    """A journal line decodes only into a message the engine can apply: a quantity written as a string (or a float, a
    bool, a list) is refused naming the field; before, it decoded and crashed the engine applying it."""

    @settings(max_examples=5, deadline=None)
    @given(STRATEGIES[cls])
    def check(message: m.Message) -> None:
        for name, annotation in _plain_fields(cls):
            for wrong in ("1", 1.5, True, [1]) if "str" not in annotation else (5, None, ["x"]):
                if wrong is None and "None" in annotation or (wrong is True and "bool" in annotation):
                    continue
                data = to_dict(message) | {name: wrong}
                with pytest.raises(InvalidInput, match=f"^{cls.TYPE}: {name} must be "):
                    from_dict(data)

    check()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "BookDelta", "symbol": "BTCUSDT", "first_update_id": 1, "last_update_id": 1, "prev_update_id": 0,
          "bids": [["60000", 1]], "asks": [], "is_snapshot": False, "ts_event": 1, "ts_recv": 1},
         "BookDelta: levels must be [price, quantity] pairs of ints"),
        ({"type": "AccountUpdated", "account_id": "main", "balances": [{"asset": "USDT", "free": 1.5, "locked": 0}],
          "ts": 1}, "AccountUpdated: a balance is an asset name and int free and locked amounts"),
        ({"type": "SubmitOrder", "venue": "SIM", "order_id": 1, "ts": 1,
          "command": {"client_order_id": "c", "symbol": "BTCUSDT", "side": "BUY", "order_type": "MARKET",
                      "qty": "abc", "ts": 1}},
         "SubmitOrder: PlaceOrder: qty must be int, got str 'abc'"),
        ({"type": "PlaceOrder", "client_order_id": "x", "symbol": "BTCUSDT", "side": "BUY", "order_type": "MARKET",
          "qty": "abc", "ts": 1}, "PlaceOrder: qty must be int, got str 'abc'"),
    ],
)  # fmt: skip
def test_nested_values_of_the_wrong_type_are_refused(data: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_dict(data)
    assert str(caught.value).startswith(message)


def test_from_dict_leaves_the_callers_dict_alone() -> None:
    data = {"type": "Tick", "ts": 1}
    assert from_dict(data) == m.Tick(ts=1) and data == {"type": "Tick", "ts": 1}


def test_constructor_takes_keywords_only_with_defaults_and_no_strangers() -> None:
    order = m.PlaceOrder(client_order_id="c", symbol="BTCUSDT", side=m.Side.BUY, order_type=m.OrderType.MARKET, ts=1)
    assert (order.account_id, order.qty, order.price, order.tif) == ("main", 0, None, m.TimeInForce.GTC)
    with pytest.raises(TypeError):
        m.Tick(1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="colour"):
        m.Tick(ts=1, colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="ts"):
        m.Tick()  # type: ignore[call-arg]


def test_messages_replace_pickle_and_hash_as_dataclasses() -> None:
    import pickle

    balance = m.Balance(asset="USDT", free=5, locked=1)
    event = m.AccountUpdated(account_id="a", balances=(balance,), ts=3)
    assert dataclasses.replace(event, ts=4) == m.AccountUpdated(account_id="a", balances=(balance,), ts=4)
    assert pickle.loads(pickle.dumps(event)) == event
    assert hash(event) == hash(m.AccountUpdated(account_id="a", balances=(m.Balance(asset="USDT", free=5, locked=1),),
                                                ts=3))  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        balance.free = 6  # type: ignore[misc]


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_builder_and_positional_make_the_message_the_class_makes(cls: type) -> None:
    build, make = m.builder(cls), m.positional(cls)

    @settings(max_examples=20, deadline=None)
    @given(STRATEGIES[cls])
    def check(message: m.Message) -> None:
        values = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
        for made in (build(**values), make(*values.values())):
            assert type(made) is cls and made == message and hash(made) == hash(message)
            assert encode(made) == encode(message)
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(made, next(iter(values)), None)

    check()


def test_a_message_class_declares_its_own_fields_which_are_the_slots_of_its_base() -> None:
    assert type(m.Tick(ts=1)).__slots__ == () and m.Tick.__mro__[1].__slots__ == ("ts",)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="derives from no other class"):

        @m._message
        class Later(m.Tick):
            TYPE: ClassVar[str] = "Later"
            late: int = 0


def test_builder_takes_the_class_keywords_and_defaults_and_no_strangers() -> None:
    build = m.builder(m.PlaceOrder)
    order = build(client_order_id="c", symbol="BTCUSDT", side=m.Side.BUY, order_type=m.OrderType.MARKET, ts=1)
    assert order == m.PlaceOrder(client_order_id="c", symbol="BTCUSDT", side=m.Side.BUY,
                                 order_type=m.OrderType.MARKET, ts=1)  # fmt: skip
    with pytest.raises(TypeError, match="colour"):
        m.builder(m.Tick)(ts=1, colour="red")
    with pytest.raises(TypeError, match="ts"):
        m.builder(m.Tick)()


@pytest.mark.parametrize("cls", [m.Side, m.OrderType, m.TimeInForce, m.OrderStatus, m.Liquidity, m.RejectReason])
def test_members_are_the_enum_members_themselves(cls: type) -> None:
    fast = m.members(cls)
    for name, member in cls.__members__.items():
        assert getattr(fast, name) is member

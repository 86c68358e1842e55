"""The ledger: atomic reservations, release, settlement with fees, conservation, and positions."""

from __future__ import annotations

import pytest

from veloz_actors import InvalidInput
from veloz_actors.core.account import Ledger, Position
from veloz_actors.messages import Balance
from veloz_actors.testing import cancel, d, engine_config, place
from veloz_actors.venues.engine import Engine


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.deposit("a", "USDT", d("1000"))
    ledger.deposit("b", "BTC", d("1"))
    return ledger


def test_reserve_moves_free_to_locked() -> None:
    ledger = _ledger()
    assert ledger.reserve("a", "USDT", d("400"))
    assert ledger.balances("a") == {"USDT": (d("600"), d("400"))}


def test_reserve_beyond_free_changes_nothing() -> None:
    ledger = _ledger()
    ledger.reserve("a", "USDT", d("400"))
    assert not ledger.reserve("a", "USDT", d("600.00000001"))
    assert ledger.balances("a") == {"USDT": (d("600"), d("400"))}


def test_reserve_of_unknown_asset_or_negative_amount_fails() -> None:
    ledger = _ledger()
    assert not ledger.reserve("a", "ETH", 1)
    assert not ledger.reserve("a", "USDT", -1)
    assert ledger.balances("a") == {"USDT": (d("1000"), 0)}


def test_release_moves_locked_back_to_free() -> None:
    ledger = _ledger()
    ledger.reserve("a", "USDT", d("400"))
    ledger.release("a", "USDT", d("150"))
    assert ledger.balances("a") == {"USDT": (d("750"), d("250"))}


def test_release_of_more_than_locked_is_a_broken_invariant() -> None:
    ledger = _ledger()
    with pytest.raises(AssertionError):
        ledger.release("a", "USDT", 1)


def test_negative_deposit_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        Ledger().deposit("a", "USDT", -1)


def test_settle_swaps_locked_funds_and_collects_fees() -> None:
    ledger = _ledger()
    ledger.reserve("a", "USDT", d("100.1"))
    ledger.reserve("b", "BTC", d("0.001"))
    ledger.settle(buyer="a", seller="b", base="BTC", quote="USDT", qty=d("0.001"), notional=d("100"),
                  buyer_fee=d("0.1"), seller_fee=d("0.1"))  # fmt: skip
    assert ledger.balances("a") == {"BTC": (d("0.001"), 0), "USDT": (d("899.9"), 0)}
    assert ledger.balances("b") == {"BTC": (d("0.999"), 0), "USDT": (d("99.9"), 0)}
    assert ledger.fees_collected == {"USDT": d("0.2")}
    assert ledger.totals() == ledger.deposited == {"USDT": d("1000"), "BTC": d("1")}


def test_settle_beyond_locked_funds_is_a_broken_invariant() -> None:
    ledger = _ledger()
    with pytest.raises(AssertionError):
        ledger.settle(buyer="a", seller="b", base="BTC", quote="USDT", qty=1, notional=1, buyer_fee=0, seller_fee=0)


def test_account_event_lists_every_asset_sorted_and_follows_changes() -> None:
    ledger = _ledger()
    ledger.deposit("a", "BTC", 5)
    first = ledger.account_event("a", ts=1)
    ledger.reserve("a", "USDT", 7)
    second = ledger.account_event("a", ts=2)
    assert first.balances == (Balance(asset="BTC", free=5, locked=0), Balance(asset="USDT", free=d("1000"), locked=0))
    assert second.balances[1] == Balance(asset="USDT", free=d("1000") - 7, locked=7)


def test_account_event_follows_a_fee_in_an_asset_the_account_never_held() -> None:
    ledger = _ledger()
    ledger.reserve("a", "USDT", d("100"))
    ledger.account_event("a", ts=1)  # every balance reported as it stands
    ledger.trade(
        "a", pay_asset="USDT", pay=d("100"), receive_asset="BTC", receive=d("0.001"), fee_asset="BNB", fee=20,
        locked_available=d("100"),
    )  # fmt: skip
    assert ledger.account_event("a", ts=2).balances == (
        Balance(asset="BNB", free=-20, locked=0),  # (a fee the venue took from a balance the ledger did not know)
        Balance(asset="BTC", free=d("0.001"), locked=0),
        Balance(asset="USDT", free=d("900"), locked=0),
    )
    ledger.deposit("a", "BNB", 30)
    assert ledger.account_event("a", ts=3).balances[0] == Balance(asset="BNB", free=10, locked=0)


def test_a_ledger_pickled_before_the_balances_were_kept_in_order_reports_every_balance() -> None:
    ledger = _ledger()
    ledger.deposit("a", "BTC", 5)
    ledger.account_event("a", ts=1)
    ledger.reserve("a", "USDT", 7)
    state = ledger.__getstate__()
    assert isinstance(state, tuple)
    state[1]["_events"]["a"].pop("USDT")  # as a snapshot written before kept it: a changed balance had no entry
    restored = Ledger.__new__(Ledger)
    restored.__setstate__(state)
    assert restored.account_event("a", ts=2).balances == (
        Balance(asset="BTC", free=5, locked=0),
        Balance(asset="USDT", free=d("1000") - 7, locked=7),
    )


# ------------------------------------------------------------------------------------------- reservations by orders


def _engine() -> Engine:
    return Engine(engine_config())


def test_buy_reserves_notional_plus_the_maximum_fee() -> None:
    engine = _engine()
    engine.apply(place("b", "BUY", "0.01", "60000"))
    assert engine.ledger.locked("main", "USDT") == d("600") + d("0.6")


def test_sell_reserves_the_quantity() -> None:
    engine = _engine()
    engine.apply(place("s", "SELL", "0.25", "60000"))
    assert engine.ledger.balances("main")["BTC"] == (d("1.75"), d("0.25"))


def test_insufficient_funds_rejects_and_reserves_nothing() -> None:
    engine = _engine()
    before = engine.ledger.balances("main")
    [rejected] = engine.apply(place("b", "BUY", "2", "60000"))
    assert rejected.reason == "INSUFFICIENT_FUNDS"
    assert engine.ledger.balances("main") == before


def test_cancel_releases_the_whole_reservation() -> None:
    engine = _engine()
    before = engine.ledger.balances("main")
    engine.apply(place("b", "BUY", "0.01", "60000"))
    engine.apply(cancel("b", ts=2))
    assert engine.ledger.balances("main") == before


def test_fill_settles_both_sides_and_releases_price_improvement() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "0.01", "59000", account="other"))
    engine.apply(place("bid", "BUY", "0.01", "60000"))
    ledger = engine.ledger
    # main paid 590 + 0.59 taker fee; nothing stays locked for a filled order
    assert ledger.balances("main")["USDT"] == (d("100000") - d("590.59"), 0)
    assert ledger.balances("main")["BTC"] == (d("2.01"), 0)
    assert ledger.balances("other")["USDT"] == (d("100000") + d("590") - d("0.59"), 0)
    assert ledger.fees_collected == {"USDT": d("1.18")}


def test_partial_fill_keeps_exactly_what_the_rest_needs_locked() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "0.004", "60000", account="other"))
    engine.apply(place("bid", "BUY", "0.01", "60000"))
    rest = d("60000") * d("0.006") // 10**8
    assert engine.ledger.locked("main", "USDT") == rest + rest // 1000


def test_fee_is_rounded_up_to_the_smallest_unit() -> None:
    engine = _engine()
    # 0.00017 BTC x 60000.01 = 10.2000017 USDT; 0.1 % of it is 0.0102000017 -> 0.01020001 charged
    engine.apply(place("ask", "SELL", "0.00017", "60000.01", account="other"))
    events = engine.apply(place("bid", "BUY", "0.00017", "60000.01"))
    fees = {e.account_id: e.fee for e in events if type(e).__name__ == "OrderFilled"}
    assert fees == {"main": d("0.01020001"), "other": d("0.01020001")}


def test_fees_over_many_partial_fills_are_the_total_rounded_up_once() -> None:
    engine = _engine()
    for i in range(3):
        engine.apply(place(f"a{i}", "SELL", "0.00017", "60000.01", account="other"))
    events = engine.apply(place("bid", "BUY", "0.00051", "60000.01"))
    fees = [e.fee for e in events if type(e).__name__ == "OrderFilled" and e.account_id == "main"]
    assert sum(fees) == d("0.03060001")  # ceil(3 x 0.0102000017), not 3 x 0.01020001
    assert engine.oms.get("main", "bid").fees_paid == sum(fees)


# ---------------------------------------------------------------------------------------------------------- positions


def test_position_average_entry_is_cost_over_quantity() -> None:
    pos = Position("a", "BTCUSDT")
    pos.apply_fill(d("1"), d("100"), 0)
    pos.apply_fill(d("1"), d("200"), 0)
    assert (pos.qty, pos.avg_entry_price) == (d("2"), d("150"))


def test_closing_part_of_a_long_realizes_pnl_net_of_fees() -> None:
    pos = Position("a", "BTCUSDT")
    pos.apply_fill(d("2"), d("300"), d("0.3"))
    pos.apply_fill(-d("1"), d("200"), d("0.2"))
    assert pos.realized_pnl == d("200") - d("150") - d("0.5")
    assert (pos.qty, pos.cost, pos.avg_entry_price) == (d("1"), d("150"), d("150"))


def test_flipping_a_position_opens_the_rest_at_the_fill_price() -> None:
    pos = Position("a", "BTCUSDT")
    pos.apply_fill(d("1"), d("100"), 0)
    pos.apply_fill(-d("3"), d("360"), 0)
    assert pos.realized_pnl == d("20")
    assert (pos.qty, pos.avg_entry_price) == (-d("2"), d("120"))


def test_unrealized_pnl_of_long_and_short_follow_the_mark() -> None:
    long, short = Position("a", "X", qty=d("2"), cost=d("200")), Position("a", "Y", qty=-d("2"), cost=d("200"))
    long.mark_price = short.mark_price = d("90")
    assert (long.unrealized_pnl, short.unrealized_pnl) == (-d("20"), d("20"))


def test_unrealized_pnl_is_zero_without_a_mark() -> None:
    assert Position("a", "X", qty=d("2"), cost=d("200")).unrealized_pnl == 0


def test_fill_updates_positions_of_both_parties() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "0.01", "60000", account="other"))
    engine.apply(place("bid", "BUY", "0.01", "60000"))
    main, other = engine.ledger.positions[("main", "BTCUSDT")], engine.ledger.positions[("other", "BTCUSDT")]
    assert (main.qty, main.avg_entry_price, main.realized_pnl) == (d("0.01"), d("60000"), -d("0.6"))
    assert (other.qty, other.realized_pnl) == (-d("0.01"), -d("0.6"))

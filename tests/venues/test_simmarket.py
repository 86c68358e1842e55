"""The seeded price process of the simulated market: a step without drift has none, in every journal semantics since 6.

Each step rounded its move down to the tick, so a market configured without drift lost half a tick a step on average
(ETHUSDT at 2500, tick 0.01, volatility 700 ppb: 0.49 tick a step, about 1,700 USDT a day at the default 250 ms
step), and a price moving less than a tick a step only ever fell: a coin at 0.00001 (1,000 ticks of 1e-8) reached the
floor of ten ticks within about 2,000 steps.
"""

from __future__ import annotations

from veloz_actors.core.journal import SEMANTICS
from veloz_actors.messages import BookTop, Tick
from veloz_actors.testing import btcusdt, d
from veloz_actors.venues.engine import Engine, EngineConfig
from veloz_actors.venues.simmarket import SimSymbol, next_mid

START = 10**18
ETH = SimSymbol(symbol="ETHUSDT", initial_mid=d("2500"), volatility_ppb=700)
COIN = SimSymbol(symbol="COINUSDT", initial_mid=d("0.00001"), volatility_ppb=1_000, level_qty=d("1000000"))


def _moves(spec: SimSymbol, tick: int, **rule: bool) -> list[int]:
    """The move of one step from the initial mid for every draw ``u`` (each equally likely)."""
    return [next_mid(spec.initial_mid, spec, u, tick, **rule) - spec.initial_mid for u in range(-1000, 1001)]


def test_a_step_without_drift_moves_up_exactly_as_it_moves_down() -> None:
    for spec, tick in ((ETH, d("0.01")), (COIN, 1)):
        moves = _moves(spec, tick)
        assert sorted(moves) == sorted(-m for m in moves), spec.symbol
        assert all(m % tick == 0 for m in moves)
    # the rule of journals of semantics 5 or less, kept for them: every move rounded down
    assert sum(_moves(ETH, d("0.01"), rounded_down=True)) < 0
    old = _moves(COIN, 1, rounded_down=True)
    assert sum(m > 0 for m in old) == 1 and sum(m < 0 for m in old) == 1000  # up at u = 1000 alone


def test_a_drift_still_moves_the_mid_its_way() -> None:
    rising = SimSymbol(symbol="ETHUSDT", initial_mid=d("2500"), drift_ppb=10_000, volatility_ppb=0)
    assert next_mid(rising.initial_mid, rising, 0, d("0.01")) == d("2500.03")  # 2500 x 1e-5 = 0.025: to 0.03
    falling = SimSymbol(symbol="ETHUSDT", initial_mid=d("2500"), drift_ppb=-10_000, volatility_ppb=0)
    assert next_mid(falling.initial_mid, falling, 0, d("0.01")) == d("2499.97")


def _coin_engine() -> Engine:
    coin = btcusdt(symbol="COINUSDT", base_asset="COIN", price_tick=1, qty_step=d("1"), min_qty=d("1"),
                   max_qty=d("10000000000"), min_notional=0, min_price=1, max_price=d("1"))  # fmt: skip
    return Engine(
        EngineConfig(
            instruments=(coin,),
            balances={"main": {"USDT": d("1000")}},
            sim_symbols=(COIN,),
            market_maker_balances={"USDT": d("1000000"), "COIN": d("10000000000")},
        )
    )


def _mids(engine: Engine, steps: int) -> list[int]:
    tops = [e for ts in range(START, START + steps) for e in engine.apply(Tick(ts=ts)) if type(e) is BookTop]
    return [(top.bid_price + top.ask_price) // 2 for top in tops]


def test_a_price_moving_less_than_a_tick_a_step_rises_as_well_as_falls() -> None:
    engine = _coin_engine()
    mids = _mids(engine, 2_000)
    ups = sum(b > a for a, b in zip(mids, mids[1:], strict=False))
    downs = sum(b < a for a, b in zip(mids, mids[1:], strict=False))
    assert ups > 0 and downs > 0
    assert min(mids) > 10  # never down to the floor of ten ticks, where the old rule took it
    assert engine.venues["COINUSDT"].semantics == SEMANTICS


def test_a_journal_of_semantics_5_keeps_the_market_it_was_written_with() -> None:
    engine = _coin_engine()
    engine.use_semantics(5)
    mids = _mids(engine, 2_000)
    assert all(b <= a for a, b in zip(mids, mids[1:], strict=False))  # as it ran then: it only ever fell
    assert mids[-1] < mids[0] // 10

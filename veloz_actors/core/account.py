"""The account ledger: free and locked balances per account and asset, fees collected, and positions.

Every change is a transfer between named buckets, so money is conserved by construction and a test can assert it
exactly: for each asset, the sum over accounts of free + locked, plus the fees collected, equals what was deposited.

Funds move like this:

- ``reserve``: free -> locked, atomically, or not at all (insufficient funds is a result, not an exception);
- ``release``: locked -> free (a cancel, an expiry, or the unused part of a reservation after a fill);
- ``settle``: for a fill between two accounts of this ledger, the buyer's locked quote pays the seller and the fee; the
  seller's locked base goes to the buyer's free base; the fee goes to the venue's fee bucket;
- ``trade``: for a fill with a counterparty outside this ledger (the kernel's orders at a venue), the account pays out
  of its locked funds and receives into its free funds; ``counterparty`` counts what left for the venue (negative for
  what came in), so ``totals() + counterparty == deposited`` still holds exactly, and joined with the venue's own
  books it is the same conservation law across both sides.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidInput
from ..fixed import SCALE, format_decimal
from ..messages import AccountUpdated, Balance, PositionUpdated, builder

__all__ = ["Ledger", "Position", "position_move"]


def position_move(qty: int, fee: int, fee_asset: str, base_asset: str, *, buy: bool) -> int:
    """How much a fill moves its position: ``qty``, or, when its fee was paid in the symbol's base asset itself
    (Binance's rule without BNB: a buy's commission out of the coins received), what the account's base moved by:
    ``qty - fee`` on a buy, ``qty + fee`` on a sell. The kernel (journal semantics 5 on) and the risk monitor count
    positions by it, so the monitor's exposure is the ledger's."""
    if fee_asset != base_asset or not 0 < fee < qty:
        return qty
    return qty - fee if buy else qty + fee


# built after almost every step (messages.builder)
_account_updated, _balance, _position_updated = builder(AccountUpdated), builder(Balance), builder(PositionUpdated)


@dataclass(slots=True)
class Position:
    """A position in one symbol built from fills.

    ``qty`` is signed (base, 1e-8); ``cost`` is the absolute quote notional of the open quantity (average entry =
    cost / |qty|); ``realized_pnl`` is net of every fee paid on the symbol.
    """

    account_id: str
    symbol: str
    qty: int = 0
    cost: int = 0
    realized_pnl: int = 0
    mark_price: int = 0

    @property
    def avg_entry_price(self) -> int:
        return self.cost * SCALE // abs(self.qty) if self.qty else 0

    @property
    def unrealized_pnl(self) -> int:
        if not self.qty or not self.mark_price:
            return 0
        value = self.mark_price * abs(self.qty) // SCALE
        return value - self.cost if self.qty > 0 else self.cost - value

    def apply_fill(self, signed_qty: int, notional: int, fee: int) -> None:
        """Fold a fill of ``signed_qty`` (+ buy, - sell) for ``notional`` quote into the position."""
        self.realized_pnl -= fee
        qty = self.qty
        if qty == 0 or (qty > 0) == (signed_qty > 0):
            self.qty = qty + signed_qty
            self.cost += notional
            return
        size = abs(signed_qty)
        closing = min(size, abs(qty))
        cost_closed = self.cost * closing // abs(qty)
        notional_closed = notional * closing // size
        self.realized_pnl += notional_closed - cost_closed if qty > 0 else cost_closed - notional_closed
        self.cost -= cost_closed
        sign = 1 if signed_qty > 0 else -1
        self.qty = qty + sign * closing
        opening = size - closing
        if opening:
            self.qty += sign * opening
            self.cost = notional - notional_closed

    def to_event(self, ts: int) -> PositionUpdated:
        return _position_updated(
            account_id=self.account_id,
            symbol=self.symbol,
            qty=self.qty,
            avg_entry_price=self.avg_entry_price,
            cost=self.cost,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self.unrealized_pnl,
            mark_price=self.mark_price,
            ts=ts,
        )


class Ledger:
    """Balances of every account plus the venue's fee buckets. Amounts are int 1e-8 units."""

    __slots__ = ("_accounts", "_events", "fees_collected", "deposited", "positions", "counterparty")

    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, list[int]]] = {}
        # account -> asset -> the Balance value last reported, None once that balance changed, with the account's
        # assets in their order: an AccountUpdated rebuilds only what moved (balances are reported after almost every
        # order) and takes the values as they stand
        self._events: dict[str, dict[str, Balance | None]] = {}
        self.fees_collected: dict[str, int] = {}
        self.deposited: dict[str, int] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.counterparty: dict[str, int] = {}

    # ----------------------------------------------------------------------------------------------------- funding

    def deposit(self, account_id: str, asset: str, amount: int) -> None:
        if amount < 0:
            raise InvalidInput(f"deposit of {format_decimal(amount)} {asset} must not be negative")
        bucket = self._bucket(account_id, asset)
        bucket[0] += amount
        self._events[account_id][asset] = None
        self.deposited[asset] = self.deposited.get(asset, 0) + amount

    def _bucket(self, account_id: str, asset: str) -> list[int]:
        assets = self._accounts.get(account_id)
        if assets is None:
            assets = self._accounts[account_id] = {}
            self._events[account_id] = {}
        bucket = assets.get(asset)
        if bucket is None:
            bucket = assets[asset] = [0, 0]
            self._accounts[account_id] = dict(sorted(assets.items()))  # keep assets sorted for reports
            self._order_events(account_id)
        return bucket

    def _order_events(self, account_id: str) -> None:
        """The account's reported balances in the order of its assets, None for one not reported as it stands."""
        cache = self._events[account_id]
        ordered = {asset: cache.get(asset) for asset in self._accounts[account_id]}
        cache.clear()  # in place: a caller may hold the account's entries
        cache.update(ordered)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        for account_id in self._accounts:  # a snapshot written before dropped the entry of a changed balance
            self._order_events(account_id)

    def has_account(self, account_id: str) -> bool:
        return account_id in self._accounts

    def account_ids(self) -> list[str]:
        return list(self._accounts)

    # ------------------------------------------------------------------------------------------------------ queries

    def free(self, account_id: str, asset: str) -> int:
        bucket = self._accounts.get(account_id, {}).get(asset)
        return bucket[0] if bucket else 0

    def locked(self, account_id: str, asset: str) -> int:
        bucket = self._accounts.get(account_id, {}).get(asset)
        return bucket[1] if bucket else 0

    def balances(self, account_id: str) -> dict[str, tuple[int, int]]:
        return {asset: (b[0], b[1]) for asset, b in self._accounts.get(account_id, {}).items()}

    def totals(self) -> dict[str, int]:
        """For each asset: free + locked over every account, plus fees collected."""
        out: dict[str, int] = dict(self.fees_collected)
        for assets in self._accounts.values():
            for asset, (free, locked) in assets.items():
                out[asset] = out.get(asset, 0) + free + locked
        return out

    def account_event(self, account_id: str, ts: int) -> AccountUpdated:
        """The ``AccountUpdated`` of one account the ledger has (``KeyError`` for another)."""
        events: list[AccountUpdated] = []
        self.account_events((account_id,), ts, events)
        if not events:
            raise KeyError(account_id)
        return events[0]

    def account_events(self, accounts: Iterable[str], ts: int, events: list[Any], quiet: Container[str] = ()) -> None:
        """Append the ``AccountUpdated`` of each of ``accounts`` the ledger has and ``quiet`` does not name, in
        order: each balance unchanged since its last event is that event's ``Balance`` again (one loop for the
        kernel's every step, which reports the accounts it touched)."""
        all_accounts = self._accounts
        caches = self._events
        for account_id in accounts:
            assets = all_accounts.get(account_id)
            if assets is None or account_id in quiet:
                continue
            cache = caches[account_id]
            for asset, balance in cache.items():
                if balance is None:  # (a value replaced while iterating: the dict keeps its keys and order)
                    bucket = assets[asset]
                    cache[asset] = _balance(asset=asset, free=bucket[0], locked=bucket[1])
            events.append(_account_updated(account_id=account_id, balances=tuple(cache.values()), ts=ts))

    def position(self, account_id: str, symbol: str) -> Position:
        key = (account_id, symbol)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(account_id, symbol)
        return pos

    # ---------------------------------------------------------------------------------------------------- transfers

    def reserve(self, account_id: str, asset: str, amount: int) -> bool:
        """Move ``amount`` from free to locked if it is all there; otherwise change nothing and return False."""
        bucket = self._accounts.get(account_id, {}).get(asset)
        if bucket is None or bucket[0] < amount or amount < 0:
            return False
        bucket[0] -= amount
        bucket[1] += amount
        self._events[account_id][asset] = None
        return True

    def release(self, account_id: str, asset: str, amount: int) -> None:
        bucket = self._accounts[account_id][asset]
        if amount < 0 or bucket[1] < amount:
            raise AssertionError(f"release of {amount} {asset} exceeds {account_id}'s locked {bucket[1]}")
        bucket[1] -= amount
        bucket[0] += amount
        self._events[account_id][asset] = None

    def settle(
        self,
        *,
        buyer: str,
        seller: str,
        base: str,
        quote: str,
        qty: int,
        notional: int,
        buyer_fee: int,
        seller_fee: int,
    ) -> None:
        """Exchange ``qty`` base for ``notional`` quote out of both parties' locked funds; fees are paid in quote."""
        accounts = self._accounts
        buyer_quote = accounts[buyer][quote]
        seller_base = accounts[seller][base]
        paid = notional + buyer_fee
        if buyer_quote[1] < paid or seller_base[1] < qty:
            raise AssertionError(f"settlement exceeds locked funds: buyer {buyer} or seller {seller}")
        buyer_quote[1] -= paid
        seller_base[1] -= qty
        self._bucket(buyer, base)[0] += qty
        self._bucket(seller, quote)[0] += notional - seller_fee
        events = self._events
        events[buyer][quote] = events[buyer][base] = events[seller][base] = events[seller][quote] = None
        fees = buyer_fee + seller_fee
        if fees:
            self.fees_collected[quote] = self.fees_collected.get(quote, 0) + fees

    def trade(
        self,
        account_id: str,
        *,
        pay_asset: str,
        pay: int,
        receive_asset: str,
        receive: int,
        fee_asset: str,
        fee: int,
        locked_available: int,
    ) -> int:
        """Book one fill with a counterparty outside this ledger; returns how much came out of the locked funds.

        ``pay`` (plus ``fee`` when it is in ``pay_asset``) comes out of the account's locked ``pay_asset`` up to
        ``locked_available`` (what the order still holds), any rest out of its free balance; ``receive`` goes to its
        free ``receive_asset``; a fee in another asset comes out of that free balance (after what was just received).
        Balances may go negative only if a venue reports more than the order could pay: the caller reports that.
        """
        from_locked = pay + fee if fee_asset == pay_asset else pay
        if from_locked > locked_available:
            from_locked = locked_available
        pay_bucket = self._bucket(account_id, pay_asset)
        pay_bucket[1] -= from_locked
        total_pay = pay + fee if fee_asset == pay_asset else pay
        pay_bucket[0] -= total_pay - from_locked
        receive_bucket = self._bucket(account_id, receive_asset)
        receive_bucket[0] += receive
        events = self._events[account_id]
        events[pay_asset] = events[receive_asset] = None
        if fee_asset != pay_asset and fee:
            self._bucket(account_id, fee_asset)[0] -= fee
            events[fee_asset] = None
        if fee:
            self.fees_collected[fee_asset] = self.fees_collected.get(fee_asset, 0) + fee
        counterparty = self.counterparty
        counterparty[pay_asset] = counterparty.get(pay_asset, 0) + pay
        counterparty[receive_asset] = counterparty.get(receive_asset, 0) - receive
        return from_locked

    def fill(
        self,
        account_id: str,
        *,
        buy: bool,
        base: str,
        quote: str,
        qty: int,
        notional: int,
        fee_asset: str,
        fee: int,
        locked_available: int,
    ) -> int:
        """:meth:`trade` for one fill of a spot order: a buy pays ``notional`` quote for ``qty`` base, a sell the
        other way round. Returns how much came out of the order's locked funds."""
        if buy:
            pay_asset, pay, receive_asset, receive = quote, notional, base, qty
        else:
            pay_asset, pay, receive_asset, receive = base, qty, quote, notional
        return self.trade(
            account_id,
            pay_asset=pay_asset,
            pay=pay,
            receive_asset=receive_asset,
            receive=receive,
            fee_asset=fee_asset,
            fee=fee,
            locked_available=locked_available,
        )

    def conserved(self) -> bool:
        """For every asset: balances + fees collected + what went to counterparties == what was deposited."""
        totals = self.totals()
        for asset, amount in self.counterparty.items():
            totals[asset] = totals.get(asset, 0) + amount
        assets = set(totals) | set(self.deposited)
        return all(totals.get(a, 0) == self.deposited.get(a, 0) for a in assets)

    def export(self) -> dict[str, object]:
        """A JSON-ready picture of every balance, fee bucket and position."""
        return {
            "accounts": {
                acc: {asset: {"free": b[0], "locked": b[1]} for asset, b in sorted(assets.items())}
                for acc, assets in sorted(self._accounts.items())
            },
            "fees_collected": dict(sorted(self.fees_collected.items())),
            "deposited": dict(sorted(self.deposited.items())),
            "positions": [
                {
                    "account_id": p.account_id,
                    "symbol": p.symbol,
                    "qty": p.qty,
                    "cost": p.cost,
                    "realized_pnl": p.realized_pnl,
                    "mark_price": p.mark_price,
                }
                for _, p in sorted(self.positions.items())
            ],
        }

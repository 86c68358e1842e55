"""``veloz start --local --single-process --venue binance --live``: real orders on Binance from one process. (Without
``--single-process`` the actor engine trades through its live venue actor, :mod:`veloz_actors.actors.live_venue`,
with the same checks.)

What it refuses to start without, each with an error that names what is missing:

- the ``--live`` flag (a config saying ``venue.mode: live`` is not enough) and a journal;
- keys: ``BINANCE_API_KEY`` with ``BINANCE_API_SECRET`` (HMAC) or ``BINANCE_PRIVATE_KEY_FILE`` (Ed25519 PEM), from the
  environment or ``venue.credentials_file`` (a 0600 ``KEY=VALUE`` file);
- risk limits for every traded symbol (``risk.max_order_qty`` and ``risk.max_position``) and
  ``risk.max_order_notional`` (:func:`check_live_risk`).

A new journal starts the ledger from the account's balances on the exchange (``GET /api/v3/account``); an existing
one is recovered with the config it was written with (its header), its replayed requests never sent again; its
instruments are checked against Binance's exchangeInfo of now first (:func:`~veloz_actors.config.check_journal_instruments`:
filters changed since refuse the start, naming them; a symbol not trading has its new orders refused). Then the
trading adapter subscribes to the user data stream and reconciles the kernel with the exchange; until that has
finished every order is rejected with a reason that says so (and stderr says why it is waiting). Live market data
(the same client as paper trading) gives the kernel its reference prices.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError, VelozError
from ..config import EngineFileConfig, check_journal_instruments, check_journal_risk, resolve_venue_instruments
from ..core.journal import read_header
from ..logs import redact_url
from ..venues.engine import Engine, EngineConfig, tune_gc
from .local import Frontends, LiveMarket, LiveVenue, LocalBackend, run_session
from .stdio import Session

__all__ = ["check_live_risk", "run_live"]

_READY_SECONDS = 60.0


def check_live_risk(config: EngineFileConfig) -> None:
    """Live trading needs the risk limits that bound a mistake: per symbol a maximum order quantity and position, and
    a maximum order notional. Raises :class:`ConfigError` naming each one missing."""
    risk = config.risk.build()  # exact integers: "0.00" is as unset as "0"
    missing = [
        f"risk.{name}.{symbol}"
        for symbol in config.venue.symbols
        for name in ("max_order_qty", "max_position")
        if getattr(risk, name).get(symbol, 0) <= 0
    ]
    if risk.max_order_notional <= 0:
        missing.append("risk.max_order_notional")
    if missing:
        raise ConfigError(f"live trading needs these risk limits configured (non-zero): {', '.join(missing)}")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_live(
    file_config: EngineFileConfig,
    *,
    journal_path: Path,
    durability: str,
    market: bool,
    frontends: Frontends | None = None,
) -> int:
    """Run the stdio session over a live single-process engine (see the module docstring); returns the exit code."""
    from ..venues.binance.auth import CredentialsRef
    from ..venues.binance.venue import BinanceVenueSettings, VenueUnavailable, account_ledger

    try:
        credentials = CredentialsRef(env_file=file_config.venue.credentials_file).load()
    except (ConfigError, VelozError) as exc:
        raise VelozError(f"live trading needs keys: {exc}") from None
    journal_path = journal_path.resolve()
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    urls = file_config.venue.urls()
    settings = BinanceVenueSettings(**file_config.venue.trading_settings())  # venue.trading, checked before any work
    tune_gc()
    if journal_path.exists():
        header = read_header(journal_path)
        config = EngineConfig.from_json(header["config"])
        if config.venue_kind != "live":
            raise VelozError(f"{journal_path} was written by a {config.venue_kind} engine: give a new journal path")
        check_journal_risk(file_config, config.risk, journal_path)
        halted = check_journal_instruments(file_config, config.instruments, journal_path)
        for reason in halted.values():
            _say(f"live: {reason}: its new orders are refused until Binance trades it again")
        engine, _ = Engine.recover(config, journal_path, durability=durability)  # type: ignore[arg-type]
        _say(f"live: recovered {journal_path} ({engine.seq} inputs)")
    else:
        instruments, _ = resolve_venue_instruments(file_config, journal_path.parent)
        try:
            ledger = account_ledger(settings, credentials)
        except VenueUnavailable as exc:
            raise VelozError(f"live trading: cannot read the account's balances: {exc}") from None
        config = dataclasses.replace(file_config.engine_config(instruments), balances={"main": ledger})
        engine = Engine(config, journal_path=journal_path, durability=durability)  # type: ignore[arg-type]
        _say(f"live: new journal {journal_path}, ledger from the account's balances on {redact_url(urls['rest_url'])}")
    trading = LiveVenue(engine, settings, credentials)
    live_market = LiveMarket(engine, file_config.venue.market_data(), apply=trading.apply)
    _say("live: reconciling with the exchange; orders are refused until it has finished")
    began = time.monotonic()
    if trading.wait_ready(_READY_SECONDS):
        summary: dict[str, Any] = trading.status().get("reconcile") or {}
        _say(f"live: reconciled in {time.monotonic() - began:.1f} s: {summary}")
    else:
        _say(f"live: not reconciled after {_READY_SECONDS:.0f} s ({trading.status().get('not_ready')}); still trying")
    backend = LocalBackend(engine, live=live_market, trading=trading)
    session = Session(backend, symbols=set(engine.instruments), clock=time.time_ns, market=market)
    return run_session(
        session, None, tick_ms=250, side_feed=lambda: live_market.drain() + trading.drain(), frontends=frontends
    )

"""The ``veloz`` command line.

Every command reports a bad input as one line on stderr (``error: ...``) and exits non-zero, never with a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from .._exceptions import ConfigError, VelozError
from ..config import (
    MAX_TICK_MS,
    check_paper_journal_instruments,
    default_engine_config,
    load_engine_config,
    resolve_venue_instruments,
    with_logging,
    with_venue,
)
from ..logs import configure_logging

app = typer.Typer(
    name="veloz",
    help="VeloZ: a crypto quant trading framework on Ray actors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

START_HELP = """Start a trading engine with a simulated market and talk to it over stdin/stdout.

\b
Commands, one per line:
  ORDER <BUY|SELL> <SYMBOL> <QTY> <PRICE|MARKET> [tif=GTC|IOC|FOK|POST_ONLY] [cid=<id>]
  CANCEL <cid>          QUERY <cid>|OPEN      BALANCE     POSITIONS
  STATUS                RESET                 HELP        QUIT
Output: one JSON object per line, "type" in market, order_update, fill, order_state, account,
position, status, error; "ts" in nanoseconds; prices, quantities and balances as exact decimal strings.
"""


@app.command("start", help=START_HELP)
def start(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (a private local runtime).")] = False,
    single_process: Annotated[
        bool, typer.Option("--single-process", help="Run the deterministic engine in this process, without Ray.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Engine config (YAML).")] = None,
    journal: Annotated[Path | None, typer.Option(help="Journal path (default: from the config).")] = None,
    no_journal: Annotated[bool, typer.Option("--no-journal", help="Do not journal inputs.")] = False,
    durability: Annotated[str | None, typer.Option(help="Journal durability: always, group or none.")] = None,
    market: Annotated[bool, typer.Option("--market/--no-market", help="Print simulated market quotes.")] = True,
    tick_ms: Annotated[int | None, typer.Option(help="Simulated market step in milliseconds.")] = None,
    log_format: Annotated[str | None, typer.Option(help="Log lines: text or json (default: logging.format).")] = None,
    log_level: Annotated[
        str | None, typer.Option(help="Log level: DEBUG, INFO, WARNING or ERROR (default: logging.level).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT).")] = None,
    detached: Annotated[bool, typer.Option("--detached", help="Leave the engine running on the cluster.")] = False,
    name: Annotated[
        str | None,
        typer.Option(help="The engine's name on the cluster, for attach, status and stop (default: default)."),
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Replay a recorded capture (e.g. ../shared/data/ticks_l2/*_ws.txt.gz).")
    ] = None,
    replay_speed: Annotated[
        float | None, typer.Option(help="Replay pace: 1 = as recorded, 10 = ten times faster, 0 = at once.")
    ] = None,
    venue: Annotated[
        str | None, typer.Option(help="Where orders go: sim (the simulated market) or binance (live market data).")
    ] = None,
    paper: Annotated[
        bool, typer.Option("--paper", help="With --venue binance: fill orders in simulation against the live book.")
    ] = False,
    symbols: Annotated[str | None, typer.Option(help="The venue's symbols, e.g. BTCUSDT,ETHUSDT.")] = None,
    preset: Annotated[str | None, typer.Option(help="Binance endpoints: live or testnet.")] = None,
    rest_url: Annotated[str | None, typer.Option(help="Binance REST base URL (default: the preset's).")] = None,
    stream_url: Annotated[str | None, typer.Option(help="Binance market streams URL (default: the preset's).")] = None,
    ws_api_url: Annotated[str | None, typer.Option(help="Binance WebSocket API URL (default: the preset's).")] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="With --venue binance: send REAL orders (keys from BINANCE_API_KEY and "
            "BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_FILE).",
        ),
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="[HOST:]PORT",
            help="Serve the HTTP/WebSocket API and the monitoring page (e.g. 8080 or 127.0.0.1:8080).",
        ),
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="The JSON protocol on stdout even when it is a terminal.")
    ] = False,
) -> None:
    if single_process and (detached or address is not None or name is not None):
        raise VelozError(
            "--single-process runs the engine in this process: --detached, --address and --name are for the actor "
            "engine"
        )
    if journal is not None and no_journal:
        raise VelozError(f"choose --journal {journal} or --no-journal, not both")
    file_config = load_engine_config(config or default_engine_config())
    file_config = with_logging(file_config, format=log_format, level=log_level)  # --log-format, --log-level
    venue_flags = (symbols, preset, rest_url, stream_url, ws_api_url)
    if paper and live:
        raise VelozError("choose --paper (simulated fills) or --live (real orders), not both")
    if venue is not None or paper or live or any(f is not None for f in venue_flags):
        kind = venue or file_config.venue.kind
        if kind == "binance" and not (paper or live) and file_config.venue.kind != "binance":
            raise VelozError("--venue binance needs --paper (simulated fills) or --live (real orders)")
        if kind != "binance" and (paper or live or any(f is not None for f in venue_flags)):
            raise VelozError("--paper, --live, --symbols and the URLs are for --venue binance")
        file_config = with_venue(
            file_config,
            kind=kind,
            mode="paper" if paper else ("live" if live else None),
            symbols=None if symbols is None else [s for s in symbols.split(",") if s.strip()],
            preset=preset,
            rest_url=rest_url,
            stream_url=stream_url,
            ws_api_url=ws_api_url,
        )
    if single_process:
        strategies = file_config.actor_settings().strategies
        if strategies:  # the engine would trade without them: say so before anything starts
            named = ", ".join(f"{entry.strategy} on {entry.symbol}" for entry in strategies)
            raise VelozError(
                f"actors.strategies ({named}) run on the actor engine: use --local or --address, not --single-process"
            )
    if replay is not None or replay_speed is not None:
        if single_process:
            raise VelozError("--replay runs on the actor engine: use --local or --address, not --single-process")
        configured = file_config.actor_settings().replay
        settings = configured.model_dump() if configured is not None else {}
        if replay is not None:
            settings["path"] = str(replay)
        if replay_speed is not None:
            settings["speed"] = replay_speed
        if "path" not in settings:
            raise VelozError("--replay-speed needs a file to replay: --replay PATH (or actors.replay in the config)")
        file_config = file_config.with_actors(replay=settings)
    tick = tick_ms if tick_ms is not None else file_config.sim.tick_ms
    if not 0 < tick <= MAX_TICK_MS:
        raise VelozError(f"--tick-ms must be between 1 and {MAX_TICK_MS:,} (an hour), got {tick}")
    journal_path = None if no_journal else (journal or file_config.journal.path)
    if single_process and journal_path is not None and Path(journal_path).is_dir():
        flag = "--journal" if journal is not None else "journal.path"
        raise VelozError(
            f"{flag} {journal_path} is a directory; --single-process journals to a file "
            f"(e.g. {Path(journal_path) / 'engine.journal'})"
        )
    mode = durability or file_config.journal.durability
    if mode not in ("always", "group", "none"):  # before the run folder and its log file are made
        raise VelozError(f"--durability must be always, group or none, got {mode!r}")
    log_dir = None if journal_path is None else Path(journal_path).resolve().parent  # logs: in the run folder
    try:
        configure_logging(file_config.logging.settings(log_dir), actor="engine" if single_process else "cli")
    except ConfigError as exc:  # name the option that put the log file there
        if isinstance(file_config.logging.file, str):
            option = "logging.file"
        else:
            option = f"{'--journal' if journal is not None else 'journal.path'} {journal_path}"
        raise ConfigError(f"{option}: {exc}") from exc
    trading_live = file_config.venue.kind == "binance" and file_config.venue.mode == "live"
    if trading_live:
        if not live:
            raise VelozError("the config says venue.mode: live (real orders): confirm with --live")
        if journal_path is None:
            raise VelozError(
                "live trading needs a journal (recovery and reconciliation start from it): drop --no-journal"
            )
        from .live import check_live_risk

        check_live_risk(file_config)
    from .local import Frontends

    api = file_config.api  # --http overrides the config's api: host and port (and serves even when not enabled)
    frontends = Frontends(
        http=http if http is not None else (api.address() if api.enabled else None),
        view="json" if json_lines or not _terminal_view_available() else "tty",
        run_dir=_run_dir(journal_path),
        token=api.token,
        market=market,
        api=api.options(),
    )
    if frontends.http is not None:
        from .http_api import parse_address

        parse_address(frontends.http)  # a bad --http is an error now, before any engine starts
    try:
        if single_process and trading_live and journal_path is not None:
            from .live import run_live

            raise typer.Exit(
                run_live(
                    file_config, journal_path=Path(journal_path), durability=mode, market=market, frontends=frontends
                )
            )
        if single_process:
            from ..venues.engine import Engine, tune_gc
            from .local import LiveMarket, LocalBackend, run_session
            from .stdio import Session

            run_dir = Path(journal_path).resolve().parent if journal_path is not None else None
            venue_instruments, _ = resolve_venue_instruments(file_config, run_dir)
            if journal_path is not None:
                check_paper_journal_instruments(venue_instruments, journal_path)
            engine_config = file_config.engine_config(venue_instruments)
            tune_gc()
            if journal_path is not None:
                # an existing journal is recovered (snapshot + tail); a new one starts empty
                engine, _ = Engine.recover(engine_config, journal_path, durability=mode)  # type: ignore[arg-type]
            else:
                engine = Engine(engine_config)
            live_market = None
            if file_config.venue.kind == "binance":
                live_market = LiveMarket(engine, file_config.venue.market_data())
            backend = LocalBackend(engine, live=live_market)
            session = Session(backend, symbols=set(engine.instruments), clock=time.time_ns, market=market)
            tick_fn = backend.tick if engine.config.sim_symbols else None
            side_feed = None if live_market is None else live_market.drain
            raise typer.Exit(run_session(session, tick_fn, tick_ms=tick, side_feed=side_feed, frontends=frontends))
        from . import engine_cli  # the actor engine (imports ray)

        raise typer.Exit(
            engine_cli.start_command(
                file_config,
                local=local,
                address=address,
                detached=detached,
                journal_dir=None if no_journal else journal_path,
                durability=mode,
                market=market,
                tick_ms=tick,
                name="default" if name is None else name,
                frontends=frontends,
            )
        )
    except KeyboardInterrupt:
        # before the engine loop takes SIGINT over (then it stops cleanly): Ray and the actors started so far are
        # torn down on the way out (engine_cli.start_command, actors.api.start_local); say where it stopped
        typer.echo(
            "interrupted during start-up: the engine took no command, and what it had started is stopped", err=True
        )
        raise typer.Exit(130) from None


def _run_dir(journal_path: str | Path | None) -> Path:
    """The run folder: the folder holding the journal (the API token, reports and logs live there)."""
    if journal_path is None:
        return Path("runs").resolve()
    return Path(journal_path).resolve().parent


def _terminal_view_available() -> bool:
    """The terminal view when stdin and stdout are a terminal (a person typing); JSON lines for a pipe or a file."""
    return sys.stdin.isatty() and sys.stdout.isatty()


@app.command("replay")
def replay_command(
    journal: Annotated[Path, typer.Argument(help="A journal written by the engine.")],
    events: Annotated[bool, typer.Option("--events/--summary", help="Print every event, or only a summary.")] = True,
    from_snapshot: Annotated[
        bool, typer.Option("--from-snapshot", help="Start from the journal's snapshot and apply only the tail.")
    ] = False,
) -> None:
    """Rebuild an engine's state from its journal and print the same event stream, byte for byte."""
    from ..core.journal import read_header, torn_tail_bytes
    from ..messages import encode_line
    from ..venues.engine import Engine, EngineConfig, replay

    _check_engine_journal(journal)
    if from_snapshot:
        config = EngineConfig.from_json(read_header(journal)["config"])
        import shutil
        import tempfile

        # recovery on copies, in that order (a snapshot never counts history the copy lacks): it cuts and writes
        # the copy's order history, and never a file of the run that wrote the journal
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / journal.name
            shutil.copy(journal, copy)
            for suffix in (".snapshot", ".orders"):
                if Path(str(journal) + suffix).exists():
                    shutil.copy(Path(str(journal) + suffix), Path(str(copy) + suffix))
            engine, produced = Engine.recover(config, copy, durability="none")
            engine.close()
    else:
        engine, produced = replay(journal)
    out = sys.stdout.buffer
    if events:
        out.write(b"".join(encode_line(e) for e in produced))
    summary = {"type": "replay_summary", "events": len(produced), **engine.status()}
    summary["journal"] = str(journal)
    summary["torn_tail_bytes"] = torn = torn_tail_bytes(journal)
    if torn:
        typer.echo(
            f"warning: {journal}: its last line ({torn} bytes) is incomplete (a write cut short by a crash, or a copy "
            "taken while the engine wrote): replayed without it, as recovery leaves it out",
            err=True,
        )
    out.write(orjson.dumps(summary) + b"\n")
    out.flush()


def _check_engine_journal(journal: Path) -> None:
    """An engine's journal, or a one-line error saying what ``journal`` is instead: the actor engine's journals (a
    folder of them, or its OMS's kernel journal) are not an engine's."""
    from ..core.journal import read_header

    what = "the single-process engine's journal (veloz start --local --single-process, e.g. runs/engine.journal)"
    if journal.is_dir():
        raise VelozError(f"{journal} is a directory: veloz replay reads {what}; the actor engine journals per actor")
    config = read_header(journal).get("config")
    if not isinstance(config, dict) or "sim_symbols" in config:
        return
    if "instruments" in config:
        kind = "a kernel journal (the actor engine's OMS writes one)"
    elif "venue_shard" in config:
        kind = f"a venue shard's journal (the actor engine's venue {config['venue_shard']} writes one)"
    elif "risk_monitor" in config:
        kind = "a risk monitor's journal (the actor engine's risk actor writes one)"
    elif "actor" in config:
        kind = f"an actor's journal (the actor engine's {config['actor']} writes one)"
    else:
        return
    raise VelozError(f"{journal} is {kind}: veloz replay reads {what}")


def _register_optional() -> None:
    """Commands that live in their own modules (backtests, searches, cluster engines)."""
    import importlib

    for module in ("backtest_cli", "search_cli", "cluster_cli"):
        try:
            mod = importlib.import_module(f"veloz_actors.interfaces.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"veloz_actors.interfaces.{module}":
                raise
            continue
        mod.register(app)


_register_optional()


def main() -> None:
    try:
        app()
    except VelozError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

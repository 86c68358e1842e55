"""The engine config's ``actors:`` section is typed: a bad field is a ConfigError naming it, before any actor starts."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from veloz_actors import ConfigError
from veloz_actors.config import (
    ActorsModel,
    EngineFileConfig,
    ReplayModel,
    default_engine_config,
    load_engine_config,
    load_yaml,
    parse_actors,
    parse_engine_config,
    with_venue,
)
from veloz_actors.fixed import SCALE
from veloz_actors.venues.binance.market_data import MarketDataSettings

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "configs" / "engine.yaml"


@pytest.fixture(scope="module")
def shipped() -> EngineFileConfig:
    return load_engine_config(SHIPPED)


def _engine_data(**actors: Any) -> dict[str, Any]:
    return {
        "instruments": [
            {
                "symbol": "BTCUSDT",
                "base_asset": "BTC",
                "quote_asset": "USDT",
                "tick_size": "0.01",
                "step_size": "0.00001",
                "min_qty": "0.00001",
                "max_qty": "9000",
                "min_notional": "5",
            },
        ],  # fmt: skip
        "balances": {"main": {"USDT": "1000"}},
        "actors": actors,
    }


def test_the_shipped_config_gives_a_typed_actors_section(shipped: EngineFileConfig) -> None:
    actors = shipped.actor_settings()
    assert isinstance(actors, ActorsModel)
    assert (actors.subscriber_queue, actors.order_inbox, actors.replay, actors.strategies) == (10_000, 1_000, None, [])
    assert actors.shard_map(["BTCUSDT", "ETHUSDT"]) == {"BTCUSDT": ("BTCUSDT",), "ETHUSDT": ("ETHUSDT",)}


def test_the_default_config_path_is_the_shipped_file() -> None:
    assert default_engine_config().resolve() == SHIPPED.resolve()


def test_shards_group_symbols_and_the_rest_get_one_actor_each() -> None:
    actors = parse_actors({"shards": {"majors": ["BTCUSDT", "ETHUSDT"]}})
    assert actors.shard_map(["BTCUSDT", "ETHUSDT", "SOLUSDT"]) == {
        "majors": ("BTCUSDT", "ETHUSDT"),
        "SOLUSDT": ("SOLUSDT",),
    }


def test_a_replay_may_be_a_bare_path_and_takes_the_defaults() -> None:
    assert parse_actors({"replay": "capture.txt.gz"}).replay == ReplayModel(path="capture.txt.gz")


@pytest.mark.parametrize(
    ("actors", "message"),
    [
        ({"subscriber_queue": 0}, "actors.subscriber_queue: Input should be greater than or equal to 1"),
        ({"order_inbox": "many"}, "actors.order_inbox: Input should be a valid integer"),
        ({"subscriber_queues": 5}, "actors.subscriber_queues: Extra inputs are not permitted"),
        ({"replay": {"path": "x", "speed": -1}}, "actors.replay: speed: Input should be greater than or equal to 0"),
        ({"replay": {"path": "x", "pace": 2}}, "actors.replay: pace: Extra inputs are not permitted"),
        ({"strategies": [{"symbol": "BTCUSDT"}]}, "actors.strategies: 0: each entry needs 'strategy'"),
        ({"strategies": [{"strategy": "sma_cross", "symbol": "BTCUSDT", "bar_ms": 0}]},
         "actors.strategies: 0.bar_ms: Input should be greater than 0"),
        ({"strategies": [{"strategy": "sma_cross", "symbol": "BTCUSDT", "every": 3}]},
         "actors.strategies: 0.every: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_field_is_a_config_error_naming_it(actors: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_actors(actors)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("actors", "message"),
    [
        ({"shards": {"a": ["DOGEUSDT"]}}, "actors.shards: unknown or repeated symbols ['DOGEUSDT']"),
        ({"shards": {"a": ["BTCUSDT"], "b": ["BTCUSDT"]}}, "actors.shards: unknown or repeated symbols"),
        ({"strategies": [{"strategy": "sma_cross", "symbol": "DOGEUSDT"}]},
         "actors.strategies: unknown symbol 'DOGEUSDT'; configured: ['BTCUSDT']"),
    ],
)  # fmt: skip
def test_symbols_the_instruments_do_not_know_are_refused_when_the_file_loads(
    actors: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^engine.yaml: {message.replace('[', '.').replace(']', '.')}"):
        parse_engine_config(_engine_data(**actors), source="engine.yaml")


def test_a_file_with_a_bad_actors_field_names_the_file_and_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^engine.yaml: actors.order_inbox: Input should be greater than or equal"):
        parse_engine_config(_engine_data(order_inbox=-5), source="engine.yaml")


def test_with_actors_changes_one_field_and_checks_it(shipped: EngineFileConfig) -> None:
    changed = shipped.with_actors(replay={"path": "capture.txt.gz", "speed": 0})
    assert changed.actors.replay == ReplayModel(path="capture.txt.gz", speed=0)
    assert changed.actors.order_inbox == shipped.actors.order_inbox and shipped.actors.replay is None
    with pytest.raises(ConfigError, match=r"actors.replay: batch: Input should be greater than or equal to 1"):
        shipped.with_actors(replay={"path": "capture.txt.gz", "batch": 0})


def test_a_missing_replay_file_is_refused_when_the_feed_settings_are_made(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt.gz"
    capture.write_bytes(b"")
    assert ReplayModel(path=str(capture)).resolved()["path"] == str(capture.resolve())
    with pytest.raises(ConfigError, match=r"^actors.replay.path: no such file: .*missing.txt.gz"):
        ReplayModel(path=str(tmp_path / "missing.txt.gz")).resolved()


def _with(path: str, value: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped engine config (or ``data``) with one field (``"risk.max_drawdown"``, ``"instruments.0.min_price"``)
    replaced."""
    data = load_yaml(SHIPPED)["engine"] if data is None else data
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[int(last) if isinstance(node, list) else last] = value
    return data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("balances.main.USDT", True, 'balances.main.USDT: expected a number like "0.01", got true'),
        ("risk.max_order_notional", False, 'risk.max_order_notional: expected a number like "0.01", got false'),
        ("instruments.0.tick_size", True, 'instruments.0.tick_size: expected a number like "0.01", got true'),
        ("risk.orders_per_second", True, "risk.orders_per_second: expected a number, got true"),
        ("journal.group_ms", True, "journal.group_ms: expected a number, got true"),
        ("balances.main.USDT", [1], 'balances.main.USDT: expected a number like "0.01", got [1]'),
    ],
)  # fmt: skip
def test_a_boolean_or_a_list_where_a_number_belongs_is_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^engine.yaml: {re.escape(message)}$"):
        parse_engine_config(_with(field, value), source="engine.yaml")


@pytest.mark.parametrize("limit", ["max_order_qty", "max_position"])
def test_a_risk_limit_for_an_unknown_symbol_is_refused(limit: str) -> None:
    message = f"risk.{limit}: unknown symbol 'BTCUSD' (instruments: BTCUSDT, ETHUSDT)"
    with pytest.raises(ConfigError, match=f"^engine.yaml: {re.escape(message)}$"):
        parse_engine_config(_with(f"risk.{limit}", {"BTCUSD": "0.001"}), source="engine.yaml")


def test_an_engine_risk_limit_for_an_unknown_symbol_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"engine_risk.max_symbol_exposure: unknown symbol 'BTCUSD'"):
        parse_engine_config(_with("engine_risk.max_symbol_exposure", {"BTCUSD": "1"}), source="engine.yaml")


def test_an_engine_risk_limit_for_an_unknown_asset_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"engine_risk.max_asset_exposure: unknown asset 'BTX' \(assets: BTC, ETH, USDT\)"
    ):
        parse_engine_config(_with("engine_risk.max_asset_exposure", {"BTC": "2", "BTX": "1"}), source="engine.yaml")
    limited = parse_engine_config(_with("engine_risk.max_asset_exposure", {"BTC": "2"}), source="engine.yaml")
    assert limited.engine_risk.build().max_asset_exposure == {"BTC": 2 * SCALE}


def test_a_binance_venue_knows_its_symbols_and_the_configured_instruments(shipped: EngineFileConfig) -> None:
    binance = with_venue(shipped, kind="binance", mode="paper", symbols=["SOLUSDT"])
    assert binance.risk.max_order_qty.keys() == {"BTCUSDT", "ETHUSDT"}  # limits for symbols this run does not trade
    data = _with("risk.max_order_qty", {"SOLUSDT": "1"})
    data["venue"] = {"kind": "binance", "symbols": ["SOLUSDT"]}
    data["sim"]["symbols"] = []
    assert parse_engine_config(data).risk.max_order_qty == {"SOLUSDT": "1"}
    data["risk"]["max_order_qty"] = {"SOLUSD": "1"}
    with pytest.raises(ConfigError, match=r"risk.max_order_qty: unknown symbol 'SOLUSD' \(instruments: .*SOLUSDT\)"):
        parse_engine_config(data)


def test_the_market_data_rest_pacing_is_configured_in_the_venue_section() -> None:
    data = _with("venue", {"kind": "binance", "symbols": ["BTCUSDT"], "snapshots_in_flight": 4})
    data["sim"]["symbols"] = []
    settings = parse_engine_config(data).venue.market_data()
    assert (settings["snapshots_in_flight"], settings["rest_weight_per_minute"]) == (4, 3000)
    MarketDataSettings(**settings)  # the client takes them as they are
    data["venue"].update(snapshot_limit=1000, rest_weight_per_minute=40)
    with pytest.raises(ConfigError, match="rest_weight_per_minute 40 is less than one depth snapshot's weight, 50 at"):
        parse_engine_config(data, source="engine.yaml")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("instruments.0.min_price", "100", "instrument BTCUSDT: need 0 <= min_price <= max_price (max_price 0: no "
                                           "maximum), got min_price 100 and max_price 1"),
        ("risk.max_drawdown", "5", "risk.max_drawdown: '5' is above 1 (100 %)"),
        ("risk.stop_loss", "1", "risk.stop_loss: '1' is 1 (100 %) or more"),  # before: accepted, and never fired
        ("valuation_asset", "EUR", "valuation_asset: 'EUR' is not an asset of any instrument or balance "
                                   "(assets: BTC, ETH, USDT)"),
        ("sim.symbols.0.initial_mid", "60000.005",
         "sim.symbols.BTCUSDT.initial_mid: 60000.005 is not a multiple of the instrument's tick 0.01"),
    ],
)  # fmt: skip
def test_a_value_the_engine_could_not_use_is_refused_when_the_file_loads(field: str, value: str, message: str) -> None:
    data = _with(field, value, _with("instruments.0.max_price", "1"))
    with pytest.raises(ConfigError, match=f"^engine.yaml: {re.escape(message)}"):
        parse_engine_config(data, source="engine.yaml")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # before: accepted, then the start crashed (orjson "Integer exceeds 64-bit range" writing the journal)
        ("sim.seed", 10**29, f"sim.seed: must be at most 9,223,372,036,854,775,807 in size (a 64-bit integer), got {10**29}"),
        ("risk.burst", 10**23, "risk.burst: must be at most 9,223,372,036,854,775,807 in size"),
        ("risk.orders_per_second", 10**23, "risk.orders_per_second: must be at most 9,223,372,036,854,775,807 in size"),
        ("journal.snapshot_every", 10**23, "journal.snapshot_every: must be at most 9,223,372,036,854,775,807 in size"),
        pytest.param("journal.snapshot_every", 10**5000, "journal.snapshot_every: must be at most "
                     "9,223,372,036,854,775,807 in size (a 64-bit integer), got an integer of about 5,000 digits",
                     id="snapshot_every-5000-digits"),
        ("sim.seed", -1, "sim.seed: Input should be greater than or equal to 0"),  # before: a crash in PCG64
        ("sim.tick_ms", 10**12, "sim.tick_ms: Input should be less than or equal to 3600000"),  # before: a crash
        # before: an OverflowError at the start (inf), or a journal header beyond int64 (1e14 s in ns)
        ("journal.retain_closed_seconds", math.inf, "journal.retain_closed_seconds: must be a finite number, got .inf"),
        ("journal.retain_closed_seconds", math.nan, "journal.retain_closed_seconds: must be a finite number, got .nan"),
        ("journal.retain_closed_seconds", 1e14, "journal.retain_closed_seconds: Input should be less than or equal to "
                                                "9223372036"),
        ("actors.replay", {"path": "x", "speed": math.inf}, "actors.replay.speed: must be a finite number, got .inf"),
    ],
)  # fmt: skip
def test_a_number_beyond_what_the_engine_holds_is_refused_naming_the_key(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_engine_config(_with(field, value), source="engine.yaml")
    assert str(caught.value).startswith(f"engine.yaml: {message}")


def test_the_largest_64_bit_values_are_accepted() -> None:
    config = parse_engine_config(_with("sim.seed", 2**63 - 1, _with("journal.retain_closed_seconds", 9223372036)))
    assert config.sim.seed == 2**63 - 1 and config.engine_config().retain_closed_ns <= 2**63 - 1


def test_a_number_too_long_for_yaml_to_read_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("engine:\n  sim:\n    seed: " + "1" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_engine_config(path)
    assert str(caught.value).startswith(f"cannot read config {path}: not valid YAML (a value YAML cannot convert")


def test_a_config_is_read_as_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    """YAML is UTF-8: under an ASCII locale (C, no coercion) a comment in another script raised UnicodeDecodeError
    from read_text (a traceback, no file named); a Latin-1 file is one error naming the file and the byte."""
    path = tmp_path / "engine.yaml"
    path.write_text("# stop-loss 止损, 5 µs\nengine:\n  sim:\n    seed: 7\n", encoding="utf-8")
    code = "import sys; from veloz_actors.config import load_yaml; print(load_yaml(sys.argv[1])['engine']['sim'])"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "{'seed': 7}"
    path.write_bytes("# caf\u00e9\nengine: {}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value) == f"cannot read config {path}: not UTF-8 text (byte 0xe9 at offset 5): save it as UTF-8"


def test_a_max_drawdown_of_one_is_the_largest_allowed() -> None:
    assert parse_engine_config(_with("risk.max_drawdown", "1")).risk.max_drawdown == "1"


def test_an_engine_config_that_is_a_list_says_so(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("engine:\n  - instruments\n  - balances\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: the engine config must be a mapping of sections, "
                                          "got a list$"):  # fmt: skip
        load_engine_config(path)


def test_a_section_beside_the_engine_section_is_refused_not_ignored(tmp_path: Path) -> None:
    """A ``risk:`` indented one level too little sits beside ``engine:``: before, it was dropped and the engine ran
    with no limits at all."""
    path = tmp_path / "engine.yaml"
    shipped = SHIPPED.read_text()
    path.write_text(shipped + '\nrisk:\n  max_order_qty: {BTCUSDT: "1"}\nsim: {seed: 3}\n')
    with pytest.raises(ConfigError) as caught:
        load_engine_config(path)
    assert str(caught.value) == (
        f"{path}: risk, sim are beside the engine: section, where nothing is read: indent them under engine: "
        "(or remove them)"
    )
    path.write_text(shipped)
    assert load_engine_config(path) == load_engine_config(SHIPPED)


def test_a_section_that_is_not_a_mapping_says_so_without_class_names() -> None:
    with pytest.raises(ConfigError, match=r"^engine.yaml: risk: must be a mapping of settings, got a list$"):
        parse_engine_config(_with("risk", [1, 2]), source="engine.yaml")


def test_a_yaml_error_names_the_line_but_never_quotes_it(tmp_path: Path) -> None:
    """PyYAML's message quotes the offending line, which may hold the API token: only the problem and where."""
    path = tmp_path / "engine.yaml"
    path.write_text('engine:\n  api:\n    token: "my-very-secret-api-token-0123456789\n')
    with pytest.raises(ConfigError, match=r"not valid YAML \(.*at line \d+, column \d+\)") as caught:
        load_engine_config(path)
    assert "my-very-secret" not in str(caught.value) and caught.value.__cause__ is None


def test_a_config_error_carries_no_value_of_the_file_in_its_chain() -> None:
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    for field, value in (("venue.api_secret", secret), ("api.token", "tok-0123456789x")):
        with pytest.raises(ConfigError) as caught:
            parse_engine_config(_with(field, value), source="engine.yaml")
        text = "".join(traceback.format_exception(caught.value))
        assert value not in text and value[:12] not in text


def test_no_venue_url_credential_shows_in_a_config_or_settings_repr() -> None:
    """A URL's userinfo and a credential in its query string never show when the config, the venue clients'
    settings or the actors' spec is printed (a log line, an error, a debugger): the rest of the URL does."""
    from veloz_actors.actors.spec import EngineSpec
    from veloz_actors.venues.binance.venue import BinanceVenueSettings

    secrets = ("s3cret-pass", "KEYVALUE42", "tok3nvalue", "pr1vkey")
    venue = {
        "kind": "binance",
        "mode": "paper",
        "symbols": ["BTCUSDT"],
        "rest_url": "https://trader:s3cret-pass@proxy.example:8443/api?apiKey=KEYVALUE42&recvWindow=5000",
        "stream_url": "wss://proxy.example/stream?token=tok3nvalue",
        "ws_api_url": "wss://proxy.example/ws-api/v3?key=pr1vkey",
    }
    config = parse_engine_config(_with("sim.symbols", [], _with("venue", venue)), source="engine.yaml")
    market = config.venue.market_data()
    trading = config.venue.trading_settings()
    shown = {
        "config": (repr(config), str(config)),
        "venue": (repr(config.venue), str(config.venue)),
        "market data": (repr(MarketDataSettings(**market)),),
        "trading": (repr(BinanceVenueSettings(**trading)),),
        "spec": (repr(EngineSpec(name="e", engine_config={}, market_data=market, live={"settings": trading})),),
    }
    for what, texts in shown.items():
        for text in texts:
            assert not [s for s in secrets if s in text], f"{what}: {text}"
            assert "proxy.example" in text, f"{what}: {text}"
    assert "https://***@proxy.example:8443/api?apiKey=***&recvWindow=5000" in repr(config)


def test_a_live_engine_may_limit_an_asset_only_the_exchange_account_holds() -> None:
    """A live engine's balances come from the exchange after this check (BNB held for fees, traded nowhere)."""
    data = load_yaml(SHIPPED)["engine"]
    data.update(
        sim={**data["sim"], "symbols": []},
        venue={"kind": "binance", "mode": "live", "symbols": ["BTCUSDT"]},
        engine_risk={"max_asset_exposure": {"BNB": "50"}},
    )
    config = parse_engine_config(data, source="engine.yaml")
    btc = config.engine_config().instruments[0]
    assert config.engine_config({"BTCUSDT": btc}).instruments == (btc,)
    data["venue"]["mode"] = "paper"  # paper trades the configured balances: a typo there is still refused
    with pytest.raises(ConfigError, match="unknown asset 'BNB'"):
        parse_engine_config(data, source="engine.yaml").engine_config({"BTCUSDT": btc})


def test_unquoted_yaml_amounts_are_read_by_their_digits(tmp_path: Path) -> None:
    """YAML reads ``step_size: 0.00001`` as the float 1e-05: it means 0.00001, as quoted text would."""
    quoted = (
        "instruments:\n  - {symbol: BTCUSDT, base_asset: BTC, quote_asset: USDT, tick_size: '0.01',"
        " step_size: '0.00001', min_qty: '0.00001', max_qty: '9000', min_notional: '5', taker_fee_rate: '0.00075'}\n"
        "balances: {main: {USDT: '1000', BTC: '0.00000001'}}\n"
    )
    unquoted = quoted.replace("'", "")
    assert "step_size: 0.00001" in unquoted and "BTC: 0.00000001" in unquoted
    (tmp_path / "quoted.yaml").write_text(quoted)
    (tmp_path / "unquoted.yaml").write_text(unquoted)
    built = [load_engine_config(tmp_path / f"{name}.yaml").engine_config() for name in ("quoted", "unquoted")]
    assert built[0] == built[1]
    (instrument,) = built[1].instruments
    assert (instrument.qty_step, instrument.min_qty, instrument.taker_fee_rate) == (1000, 1000, 75_000)
    (tmp_path / "too_fine.yaml").write_text(unquoted.replace("step_size: 0.00001", "step_size: 0.000000001"))
    with pytest.raises(ConfigError, match=r"step_size.*'0\.000000001' has more than 8 decimal places"):
        load_engine_config(tmp_path / "too_fine.yaml").engine_config()


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("engine:\n  logging:\n    level: INFO\n    level: ERROR\n", "level", 4, 3),
        ("engine:\n  risk: {max_order_qty: {BTCUSDT: '1', BTCUSDT: '100'}}\n", "BTCUSDT", 2, 2),
        ("engine:\n  sim: {seed: 1}\nengine:\n  sim: {seed: 2}\n", "engine", 3, 1),
    ],
    ids=["block", "flow", "top-level"],
)
def test_a_key_written_twice_is_an_error_naming_the_key_and_its_lines(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    """PyYAML keeps the last of two equal keys without a word: a repeated risk limit or log level would have been
    silently replaced."""
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_engine_config(path)
    assert str(caught.value).startswith(
        f"cannot read config {path}: not valid YAML (duplicate key '{key}' (first at line {first}) at line {line}, "
    )


def test_a_merged_key_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("base: &base {seed: 1, levels: 5}\nsim:\n  <<: *base\n  seed: 2\n")
    assert load_yaml(path)["sim"] == {"seed": 2, "levels": 5}


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("api.allowed_hosts", ["box.lan:8080"], "allowed_hosts take host names or addresses without a port, got 'box.lan:8080'"),
        ("api.allowed_hosts", ["a b"], "allowed_hosts take host names or addresses without a port, got 'a b'"),
        ("api.allowed_origins", ["dash.example"], "allowed_origins take origins like https://example.com, got 'dash.example'"),
    ],
)  # fmt: skip
def test_bad_api_callers_are_named(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^engine.yaml: {field}: {re.escape(message)}$"):
        parse_engine_config(_with(field, value), source="engine.yaml")


def test_api_callers_reach_the_servers_options() -> None:
    data = _with(
        "api.allowed_hosts", ["MyBox.lan", "[FE80::0:1]"], _with("api.allowed_origins", ["https://dash.example/"])
    )
    options = parse_engine_config(data, source="engine.yaml").api.options()
    assert (options["allowed_hosts"], options["allowed_origins"]) == (
        ("mybox.lan", "fe80::1"),
        ("https://dash.example",),
    )

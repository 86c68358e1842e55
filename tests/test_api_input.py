"""Bad arguments to the public Python API are a VeloZ error naming the argument, raised before any work (no Ray).

The handle's own checks, which need a running engine, are in ``tests/actors/test_handle_input.py``.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import veloz_actors as vz
from veloz_actors import ConfigError, EngineUnavailable, InvalidInput
from veloz_actors.actors.api import build_spec
from veloz_actors.actors.bus import EVENT_KINDS, check_subscription
from veloz_actors.data.loaders import load_funding_rates, load_market_events
from veloz_actors.orders import parse_amount
from veloz_actors.search import runtime
from veloz_actors.search.runtime import check_max_workers, probe_address

from .actors.helpers import CONFIG, file_config

ROOT = Path(__file__).resolve().parent.parent
ETH_1H = str(ROOT.parent / "shared" / "data" / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")
BACKTEST = {"data": ETH_1H, "strategy": "rsi_reversion", "params": {"period": 14, "lower": 30, "upper": 70}}
SEARCH = {"data": ETH_1H, "strategy": "sma_cross", "grid": {"fast": "5:6:1", "slow": "30:31:1"}, "metric": "sharpe"}


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refusal here comes before Ray: starting it would fail the test."""
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bad argument must be refused before Ray starts")

    monkeypatch.setattr(ray, "init", refuse)


# ---------------------------------------------------------------------------------- floats written with an exponent


@pytest.mark.parametrize(("value", "units"), [(0.00001, 1_000), (2e-05, 2_000), (1e-08, 1), (0.0001, 10_000)])
def test_a_float_amount_whose_repr_has_an_exponent_is_its_exact_decimal(value: float, units: int) -> None:
    assert parse_amount(value, "quantity") == units


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e-09, "quantity: '0.000000001' has more than 8 decimal places"),
        (1e16, "quantity: '10000000000000000' is too large"),
        (math.nan, "quantity: nan is not a number"),
        (math.inf, "quantity: inf is not a number"),
    ],
)
def test_a_float_amount_is_judged_by_its_value_not_its_notation(value: float, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(value, "quantity")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("value", "units"),
    [
        (np.float64(0.5), 50_000_000),  # df.close.iloc[-1]: before, a raw decimal.InvalidOperation
        (np.float64(61837.63), 6_183_763_000_000),
        (np.float32(0.5), 50_000_000),
        (np.int64(3), 300_000_000),
        (np.uint8(2), 200_000_000),
    ],
)
def test_a_numpy_number_is_the_python_number_it_holds(value: object, units: int) -> None:
    assert parse_amount(value, "quantity") == units


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.float64("nan"), "quantity: nan is not a number"),
        (np.float32(0.1), "quantity: '0.10000000149011612' has more than 8 decimal places"),  # float32's own value
        (np.bool_(True), "quantity must be a decimal string, got bool"),
        (10**5000, "quantity: an integer of about 5,000 digits is too large (limit 10000000000)"),  # before: ValueError
        (10**30, "quantity: 1000000000000000000000000000000 is too large (limit 10000000000)"),
    ],
    ids=["nan", "float32", "bool_", "int-5000-digits", "int-31-digits"],
)
def test_a_numpy_or_huge_amount_is_refused_for_what_it_is(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(value, "quantity")
    assert str(caught.value) == message


def test_run_backtest_takes_a_float_initial_cash_written_with_an_exponent() -> None:
    result = vz.run_backtest(BACKTEST, initial_cash=0.00001)
    assert result["run"]["initial_cash"] == "0.00001"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e16, "initial_cash: '10000000000000000' is too large"),
        (1e-09, "initial_cash: '0.000000001' has more than 8 decimal places"),
        (math.nan, "initial_cash: nan is not a number"),
    ],
)
def test_run_backtest_refuses_a_float_initial_cash_for_what_it_is(value: float, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        vz.run_backtest(BACKTEST, initial_cash=value)
    assert str(caught.value).startswith(message)


def test_run_backtest_takes_paths_as_pathlib_paths(tmp_path: Path) -> None:
    """``load_bars`` and ``grid_search`` take a ``pathlib.Path``; ``run_backtest`` refused one ("data: Input should be
    a valid string")."""
    result = vz.run_backtest({**BACKTEST, "data": Path(ETH_1H)}, out=tmp_path / "run")
    assert result["run"]["data"] == ETH_1H
    assert Path(result["files"]["metrics"]) == tmp_path / "run" / "metrics.json"


@pytest.mark.parametrize(("key", "value"), [("data", 5), ("out", ["runs"])])
def test_run_backtest_names_a_path_of_the_wrong_type(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        vz.run_backtest({**BACKTEST, key: value})
    assert str(caught.value).startswith(
        f"{key}: must be a file path (a str or os.PathLike), got {type(value).__name__}"
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"qty_step": 0.001, "price_tick": 0.01}, ("0.001", "0.01")),  # YAML's `qty_step: 0.001`, unquoted
        ({"qty_step": 1}, ("1", "0.01")),
        ({"qty_step": 1e-05}, ("0.00001", "0.01")),
    ],
)
def test_run_backtest_takes_a_number_for_the_step_and_the_tick_as_a_search_does(
    settings: dict, expected: tuple[str, str]
) -> None:
    """A search config took ``qty_step: 0.001``; the same key in a backtest config was refused ("qty_step: Input
    should be a valid string")."""
    run = vz.run_backtest(BACKTEST, **settings)["run"]
    assert (run["qty_step"], run["price_tick"]) == expected
    assert run["qty_step_from"] == "config"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0.0, InvalidInput, "qty_step (--qty-step): must be greater than zero"),
        (math.nan, InvalidInput, "qty_step: nan is not a number"),
        (True, ConfigError, "qty_step: expected a number, got true"),
    ],
)
def test_run_backtest_refuses_a_bad_numeric_step_for_what_it_is(value: object, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        vz.run_backtest(BACKTEST, qty_step=value)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("engine", ["event", "kernel"])
def test_run_backtest_refuses_a_window_above_a_million_bars_before_reading_the_data(engine: str) -> None:
    with pytest.raises(InvalidInput, match=r"^sma_cross: slow must be at most 1,000,000 \(bars"):
        vz.run_backtest(data=ETH_1H, strategy="sma_cross",
                        params={"fast": 5, "slow": 10**29}, engine=engine)  # fmt: skip


def test_run_backtest_refuses_settings_beside_its_backtest_section() -> None:
    """A dict like a config file with ``fee_rate`` outside ``backtest:`` would have run with the default fee."""
    with pytest.raises(ConfigError) as caught:
        vz.run_backtest({"backtest": BACKTEST, "fee_rate": "0.01"})
    assert str(caught.value).startswith("config: fee_rate is beside the backtest: section, where nothing is read")


# ------------------------------------------------------------------------------------------ subscription arguments


@pytest.mark.parametrize(
    ("max_queue", "kinds", "message"),
    [
        (-1, None, "max_queue must be a positive int or None, got int -1"),
        (0, None, "max_queue must be a positive int or None, got int 0"),
        ("x", None, "max_queue must be a positive int or None, got str 'x'"),
        (True, None, "max_queue must be a positive int or None, got bool True"),
        (None, "OrderFilled", "kinds must be a non-empty list of event type names"),
        (None, [], "kinds must be a non-empty list of event type names"),
        (None, ["OrderFiled"], "kinds: unknown event type 'OrderFiled'; known: AccountUpdated, "),
        (None, ["OrderFilled", 3], "kinds: unknown event type 3; known: "),
        (None, ["PlaceOrder"], "kinds: unknown event type 'PlaceOrder'"),  # a command never reaches the bus
    ],
)
def test_a_bad_subscription_argument_is_named(max_queue: object, kinds: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_subscription(max_queue, kinds)
    assert str(caught.value).startswith(message)


def test_the_known_kinds_are_what_the_bus_carries_and_the_settled_marker() -> None:
    assert {"OrderFilled", "OrderCancelled", "BookTop", "Trade", "VenueConnection", "Settled"} <= EVENT_KINDS
    assert "OrderFilled" in str(pytest.raises(InvalidInput, check_subscription, None, ["x"]).value)
    assert check_subscription(10, ["OrderFilled", "Settled"]) == ("OrderFilled", "Settled")
    assert check_subscription(None, None) is None


# --------------------------------------------------------------------------------------------- engine arguments


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"durability": "junk"}, "durability must be one of always, group, none"),
        ({"durability": 1}, "durability must be one of always, group, none"),
        ({"name": 123}, "name must be a non-empty str, got int 123"),
        ({"name": ""}, "name must be a non-empty str"),
        ({"journal_dir": 123}, "journal_dir must be a directory path or None, got int 123"),
        ({"run_clock": "no"}, "run_clock must be True or False, got str 'no'"),
        ({"tick_ms": 0}, "tick_ms must be a positive int or None"),
        ({"tick_ms": "250"}, "tick_ms must be a positive int or None"),
        (
            {"tick_ms": 10**12},
            "tick_ms must be a positive int or None (the config's sim.tick_ms; at most 3,600,000, an "
            "hour), got int 1000000000000",
        ),
    ],
)
def test_build_spec_refuses_a_bad_argument_before_any_actor_starts(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_spec(file_config(), **arguments)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("durability", ["always", "group", "none", None])
def test_build_spec_takes_every_durability_of_the_journal(durability: str | None) -> None:
    spec = build_spec(file_config(), durability=durability)
    assert spec.durability == (durability or file_config().journal.durability)


def test_start_local_refuses_an_unknown_durability_at_once_with_or_without_a_journal(tmp_path: Path) -> None:
    for journal_dir in (tmp_path / "journal", None):
        with pytest.raises(ConfigError, match=r"^durability must be one of always, group, none .*got str 'junk'"):
            vz.start_local(CONFIG, journal_dir=journal_dir, durability="junk")
    assert not (tmp_path / "journal").exists()  # nothing written for a refused engine


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"address": 123}, "address must be auto, local, HOST:PORT or ray://HOST:PORT (a str) or None, got int 123"),
        ({"detached": "yes"}, "detached must be True or False, got str 'yes'"),
        ({"nodes": ["bus"]}, "nodes must be a mapping of actor name to node id"),
        ({"nodes": {"bsu": "n1"}}, "nodes: unknown actor 'bsu'; this engine's actors: account, bus, feed, oms, "),
        ({"nodes": {"bus": 7}}, "nodes['bus']: the node id must be a non-empty str, got int 7"),
    ],
)
def test_start_local_refuses_a_bad_argument_before_ray_starts(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        vz.start_local(CONFIG, **arguments)
    assert str(caught.value).startswith(message)


# -------------------------------------------------------------------------------- arguments of the wrong type


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: vz.run_backtest(123), ConfigError, "config must be a YAML path or a dict of settings, got int 123"),
        (lambda: vz.start_local(123), ConfigError, "config must be an engine config path, an EngineFileConfig or "),
        (lambda: vz.load_bars(None), InvalidInput, "path must be a file path (str or os.PathLike), got NoneType"),
        (lambda: vz.load_bars(ETH_1H, symbol=5), InvalidInput, "symbol must be a str or None, got int 5"),
        (lambda: load_funding_rates(1.5), InvalidInput, "path must be a file path (str or os.PathLike), got float"),
        (lambda: load_market_events(b"x"), InvalidInput, "path must be a file path (str or os.PathLike), got bytes"),
        (lambda: vz.grid_search(123), ConfigError, "config must be a YAML path, a dict or a SearchConfig, got int"),
        (lambda: vz.grid_search(SEARCH, out=1), ConfigError, "out must be a directory path or None, got int 1"),
        (lambda: vz.grid_search(SEARCH, max_workers="2"), ConfigError, "max_workers must be an int >= 1 or None"),
        (lambda: vz.grid_search(SEARCH, address=123), ConfigError, "address must be auto, HOST:PORT or ray://"),
        # these three reached Ray; a callback that is not one failed after the first chunk of work
        (lambda: vz.grid_search(SEARCH, on_progress=5), ConfigError, "on_progress must be a callable or None, got int"),
        (lambda: vz.grid_search(SEARCH, progress="no"), ConfigError, "progress must be True or False, got str 'no'"),
        (lambda: vz.connect(None, namespace=5), ConfigError, "namespace must be a non-empty str, got int 5"),
    ],
)
def test_an_argument_of_the_wrong_type_is_named_with_the_type_received(call, error, message: str) -> None:
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("value", [True, 2.0, "2"])
def test_max_workers_must_be_an_int(value: object) -> None:
    with pytest.raises(ConfigError, match=f"^max_workers must be an int >= 1 or None, got {type(value).__name__}"):
        check_max_workers(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^--max-workers must be >= 1, got 0$"):  # the CLI's message, as it was
        check_max_workers(0)


def test_probe_address_names_a_non_string_address() -> None:
    with pytest.raises(ConfigError, match=r"^address must be auto, HOST:PORT or ray://HOST:PORT \(a str\) or None"):
        probe_address(6379)  # type: ignore[arg-type]


# ------------------------------------------------------------------ an address where something else than Ray listens


@contextlib.contextmanager
def _listener(answer: bytes | None) -> Iterator[str]:
    """A TCP server on a free port: after the client's first bytes it sends ``answer`` and closes, or (``None``)
    keeps every connection open and says nothing."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                if answer is None:
                    held.append(conn)
                    continue
                with conn:
                    conn.recv(64)
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


_GRPC_SETTINGS = b"\x00\x00\x18\x04\x00\x00\x00\x00\x00"  # what Ray's GCS sent this probe (a SETTINGS frame)


def test_an_address_that_answers_as_grpc_passes_the_probe() -> None:
    with _listener(_GRPC_SETTINGS) as address:
        probe_address(address)
        probe_address(f"ray://{address}")


@pytest.mark.parametrize(
    ("answer", "heard"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", r"it answered b'HTTP/1.1 400 Bad Request\\r\\n\\r\\n'"),
        (b"", "it closed the connection without answering"),
        (None, r"it took the connection and sent nothing in 0.5 s \(timed out\)"),
    ],
    ids=["http", "closes", "silent"],
)
def test_an_address_where_something_else_listens_is_refused_with_what_it_said(
    monkeypatch: pytest.MonkeyPatch, answer: bytes | None, heard: str
) -> None:
    """A wrong port (the dashboard's, another service's) kept ray.init retrying for minutes."""
    monkeypatch.setattr(runtime, "ANSWER_TIMEOUT_SECONDS", 0.5)
    with _listener(answer) as address:
        with pytest.raises(EngineUnavailable, match=rf"^{address} is not a Ray cluster \({heard}; Ray's GCS and"):
            probe_address(address)
        probe_address(address, speaks_ray=False)  # the Jobs API's dashboard address: HTTP, only reached


def test_with_ray_over_tls_the_address_is_only_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USE_TLS", "1")
    with _listener(b"\x16\x03\x03") as address:  # a TLS server's bytes: the cleartext probe would misjudge it
        probe_address(address)

"""The engine config's ``actors:`` section is typed: a bad field is a ConfigError naming it, before any actor starts."""

from __future__ import annotations

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
    parse_actors,
    parse_engine_config,
)

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
        ({"strategies": [{"symbol": "BTCUSDT"}]}, "actors.strategies: 0: Value error, each entry needs 'strategy'"),
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

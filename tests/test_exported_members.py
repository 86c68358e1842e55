"""The public surface of ``import veloz_actors as vz`` is explicit and pinned (httpx ``tests/test_exported_members``)."""

from __future__ import annotations

import veloz_actors as vz

EXPECTED = {
    "ConfigError",
    "DataError",
    "EngineHandle",
    "EngineStopped",
    "EngineUnavailable",
    "IllegalTransition",
    "InvalidInput",
    "JournalError",
    "SequenceGap",
    "Subscription",
    "VelozError",
    "__version__",
    "connect",
    "grid_search",
    "load_bars",
    "run_backtest",
    "start_local",
}


def test_all_is_exactly_the_pinned_public_api():
    assert set(vz.__all__) == EXPECTED
    assert len(vz.__all__) == len(EXPECTED)


def test_every_exported_name_resolves_and_is_documented():
    for name in vz.__all__:
        member = getattr(vz, name)
        if name != "__version__":
            assert member.__doc__, name

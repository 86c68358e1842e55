"""The L2 backtest's execution models, which live with the venue that runs them: see
:mod:`veloz_actors.venues.fill_models`. Re-exported here, where backtest users look for them."""

from __future__ import annotations

from ..venues.fill_models import (
    ConservativeQueue,
    ConstantLatency,
    FeeModel,
    FixedSlippage,
    LatencyModel,
    NoSlippage,
    QueueModel,
    SlippageModel,
    UniformLatency,
)

__all__ = [
    "ConservativeQueue",
    "ConstantLatency",
    "FeeModel",
    "FixedSlippage",
    "LatencyModel",
    "NoSlippage",
    "QueueModel",
    "SlippageModel",
    "UniformLatency",
]

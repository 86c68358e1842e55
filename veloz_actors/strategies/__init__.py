"""Strategies: the interface a strategy is written against, and the built-in ones.

One strategy object runs unchanged in the bar backtest, the L2 backtest and on the actor engine; each of those drivers
hands it a context that implements :class:`~veloz_actors.strategies.base.StrategyContext`. Nothing here imports
``ray`` or the backtest: the drivers import the strategies, never the other way round.

- :mod:`.base`: :class:`Strategy`, :class:`StrategyContext` (and the L2 context's extra view), the reusable :class:`Bar`;
- :mod:`.params`: the built-in bar strategies' parameter rules, shared with the vectorised kernel and searches;
- :mod:`.bar_strategies`: ``sma_cross`` and ``rsi_reversion``, bar by bar;
- :mod:`.l2_strategies`: ``book_imbalance`` and ``passive_maker`` for the tick/L2 backtest.
"""

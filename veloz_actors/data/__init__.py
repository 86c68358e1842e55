"""Market data: files in, validated VeloZ values out, and recorded streams paced for replay.

- :mod:`.bars`: :class:`~veloz_actors.data.bars.BarSeries`, candles as a numpy structured array (exact ints);
- :mod:`.loaders`: candle files, funding rates and recorded Binance WebSocket captures, parsed at the edge through
  :mod:`veloz_actors.venues.binance` (``vz.load_bars``);
- :mod:`.replay`: :class:`~veloz_actors.data.replay.ReplayPacer`, a recording cut into batches at its receive times.

Nothing here imports ``ray``, the backtest or the strategies; the backtests, searches and the feed actor import it.
"""

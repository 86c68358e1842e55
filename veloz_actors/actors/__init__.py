"""The actor engine: the core's components as Ray actors passing immutable messages with backpressure.

This package is the only one that imports ``ray``. Its pieces:

- :mod:`.backpressure`: bounded queues (drop-oldest with a drop counter) and in-flight windows (reject with the
  depth and the limit) -- pure, no Ray;
- one module per actor, each a plain class delegating to the core (``ray.remote`` is applied at the edge, in
  :mod:`.supervisor`): :mod:`.oms` (the sequencer over the trading kernel), :mod:`.venue` (a shard of simulated
  venues and their market data, over :mod:`.venue_shard`), :mod:`.feed` (the simulated clock and recorded data),
  :mod:`.bus` (the event bus), :mod:`.account` (the account view), :mod:`.risk` (engine-wide risk) and
  :mod:`.strategy_node` (live strategies); :mod:`.spec` holds what they share;
- :mod:`.supervisor`: starts the graph, watches it (liveness, restarts) and stops it;
- :mod:`.api`: the Python handle (``vz.start_local``, ``vz.connect``); the command line that drives it
  (``veloz start --local``, ``veloz attach``) is :mod:`veloz_actors.interfaces.engine_cli`, never imported from here.
"""

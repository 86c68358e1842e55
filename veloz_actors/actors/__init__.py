"""The actor engine: the core's components as Ray actors passing immutable messages with backpressure.

This package is the only one that imports ``ray``. Its pieces:

- :mod:`.backpressure`: bounded queues (drop-oldest with a drop counter) and in-flight windows (reject with the
  depth and the limit) -- pure, no Ray;
- :mod:`.nodes`: the actor classes (OMS sequencer, account, order-book shards, market feed, event bus) as plain
  classes delegating to the core; ``ray.remote`` is applied at the edge in :mod:`.supervisor`;
- :mod:`.supervisor`: starts the graph, watches it (liveness, restarts) and stops it;
- :mod:`.api`: the Python handle (``vz.start_local``, ``vz.connect``); the command line that drives it
  (``veloz start --local``, ``veloz attach``) is :mod:`veloz_actors.interfaces.engine_cli`, never imported from here.
"""

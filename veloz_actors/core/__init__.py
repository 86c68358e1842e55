"""The pure core: instruments, books and matching, OMS, account, risk, the engine, journal and replay.

Nothing under ``veloz_actors.core`` imports ``ray``; its tests refuse ``ray.init``.
"""

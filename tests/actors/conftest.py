"""Actor-layer tests share one session-scoped Ray runtime: request the ``ray_runtime`` fixture.

The fixture lives in ``tests/ray_fixtures.py`` (loaded by ``tests/conftest.py`` as a plugin) so that every Ray test
directory (``tests/actors``, ``tests/search``) shares the one runtime instead of starting its own. Pass ``timeout=`` to
every ``ray.get``; poll with a deadline instead of sleeping.
"""

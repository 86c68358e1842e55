"""The one Ray runtime every Ray test shares (a pytest plugin, loaded from ``tests/conftest.py``).

Starting Ray costs seconds, so the whole session shares one private local runtime: ``address="local"`` (never
joining another engineer's cluster), 2 CPUs, no dashboard, token authentication disabled (tests must agree with the
runtime on ``RAY_AUTH_MODE``), shut down when the session ends. Tests that need Ray ask for ``ray_runtime``; tests
that need a *multi-node* cluster build their own (see ``tests/search/test_cluster.py``) and drive it from a
subprocess, because one process can be the driver of only one cluster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

RUNTIME_CPUS = 2
OBJECT_STORE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RayRuntime:
    """What a test may need to know about the shared runtime."""

    gcs_address: str
    node_id: str
    num_cpus: int


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[RayRuntime]:
    """A private local Ray runtime for the whole test session (started on first use)."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_worker_niceness", "0")  # as the engine's own runtime (actors.api): not starved by load
    import ray

    if ray.is_initialized():
        pytest.fail("Ray was already initialised before the shared ray_runtime fixture; tests must use the fixture")
    context = ray.init(
        address="local",
        num_cpus=RUNTIME_CPUS,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        logging_level=logging.WARNING,
        log_to_driver=False,
        namespace="veloz-tests",
    )
    try:
        yield RayRuntime(
            gcs_address=context.address_info["gcs_address"],
            node_id=ray.get_runtime_context().get_node_id(),
            num_cpus=RUNTIME_CPUS,
        )
    finally:
        ray.shutdown()

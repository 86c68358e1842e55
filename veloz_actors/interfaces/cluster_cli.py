"""``veloz attach``, ``veloz status`` and ``veloz stop``: talk to an engine running on a Ray cluster.

An engine started with ``veloz start --address ADDR --detached`` lives in the ``veloz`` namespace of that cluster
under a name (``default`` unless ``--name`` is given); these commands find it there from any process or machine.
"""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

__all__ = ["register"]

_ADDRESS = typer.Option("--address", help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto).")
_NAME = typer.Option("--name", help="The engine's name on the cluster.")


def register(app: typer.Typer) -> None:
    @app.command("attach")
    def attach(
        address: Annotated[str, _ADDRESS] = "auto",
        name: Annotated[str, _NAME] = "default",
        market: Annotated[bool, typer.Option("--market/--no-market", help="Print market quotes.")] = False,
    ) -> None:
        """Open the stdio command session (same commands, same JSON events) to an engine running on a cluster."""
        from .engine_cli import attach_command

        raise typer.Exit(attach_command(address, name=name, market=market))

    @app.command("status")
    def status(address: Annotated[str, _ADDRESS] = "auto", name: Annotated[str, _NAME] = "default") -> None:
        """Print an engine's health as one JSON line: every actor alive, its inbox depth and last sequence number,
        the node it runs on. Exit status 1 when STATUS lists problems (an actor that cannot come back because its
        pinned node is gone, a live strategy that keeps raising), each also on stderr."""
        import ray

        from ..actors.api import CONNECT_SECONDS, connect

        engine = connect(address, name=name, timeout=CONNECT_SECONDS)
        try:
            status = engine.status()
            sys.stdout.buffer.write(orjson.dumps({"type": "status", **status}) + b"\n")
        finally:
            ray.shutdown()
        for problem in status.get("problems") or ():
            print(f"error: {problem}", file=sys.stderr)
        if status.get("problems"):
            raise typer.Exit(1)

    @app.command("metrics")
    def metrics(
        address: Annotated[str, _ADDRESS] = "auto",
        name: Annotated[str, _NAME] = "default",
        host: Annotated[
            str, typer.Option(help="Interface to bind (loopback unless you mean to expose it).")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port of the /metrics endpoint.")] = 9464,
    ) -> None:
        """Serve an engine's Prometheus metrics (``/metrics``) from this process until interrupted."""
        import signal
        import time

        import ray

        from ..actors.api import CONNECT_SECONDS, connect
        from .metrics import serve_metrics

        engine = connect(address, name=name, timeout=CONNECT_SECONDS)
        server = serve_metrics(engine.status, host=host, port=port)
        sys.stdout.buffer.write(orjson.dumps({"type": "status", "metrics": server.url, "name": name}) + b"\n")
        sys.stdout.buffer.flush()
        # the handler only flags: Python runs it between two bytecodes of this thread, which may hold a lock the
        # handler would take (an Event's, inside its wait), and then it would wait for itself for ever
        stopping: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: stopping.append(signum))
        try:
            while not stopping:
                time.sleep(0.25)
        finally:
            server.close()
            ray.shutdown()

    @app.command("stop")
    def stop(address: Annotated[str, _ADDRESS] = "auto", name: Annotated[str, _NAME] = "default") -> None:
        """Stop an engine on a cluster: journals flushed, every actor ended. An engine that does not answer (still
        starting, or stuck) is ended without that (state ``killed``, exit status 1): its journals keep what they hold,
        and its next start recovers from them."""
        import ray

        from .._exceptions import EngineUnavailable
        from ..actors.api import CONNECT_SECONDS, NAMESPACE, connect
        from ..actors.supervisor import supervisor_name

        try:
            engine = connect(address, name=name, timeout=CONNECT_SECONDS)
        except EngineUnavailable as exc:
            if not ray.is_initialized():  # the cluster is not there
                raise
            try:
                supervisor = ray.get_actor(supervisor_name(name), namespace=NAMESPACE)
            except ValueError:  # no such engine
                raise exc from None
            ray.kill(supervisor, no_restart=True)  # its actors end with it (it owns them)
            sys.stdout.buffer.write(orjson.dumps({"type": "status", "name": name, "state": "killed"}) + b"\n")
            print(
                f"error: {exc}: ended without a clean stop (the next start recovers from its journals)", file=sys.stderr
            )
            ray.shutdown()
            raise typer.Exit(1) from None
        try:
            engine.shutdown()
            sys.stdout.buffer.write(orjson.dumps({"type": "status", "name": name, "state": "stopped"}) + b"\n")
        finally:
            ray.shutdown()

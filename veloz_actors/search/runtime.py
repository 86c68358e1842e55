"""Finding or starting the Ray runtime a search runs on, with a clear error, quickly, when it cannot be reached.

``address``:

- ``None``: reuse the runtime this process already has (``ray.init`` called before), otherwise start a private local
  one (``address="local"``, ``num_cpus`` = ``max_workers`` or every core) and stop it afterwards;
- ``"auto"``: the cluster already running on this machine (``ray start --head``);
- ``"HOST:PORT"``: a cluster's GCS address; ``"ray://HOST:PORT"``: a Ray Client server.

Token authentication (Ray >= 2.52) is left to Ray's own environment variables (``RAY_AUTH_MODE``,
``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``), which must match the cluster's (:func:`auth_hint` says so in an error).
An address is shown in messages only through :func:`redact` (:func:`veloz_actors.logs.redact_address`): a
``user:password@`` in it never reaches a message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray

from .._exceptions import ConfigError, EngineUnavailable, quoted
from ..logs import redact_address as redact  # the address's userinfo as ***, in every message naming it

__all__ = ["Runtime", "auth_hint", "check_joined", "check_max_workers", "connect", "probe_address", "redact"]

PROBE_TIMEOUT_SECONDS = 3.0
ANSWER_TIMEOUT_SECONDS = 10.0  # a gRPC server answers at once; the margin is for a loaded machine


@dataclass(frozen=True, slots=True)
class Runtime:
    """The runtime a search uses: how many CPUs it may fill, and whether this process started it."""

    address: str
    workers: int
    started_here: bool


def auth_hint() -> str:
    """What to check when a cluster refuses this process: Ray's token-authentication settings (never the token)."""
    return (
        f"RAY_AUTH_MODE is {os.environ.get('RAY_AUTH_MODE', 'unset')}; a cluster with token authentication needs "
        "RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
    )


def probe_address(address: str | None, timeout: float = PROBE_TIMEOUT_SECONDS, *, speaks_ray: bool = True) -> None:
    """Fail fast (``EngineUnavailable``) when ``HOST:PORT`` / ``ray://HOST:PORT`` does not accept a TCP connection,
    or (``speaks_ray``) accepts it but does not answer as a Ray GCS or Ray Client server does (both are gRPC: a
    wrong port, the dashboard's say, would otherwise keep ``ray.init`` retrying for minutes); :class:`ConfigError`
    when ``address`` is not such a string."""
    if address is None:
        return
    if not isinstance(address, str):
        raise ConfigError(
            f"address must be auto, HOST:PORT or ray://HOST:PORT (a str) or None, got {type(address).__name__} "
            f"{quoted(address)}"
        )
    if address in ("auto", "local"):
        return
    shown = redact(address, address)
    if address.startswith(("http://", "https://")):
        raise ConfigError(
            f"--address {shown}: that is a dashboard (Jobs) address; use `veloz submit` for it, "
            "or give the cluster address HOST:6379 / ray://HOST:10001"
        )
    host, port = _host_port(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EngineUnavailable(f"cannot reach a Ray cluster at {shown} ({reason} after <= {timeout:g} s)") from exc
    with sock:
        if not speaks_ray or _ray_uses_tls():
            return
        silent: OSError | None = None
        try:
            answer = _http2_answer(sock)
        except OSError as exc:  # a timeout (it listens but says nothing) or a reset
            answer, silent = b"", exc
    if not (len(answer) >= 4 and answer[3] == _SETTINGS):
        if silent is not None:
            heard = f"it took the connection and sent nothing in {ANSWER_TIMEOUT_SECONDS:g} s ({silent})"
        else:
            heard = f"it answered {answer[:40]!r}" if answer else "it closed the connection without answering"
        raise EngineUnavailable(
            f"{shown} is not a Ray cluster ({heard}; Ray's GCS and Ray Client server answer in gRPC): give the "
            "cluster address HOST:6379 (the GCS port of `ray start --head`) or ray://HOST:10001"
        )


# An HTTP/2 client's opening (RFC 9113 3.4): the connection preface, then an empty SETTINGS frame. A gRPC server (Ray's
# GCS, Ray Client) answers with its own SETTINGS frame: a 9-byte header whose fourth byte is the frame type, 0x4.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x4


def _http2_answer(sock: socket.socket) -> bytes:
    """The first bytes (at least 4, unless it closes first) the server sends after an HTTP/2 client's opening;
    ``socket.timeout``, an ``OSError``, when it says nothing for ``ANSWER_TIMEOUT_SECONDS``."""
    sock.settimeout(ANSWER_TIMEOUT_SECONDS)
    sock.sendall(_HTTP2_PREFACE)
    answer = b""
    while len(answer) < 4:
        more = sock.recv(64)
        if not more:
            break
        answer += more
    return answer


def _ray_uses_tls() -> bool:
    """Ray's gRPC over TLS (``RAY_USE_TLS``): the cleartext opening would go unanswered, so it is not probed."""
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port_text = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"--address {redact(address, address)!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return host, int(port_text)


def _ip(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def check_joined(address: str | None) -> None:
    """With Ray already initialised in this process, an ``address`` naming another cluster is a :class:`ConfigError`
    (Ray joins one cluster per process: ignored, the work would silently run on the wrong one). None, ``auto``,
    ``local`` and a ``ray://`` client address (which cannot be compared) mean the one joined; ``HOST:PORT`` must be
    its GCS address (a loopback host matches this node's). An address where nothing listens is
    :class:`EngineUnavailable`, as it is before Ray is initialised."""
    if address is None or address in ("auto", "local") or address.startswith("ray://"):
        return
    host, port = _host_port(address)
    current = ray.get_runtime_context().gcs_address
    joined_host, joined_port = _host_port(current)
    joined_ip = _ip(joined_host)
    here = {joined_ip, "127.0.0.1"} if joined_ip == ray.util.get_node_ip_address() else {joined_ip}
    ip = _ip(host)
    if port == joined_port and (ip in here or ip.startswith("127.") and "127.0.0.1" in here):
        return
    # nothing listening there: that is the clearer error (as without Ray initialised); whatever listens, this
    # process cannot join it, so it is not asked whether it speaks Ray
    probe_address(address, speaks_ray=False)
    raise ConfigError(
        f"address {redact(address, address)!r}: this process has already joined the Ray cluster at {current}; call "
        "ray.shutdown() first to use another (or leave address out to use this one)"
    )


def check_max_workers(max_workers: int | None) -> None:
    """Refuse a ``--max-workers`` that is not an int of at least 1 (``None`` means every core / the whole cluster)."""
    if max_workers is None:
        return
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise ConfigError(
            f"max_workers must be an int >= 1 or None, got {type(max_workers).__name__} {quoted(max_workers)}"
        )
    if max_workers < 1:
        raise ConfigError(f"--max-workers must be >= 1, got {max_workers}")


@contextlib.contextmanager
def connect(address: str | None, max_workers: int | None = None) -> Iterator[Runtime]:
    """Yield the runtime for ``address``; stop it on exit only if it was started here."""
    check_max_workers(max_workers)
    if ray.is_initialized():
        check_joined(address)
        yield Runtime("existing", _workers(max_workers), started_here=False)
        return
    probe_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        kwargs.update(address="local", num_cpus=max_workers or os.cpu_count() or 1, include_dashboard=False)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        where = "a private local runtime" if address is None else address
        hint = f" ({auth_hint()})" if address is not None else ""
        message = f"cannot start or join Ray at {where}: {str(exc).splitlines()[0]}{hint}"
        raise EngineUnavailable(redact(message, address)) from exc
    try:
        yield Runtime(address or "local", _workers(max_workers), started_here=True)
    finally:
        ray.shutdown()


def _workers(max_workers: int | None) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    return min(cpus, max_workers) if max_workers else cpus

"""Binance request signing: API credentials that never leak, the exact signed payloads, and the verifiers a server
checks them with.

**Key types** (``official-spot-docs/rest-api.md`` "SIGNED Endpoint Examples", ``faqs/api_key_types``): an HMAC secret
(HMAC-SHA256, hex signature), an Ed25519 private key (the signature is the base64 of the 64-byte signature; Binance's
recommended type) or an RSA private key (RSASSA-PKCS1-v1_5 with SHA-256, base64). Private keys are PEM files, loaded
with ``cryptography``.

**REST** (:func:`signed_params`): ``name=value`` pairs in the order given, each name and value percent-encoded
(RFC 3986: every byte of the UTF-8 text but ``A-Z a-z 0-9 - _ . ~`` becomes ``%XX``), then ``recvWindow`` and
``timestamp``; that string is what is signed (Binance rejects a signature over the unencoded text with -1022 since
2026-01-15, ``CHANGELOG.md`` 2025-12-17), and ``&signature=`` plus the percent-encoded signature is appended. The
result is sent verbatim as the query string (or the form body): the server verifies the bytes it receives.

**WebSocket API** (:func:`ws_signed_params`, ``web-socket-api.md`` "SIGNED request example"): every param but
``signature``, ``apiKey`` included, **sorted by name**, ``name=value`` joined by ``&`` with **no** percent-encoding
(UTF-8 bytes), signed; ``signature`` is added to the params object as is.

**Timing** (``rest-api.md`` "Timing security"): ``timestamp`` is the sender's estimate of the exchange's time in ms
(pass it in; nothing here reads a clock), ``recvWindow`` at most 60000 ms (Binance's default 5000).
:func:`timestamp_ok` is the server's rule, for the local test server.

**Secrets never leak.** :class:`Credentials` keeps the HMAC secret or the private key in private slots: ``repr`` and
``str`` show the key type and the API key's first four characters only (``api_key=vmPU…(masked)``); error messages
name the environment variable, config key or file at fault, never a value; the object does not pickle, copy into
another process, or serialise (``pickle``, ``cloudpickle`` and therefore Ray refuse it with a :class:`TypeError` that
says what to do instead).

**Reaching an actor.** The engine never ships a secret. It hands the actor a :class:`CredentialsRef` (the *names* of
the environment variables and the key file's path: no secret in it, so it pickles and appears in logs safely) and the
actor calls :meth:`CredentialsRef.load` in its own process, reading the same environment or file. Where that cannot
work (an actor on another machine without the file), a caller may opt in with :meth:`Credentials.to_secret_dict` /
:meth:`Credentials.from_secret_dict` and carry the dict over a channel it trusts; nothing does this implicitly. Do not
pass secrets through Ray's ``runtime_env`` ``env_vars``: Ray shows them in its dashboard and state API.

>>> creds = Credentials.from_hmac("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
...                               "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
>>> creds
Credentials(kind=HMAC, api_key=vmPU…(masked))
>>> creds.signed_params({"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
...                      "quantity": "1", "price": "0.1"}, timestamp_ms=1499827319559, recv_window_ms=5000)
'symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import quote, unquote_plus

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from ..._exceptions import ConfigError, InvalidInput
from ...logs import register_secrets

# A key or secret pasted where a path belongs: a run of 32 letters and digits no path component has, or a base64
# string (letters, digits, + and /, no dot) of 40 or more with a digit in it.
_KEY_RUN = re.compile(r"[A-Za-z0-9+]{32,}")
_BASE64 = re.compile(r"(?=.*[0-9+])[A-Za-z0-9+/]{40,}={0,2}")
_ENV_LINE = re.compile(r"\s*(?:export\s+)?[A-Z][A-Z0-9_]*\s*=")

__all__ = [
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "ENV_PRIVATE_KEY_FILE",
    "ENV_PRIVATE_KEY_PASSWORD",
    "MAX_RECV_WINDOW_MS",
    "Credentials",
    "CredentialsRef",
    "read_env_file",
    "KeyKind",
    "Verifier",
    "query_string",
    "rest_payload",
    "signed_params",
    "split_signature",
    "timestamp_ok",
    "verify_signature",
    "ws_payload",
    "ws_signed_params",
]

KeyKind = Literal["HMAC", "ED25519", "RSA"]

ENV_API_KEY = "BINANCE_API_KEY"
ENV_API_SECRET = "BINANCE_API_SECRET"  # noqa: S105 - the variable's name, not a secret
ENV_PRIVATE_KEY_FILE = "BINANCE_PRIVATE_KEY_FILE"
ENV_PRIVATE_KEY_PASSWORD = "BINANCE_PRIVATE_KEY_PASSWORD"  # noqa: S105 - the variable's name

MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000  # what Binance assumes when recvWindow is not sent
_AHEAD_MS = 1_000  # a timestamp may be at most this far ahead of the server's clock

_SIGNED_BY_US = frozenset({"signature", "timestamp", "recvWindow"})


# ------------------------------------------------------------------------------------------------ payload text


def _text(name: str, value: Any) -> str:
    """One parameter value as Binance reads it: text as is, ints in decimal, booleans ``true``/``false``, a
    :class:`~decimal.Decimal` without exponent. Floats are refused: their text is not exact (``1e-05``)."""
    if isinstance(value, str):
        if not value:
            raise InvalidInput(f"signed request: parameter {name!r} is empty (leave it out instead)")
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInput(f"signed request: parameter {name!r} is not a finite number")
        return format(value, "f")
    if isinstance(value, float):
        raise InvalidInput(f"signed request: parameter {name!r} is a float; pass exact decimal text such as '0.001'")
    raise InvalidInput(
        f"signed request: parameter {name!r} must be text, an int, a bool or a Decimal, not {type(value).__name__}"
    )


def _pct(text: str) -> str:
    return quote(text, safe="", encoding="utf-8")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"signed request: parameter names must be non-empty text, got {name!r}")
    return name


def query_string(params: Mapping[str, Any]) -> str:
    """``name=value&...`` in the order given, names and values percent-encoded (RFC 3986 unreserved characters kept,
    UTF-8 bytes as uppercase ``%XX``); ``None`` values are left out. The REST signature payload before ``recvWindow``
    and ``timestamp``.

    >>> query_string({"symbol": "１２", "side": "BUY", "newClientOrderId": "a:b/c", "icebergQty": None})
    'symbol=%EF%BC%91%EF%BC%92&side=BUY&newClientOrderId=a%3Ab%2Fc'
    """
    return "&".join(f"{_pct(_check_name(k))}={_pct(_text(k, v))}" for k, v in params.items() if v is not None)


def _check_timing(timestamp_ms: Any, recv_window_ms: Any) -> None:
    if type(timestamp_ms) is not int or timestamp_ms <= 0:
        raise InvalidInput(f"signed request: timestamp_ms must be a positive integer (ms), got {timestamp_ms!r}")
    if recv_window_ms is not None and (type(recv_window_ms) is not int or not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS):
        raise InvalidInput(
            f"signed request: recv_window_ms must be an integer in 1..{MAX_RECV_WINDOW_MS} (or None: Binance's "
            f"default {DEFAULT_RECV_WINDOW_MS}), got {recv_window_ms!r}"
        )


def _refuse_reserved(params: Mapping[str, Any], reserved: frozenset[str]) -> None:
    clash = sorted(reserved.intersection(params))
    if clash:
        raise InvalidInput(f"signed request: {', '.join(clash)} are added by signing; leave them out of params")


def rest_payload(params: Mapping[str, Any], *, timestamp_ms: int, recv_window_ms: int | None) -> str:
    """The exact REST signature payload: :func:`query_string` of ``params``, then ``recvWindow`` (when given) and
    ``timestamp``."""
    _refuse_reserved(params, _SIGNED_BY_US)
    _check_timing(timestamp_ms, recv_window_ms)
    parts = [query_string(params)] if any(v is not None for v in params.values()) else []
    if recv_window_ms is not None:
        parts.append(f"recvWindow={recv_window_ms}")
    parts.append(f"timestamp={timestamp_ms}")
    return "&".join(parts)


def ws_payload(params: Mapping[str, Any]) -> str:
    """The WebSocket API signature payload: every param but ``signature``, sorted by name, ``name=value`` joined by
    ``&``, not percent-encoded (the caller signs its UTF-8 bytes). ``None`` values are left out."""
    items = sorted((_check_name(k), v) for k, v in params.items() if k != "signature" and v is not None)
    return "&".join(f"{k}={_text(k, v)}" for k, v in items)


def timestamp_ok(timestamp_ms: int, recv_window_ms: float | None, server_ms: int) -> bool:
    """Binance's "Timing security" rule: the request is processed only if ``timestamp < server + 1000`` and
    ``server - timestamp <= recvWindow`` (default 5000 ms)."""
    window = DEFAULT_RECV_WINDOW_MS if recv_window_ms is None else recv_window_ms
    return timestamp_ms < server_ms + _AHEAD_MS and server_ms - timestamp_ms <= window


def split_signature(query: str, body: str = "") -> tuple[str, str | None]:
    """A received REST request as ``(payload, signature)``: the ``signature`` pair is taken out of the raw query
    string (or else the form body), the payload is the rest of the query concatenated without separator to the rest
    of the body, exactly as received, and the signature is form-decoded (``%2B`` -> ``+``; a bare ``+`` is a space,
    as Binance reads it). No signature: ``(payload, None)``."""
    found: str | None = None

    def strip(text: str) -> str:
        nonlocal found
        if not text:
            return text
        kept = []
        for pair in text.split("&"):
            if found is None and pair.startswith("signature="):
                found = unquote_plus(pair[len("signature=") :])
            else:
                kept.append(pair)
        return "&".join(kept)

    query = strip(query)
    body = strip(body)
    return query + body, found


# --------------------------------------------------------------------------------------------------- key loading


def _config_error(message: str) -> NoReturn:
    raise ConfigError(message) from None


def _clean_token(value: str | None, what: str) -> str:
    """An API key or HMAC secret: surrounding whitespace dropped, then non-empty printable ASCII without spaces (it
    goes into an HTTP header or is the HMAC key). The value never appears in the error."""
    if value is None:
        _config_error(f"{what} is not set")
    if not isinstance(value, str):
        _config_error(f"{what} must be text, not {type(value).__name__}")
    value = value.strip()
    if not value:
        _config_error(f"{what} is empty")
    if not (value.isascii() and value.isprintable()) or any(c.isspace() for c in value):
        _config_error(f"{what} must be printable ASCII without spaces (check for a stray quote or line break)")
    return value


def _mask(api_key: str) -> str:
    return f"{api_key[:4]}…(masked)" if len(api_key) >= 12 else "…(masked)"


_PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
_PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _load_private_key(pem: bytes, password: bytes | None, what: str, password_what: str) -> _PrivateKey:
    """A PEM private key, Ed25519 or RSA, with errors that name ``what`` (the file or config key), never the key."""
    if b"PRIVATE KEY-----" not in pem:
        if b"PUBLIC KEY-----" in pem:
            _config_error(
                f"{what} holds a public key; give the private key (the public key is what is registered with Binance)"
            )
        _config_error(f"{what} is not a PEM private key (no '-----BEGIN PRIVATE KEY-----' block)")
    if b"OPENSSH PRIVATE KEY-----" in pem:
        _config_error(f"{what} is in OpenSSH format; convert it to PKCS#8 PEM (ssh-keygen -p -m PKCS8 -f <file>)")
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError:
        if password is None:
            _config_error(f"{what} is encrypted: set {password_what}")
        _config_error(f"{password_what} is set but {what} is not encrypted: unset the password")
    except (ValueError, UnsupportedAlgorithm):
        if password is not None:
            _config_error(f"{what} could not be decrypted with {password_what}, or is not a valid PEM private key")
        _config_error(f"{what} is not a valid PEM private key")
    if isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "unknown"
    _config_error(f"{what} is not an Ed25519 or RSA key ({kind}); Binance takes Ed25519 (recommended) or RSA keys")


def _load_public_key(pem: bytes | str) -> _PublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"not a PEM public key: {type(exc).__name__}") from None
    if isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return key
    raise InvalidInput(f"a {type(key).__name__} public key; Binance signatures are Ed25519 or RSA")


def _password_bytes(password: str | bytes | None) -> bytes | None:
    if password is None or password == "" or password == b"":
        return None
    return password.encode("utf-8") if isinstance(password, str) else password


# --------------------------------------------------------------------------------------------------- credentials


class Credentials:
    """An API key and the secret that signs its requests: an HMAC secret, or an Ed25519 (or RSA) private key.

    Build one with :meth:`from_env`, :meth:`from_config`, :meth:`from_hmac`, :meth:`from_private_key` or
    :meth:`from_private_key_file`. It is immutable, masks itself in ``repr``/``str``, and refuses to be pickled or
    copied into another process (see the module docstring: actors get a :class:`CredentialsRef`).
    """

    __slots__ = ("_api_key", "_kind", "_secret", "_key")

    _api_key: str
    _kind: KeyKind
    _secret: bytes | None
    _key: _PrivateKey | None

    def __init__(self) -> None:
        raise TypeError("build Credentials with from_env(), from_config(), from_hmac() or from_private_key()")

    @classmethod
    def _make(cls, api_key: str, kind: KeyKind, secret: bytes | None, key: _PrivateKey | None) -> Credentials:
        self = object.__new__(cls)
        object.__setattr__(self, "_api_key", api_key)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_key", key)
        return self

    # ---------------------------------------------------------------------------------------------- constructors

    @classmethod
    def from_hmac(
        cls, api_key: str, secret: str, *, api_key_what: str = "api_key", secret_what: str = "api_secret"
    ) -> Credentials:
        """An API key with its HMAC secret key (the ``secretKey`` Binance shows once)."""
        key = _clean_token(api_key, api_key_what)
        return cls._make(key, "HMAC", _clean_token(secret, secret_what).encode("ascii"), None)

    @classmethod
    def from_private_key(
        cls,
        api_key: str,
        pem: bytes | str,
        password: str | bytes | None = None,
        *,
        api_key_what: str = "api_key",
        key_what: str = "private key",
        password_what: str = "private_key_password",
    ) -> Credentials:
        """An API key with its Ed25519 (or RSA) private key, as PEM text (PKCS#8, optionally encrypted)."""
        key_text = _clean_token(api_key, api_key_what)
        data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        key = _load_private_key(data, _password_bytes(password), key_what, password_what)
        kind: KeyKind = "ED25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "RSA"
        return cls._make(key_text, kind, None, key)

    @classmethod
    def from_private_key_file(
        cls,
        api_key: str,
        path: str | os.PathLike[str],
        password: str | bytes | None = None,
        *,
        api_key_what: str = "api_key",
        path_what: str = "private_key_file",
        password_what: str = "private_key_password",
    ) -> Credentials:
        """An API key with the private key in the PEM file at ``path``.

        A path that names no file is never repeated: the value of ``BINANCE_PRIVATE_KEY_FILE`` may be the key itself
        (or a secret) put there by mistake, in any shape, so the error names the setting and says no such file
        exists. A path where a file is is named (it is surely a path)."""
        key_text = _clean_token(api_key, api_key_what)
        try:
            pem = Path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the value
            _config_error(
                f"{path_what} names a file that does not exist (its value is not shown: it may be a key or a secret "
                "put there by mistake); set it to the path of the PEM private key file"
            )
        except OSError as exc:
            what = shown_path(path, path_what)
            _config_error(f"{what}: cannot read it ({exc.strerror or type(exc).__name__})")
        what = shown_path(path, path_what)
        return cls.from_private_key(
            key_text, pem, password, api_key_what=api_key_what, key_what=what, password_what=password_what
        )

    @classmethod
    def from_config(
        cls,
        *,
        api_key: str | None,
        api_secret: str | None = None,
        private_key_file: str | os.PathLike[str] | None = None,
        private_key_password: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> Credentials:
        """From config values: ``api_key`` plus either ``api_secret`` (HMAC) or ``private_key_file`` (an Ed25519 or
        RSA PEM, optionally encrypted with ``private_key_password``). Empty values count as not given. ``names`` maps
        these four to the names an error should use (the environment variables, for :meth:`from_env`)."""
        name = {
            "api_key": "api_key",
            "api_secret": "api_secret",
            "private_key_file": "private_key_file",
            "private_key_password": "private_key_password",
            **(names or {}),
        }
        if not api_key:
            _config_error(
                f"{name['api_key']} is not set: trading on Binance needs an API key (with {name['api_secret']} "
                f"or {name['private_key_file']})"
            )
        has_secret = bool(api_secret)
        has_file = bool(private_key_file)
        if has_secret and has_file:
            _config_error(
                f"both {name['api_secret']} and {name['private_key_file']} are set: give one (an HMAC secret or an "
                "Ed25519 private key), not both"
            )
        if not has_secret and not has_file:
            _config_error(
                f"{name['api_key']} is set but neither {name['api_secret']} (an HMAC secret) nor "
                f"{name['private_key_file']} (an Ed25519 private key, PEM) is"
            )
        if api_secret:
            if private_key_password:
                _config_error(
                    f"{name['private_key_password']} is set but {name['private_key_file']} is not: the password is "
                    "for an encrypted private key file"
                )
            return cls.from_hmac(api_key, api_secret, api_key_what=name["api_key"], secret_what=name["api_secret"])
        assert private_key_file
        return cls.from_private_key_file(
            api_key,
            private_key_file,
            private_key_password,
            api_key_what=name["api_key"],
            path_what=name["private_key_file"],
            password_what=name["private_key_password"],
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, ref: CredentialsRef | None = None) -> Credentials:
        """From the environment (``os.environ`` unless given): ``BINANCE_API_KEY`` with ``BINANCE_API_SECRET`` (HMAC)
        or ``BINANCE_PRIVATE_KEY_FILE`` (Ed25519 PEM path; ``BINANCE_PRIVATE_KEY_PASSWORD`` if it is encrypted).
        ``ref`` names other variables (or a fixed key file path). Errors name the variable, never its value."""
        env = os.environ if environ is None else environ
        ref = ref or CredentialsRef()
        # the values may come from a credentials file the log filters, set up from the environment, never saw
        register_secrets(env.get(ref.api_key_env), env.get(ref.api_secret_env), env.get(ref.private_key_password_env))
        key_file: str | None = ref.private_key_file or env.get(ref.private_key_file_env) or None
        return cls.from_config(
            api_key=env.get(ref.api_key_env),
            api_secret=env.get(ref.api_secret_env),
            private_key_file=key_file,
            private_key_password=env.get(ref.private_key_password_env),
            names={
                "api_key": ref.api_key_env,
                "api_secret": ref.api_secret_env,
                "private_key_file": "private_key_file" if ref.private_key_file else ref.private_key_file_env,
                "private_key_password": ref.private_key_password_env,
            },
        )

    @classmethod
    def from_secret_dict(cls, data: Mapping[str, str]) -> Credentials:
        """The inverse of :meth:`to_secret_dict`."""
        kind = data.get("kind")
        if kind == "HMAC":
            return cls.from_hmac(data.get("api_key", ""), data.get("api_secret", ""))
        if kind in ("ED25519", "RSA"):
            return cls.from_private_key(data.get("api_key", ""), data.get("private_key_pem", ""))
        raise ConfigError(f"secret dict: 'kind' must be HMAC, ED25519 or RSA, got {kind!r}")

    # ------------------------------------------------------------------------------------------------- the secret

    def to_secret_dict(self) -> dict[str, str]:
        """The credentials as plain text, **secret included**: an explicit opt-in for a caller that must carry them to
        another process over a channel it trusts (``{"kind", "api_key", "api_secret"}`` for HMAC, ``{"kind",
        "api_key", "private_key_pem"}`` with an *unencrypted* PKCS#8 PEM otherwise). Never log or journal it."""
        if self._kind == "HMAC":
            assert self._secret is not None
            return {"kind": "HMAC", "api_key": self._api_key, "api_secret": self._secret.decode("ascii")}
        assert self._key is not None
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"kind": self._kind, "api_key": self._api_key, "private_key_pem": pem.decode("ascii")}

    # ---------------------------------------------------------------------------------------------------- public

    @property
    def api_key(self) -> str:
        """The API key, for the ``X-MBX-APIKEY`` header and the WebSocket API's ``apiKey`` param."""
        return self._api_key

    @property
    def kind(self) -> KeyKind:
        return self._kind

    @property
    def masked_api_key(self) -> str:
        return _mask(self._api_key)

    def headers(self) -> dict[str, str]:
        """The REST header that names the key: ``{"X-MBX-APIKEY": api_key}``."""
        return {"X-MBX-APIKEY": self._api_key}

    def public_key_pem(self) -> str:
        """The public half of a private key (what is registered with Binance, and what :class:`Verifier` takes);
        an HMAC secret has none."""
        if self._key is None:
            raise InvalidInput("an HMAC secret has no public key")
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def verifier(self) -> Verifier:
        """A :class:`Verifier` for this key's signatures (for a local test server standing in for Binance)."""
        if self._kind == "HMAC":
            assert self._secret is not None
            return Verifier._make("HMAC", self._secret, None)
        return Verifier.from_public_key(self.public_key_pem())

    def sign(self, payload: str) -> str:
        """The signature of ``payload``'s UTF-8 bytes: HMAC-SHA256 as lowercase hex, Ed25519 or RSA (PKCS#1 v1.5,
        SHA-256) as base64. Not percent-encoded."""
        data = payload.encode("utf-8")
        if self._kind == "HMAC":
            assert self._secret is not None
            return hmac.new(self._secret, data, hashlib.sha256).hexdigest()
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.sign(data)
        else:
            assert isinstance(key, rsa.RSAPrivateKey)
            raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def signed_params(self, params: Mapping[str, Any], *, timestamp_ms: int, recv_window_ms: int | None = None) -> str:
        """The complete REST query string (or form body): :func:`rest_payload` plus ``&signature=`` and the
        percent-encoded signature. Send it byte for byte as returned."""
        payload = rest_payload(params, timestamp_ms=timestamp_ms, recv_window_ms=recv_window_ms)
        return f"{payload}&signature={_pct(self.sign(payload))}"

    def ws_signed_params(
        self, params: Mapping[str, Any], *, timestamp_ms: int, recv_window_ms: int | None = None
    ) -> dict[str, Any]:
        """A WebSocket API request's ``params``: ``params`` plus ``apiKey``, ``recvWindow`` (when given),
        ``timestamp`` and ``signature``, sorted by name with ``signature`` last (the order does not matter to Binance).
        Decimal values become their text (JSON has no exact decimals); ``None`` values are left out."""
        _refuse_reserved(params, _SIGNED_BY_US | {"apiKey"})
        _check_timing(timestamp_ms, recv_window_ms)
        out: dict[str, Any] = {
            _check_name(k): (_text(k, v) if isinstance(v, Decimal) else v) for k, v in params.items() if v is not None
        }
        for k, v in out.items():
            _text(k, v)  # refuses floats and other values whose text the server would read differently
        out["apiKey"] = self._api_key
        if recv_window_ms is not None:
            out["recvWindow"] = recv_window_ms
        out["timestamp"] = timestamp_ms
        signed = dict(sorted(out.items()))
        signed["signature"] = self.sign(ws_payload(signed))
        return signed

    # ------------------------------------------------------------------------------------------- never leak it

    def __repr__(self) -> str:
        return f"Credentials(kind={self._kind}, api_key={_mask(self._api_key)})"

    __str__ = __repr__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Credentials are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Credentials are immutable")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            "Credentials hold a secret and are never pickled or sent to another process: give the actor a "
            "CredentialsRef (where to read them) and call .load() there, or opt in explicitly with to_secret_dict()"
        )

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(2)

    def __getstate__(self) -> NoReturn:  # a serializer that asks for the state directly gets no secret either
        self.__reduce_ex__(2)

    def __copy__(self) -> Credentials:
        return self  # immutable: a copy is the same object, and no secret goes through copyreg

    def __deepcopy__(self, memo: Any) -> Credentials:
        return self


@dataclass(frozen=True, slots=True)
class CredentialsRef:
    """Where a process finds its Binance credentials: the environment variables' names and, optionally, a fixed
    private key file. It holds no secret, so it pickles (to a Ray actor), logs and journals safely; the receiving
    process calls :meth:`load`.

    >>> CredentialsRef(api_key_env="BINANCE_TESTNET_KEY")
    CredentialsRef(api_key_env='BINANCE_TESTNET_KEY', api_secret_env='BINANCE_API_SECRET', private_key_file=None, private_key_file_env='BINANCE_PRIVATE_KEY_FILE', private_key_password_env='BINANCE_PRIVATE_KEY_PASSWORD')
    """

    api_key_env: str = ENV_API_KEY
    api_secret_env: str = ENV_API_SECRET
    private_key_file: str | None = None  # a path (not a secret); when set, the file variable is not read
    private_key_file_env: str = ENV_PRIVATE_KEY_FILE
    private_key_password_env: str = ENV_PRIVATE_KEY_PASSWORD
    env_file: str | None = None  # a KEY=VALUE file (mode 0600) read over the environment: for processes that do not
    # inherit the driver's environment (Ray actors on another node, a runtime started before the keys were set)

    def load(self, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read the credentials in this process (``os.environ`` unless given; ``env_file``'s lines win)."""
        env = dict(os.environ if environ is None else environ)
        if self.env_file is not None:
            env.update(read_env_file(self.env_file))
        return Credentials.from_env(env, ref=self)


def looks_like_key_content(text: str) -> bool:
    """Whether a value given where a file's path belongs looks like a key or the file's content instead (a PEM, a
    ``KEY=VALUE`` line, a long base64 string, several lines): it must then never be echoed."""
    return (
        "\n" in text
        or "\r" in text
        or "-----BEGIN" in text
        or "=" in text
        or len(text) > 255
        or _KEY_RUN.search(text) is not None
        or _BASE64.fullmatch(text) is not None
    )


def cannot_be_a_path(text: str) -> bool:
    """Whether a value given for a file's path is surely not one: several lines, a PEM, or a ``KEY=VALUE`` line (a
    narrower test than :func:`looks_like_key_content`, which only decides what an error may repeat)."""
    return "\n" in text or "\r" in text or "-----BEGIN" in text or _ENV_LINE.match(text) is not None


def shown_path(path: str | os.PathLike[str], what: str) -> str:
    """``what`` and the path, for an error message; only ``what`` when the value looks like key content."""
    text = os.fsdecode(path)
    if looks_like_key_content(text):
        return f"{what} (its value is not shown: it looks like a key or a file's content, not a path to a file)"
    return f"{what} {text!r}"


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines and ``export`` allowed; values may be quoted). The file must
    not be readable by others (like ssh keys). Errors name the file and the line number, never a value."""
    file = Path(path)
    what = shown_path(path, "credentials file")
    try:
        mode = file.stat().st_mode
        text = file.read_text()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in what was given
        raise ConfigError(f"{what}: {getattr(exc, 'strerror', None) or 'not a readable file'}") from None
    if mode & 0o077:
        raise ConfigError(f"{what} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{what}, line {number}: expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------- verifier


class Verifier:
    """Checks Binance request signatures the way the exchange does: HMAC with the shared secret, Ed25519 or RSA with
    the registered public key. For the local test server. An HMAC verifier holds the secret and masks itself too."""

    __slots__ = ("_kind", "_secret", "_public")

    _kind: KeyKind
    _secret: bytes | None
    _public: _PublicKey | None

    def __init__(self) -> None:
        raise TypeError("build a Verifier with Verifier.from_hmac() or Verifier.from_public_key()")

    @classmethod
    def _make(cls, kind: KeyKind, secret: bytes | None, public: _PublicKey | None) -> Verifier:
        self = object.__new__(cls)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_public", public)
        return self

    @classmethod
    def from_hmac(cls, secret: str) -> Verifier:
        return cls._make("HMAC", _clean_token(secret, "HMAC secret").encode("ascii"), None)

    @classmethod
    def from_public_key(cls, key: str | bytes | ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> Verifier:
        """An Ed25519 or RSA public key: PEM text or bytes, 32 raw Ed25519 bytes, or a ``cryptography`` key."""
        if isinstance(key, bytes) and len(key) == 32 and b"-----" not in key:
            public: _PublicKey = ed25519.Ed25519PublicKey.from_public_bytes(key)
        elif isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
            public = key
        else:
            public = _load_public_key(key)
        return cls._make("ED25519" if isinstance(public, ed25519.Ed25519PublicKey) else "RSA", None, public)

    @property
    def kind(self) -> KeyKind:
        return self._kind

    def verify(self, payload: str, signature: str) -> bool:
        """Whether ``signature`` (hex for HMAC, case-insensitive; base64 otherwise, not percent-encoded) signs
        ``payload``'s UTF-8 bytes. Never raises on a malformed signature: it is simply not valid."""
        if not isinstance(signature, str) or not signature:
            return False
        data = payload.encode("utf-8")
        if self._kind == "HMAC":
            assert self._secret is not None
            expected = hmac.new(self._secret, data, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            if isinstance(self._public, ed25519.Ed25519PublicKey):
                self._public.verify(raw, data)
            else:
                assert isinstance(self._public, rsa.RSAPublicKey)
                self._public.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def verify_query(self, query: str, body: str = "") -> bool:
        """A REST request as received: the raw query string and form body (see :func:`split_signature`)."""
        payload, signature = split_signature(query, body)
        return signature is not None and self.verify(payload, signature)

    def verify_ws_params(self, params: Mapping[str, Any]) -> bool:
        """A WebSocket API request's ``params`` as received (decoded JSON)."""
        signature = params.get("signature")
        if not isinstance(signature, str):
            return False
        try:
            payload = ws_payload(params)
        except InvalidInput:
            return False
        return self.verify(payload, signature)

    def __repr__(self) -> str:
        return f"Verifier(kind={self._kind})"

    __str__ = __repr__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Verifier is immutable")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a Verifier may hold an HMAC secret and is not pickled; build it in the process that uses it")

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(2)


# ---------------------------------------------------------------------------------------------- module helpers


def signed_params(
    credentials: Credentials, params: Mapping[str, Any], *, timestamp_ms: int, recv_window_ms: int | None = None
) -> str:
    """:meth:`Credentials.signed_params` as a function."""
    return credentials.signed_params(params, timestamp_ms=timestamp_ms, recv_window_ms=recv_window_ms)


def ws_signed_params(
    credentials: Credentials, params: Mapping[str, Any], *, timestamp_ms: int, recv_window_ms: int | None = None
) -> dict[str, Any]:
    """:meth:`Credentials.ws_signed_params` as a function."""
    return credentials.ws_signed_params(params, timestamp_ms=timestamp_ms, recv_window_ms=recv_window_ms)


def verify_signature(
    payload: str,
    signature: str,
    *,
    secret: str | None = None,
    public_key: str | bytes | ed25519.Ed25519PublicKey | rsa.RSAPublicKey | None = None,
) -> bool:
    """Whether ``signature`` signs ``payload``: with the HMAC ``secret``, or with the Ed25519 / RSA ``public_key``
    (exactly one of them). A one-off :class:`Verifier`; a server checking many requests keeps one instead."""
    if (secret is None) == (public_key is None):
        raise InvalidInput("verify_signature: give either secret (HMAC) or public_key (Ed25519 or RSA)")
    verifier = Verifier.from_hmac(secret) if secret is not None else Verifier.from_public_key(public_key)  # type: ignore[arg-type]
    return verifier.verify(payload, signature)

"""Binance request signing: the docs' worked examples byte for byte, RFC 8032 for Ed25519, and secrets that never leak.

The HMAC examples (REST and WebSocket API) publish their secret, so their signatures are checked exactly. The docs do
not publish the Ed25519 (or RSA) private key behind their examples (``test-ed25519-prv.pem``), and the REST page's
"Ed25519" signatures are 256 bytes long (RSA-sized: copied from the RSA section), so Ed25519 is checked against RFC 8032
section 7.1 TEST 1 and TEST 2 (deterministic signatures from published seeds) through the real PEM-file path, and the
docs' Ed25519 payloads are checked as text and verified under the RFC key.
"""

from __future__ import annotations

import base64
import copy
import json
import pickle
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from veloz_actors import ConfigError, InvalidInput
from veloz_actors.venues.binance.auth import (
    Credentials,
    CredentialsRef,
    Verifier,
    query_string,
    rest_payload,
    signed_params,
    split_signature,
    timestamp_ok,
    verify_signature,
    ws_payload,
    ws_signed_params,
)

# rest-api.md / web-socket-api.md "SIGNED request example (HMAC)": published for illustration
DOC_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
UNICODE_SYMBOL = "１２３４５６"

# RFC 8032 section 7.1: (seed, public key, message, signature)
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        b"",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        b"\x72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]
ED_API_KEY = "4yNzx3yWC5bS6YTwEkSRaC0nRmSQIIStAUOh1b6kqaBrTLIhjCpI5lJH8q8R8WNO"


def _hmac() -> Credentials:
    return Credentials.from_hmac(DOC_API_KEY, DOC_SECRET)


def _pem(key: object, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)  # type: ignore[attr-defined]


def _rfc_key_file(tmp_path: Path, index: int, password: bytes | None = None) -> Path:
    seed = bytes.fromhex(RFC8032[index][0])
    path = tmp_path / f"rfc8032-{index + 1}.pem"
    path.write_bytes(_pem(ed25519.Ed25519PrivateKey.from_private_bytes(seed), password))
    return path


# ------------------------------------------------------------------------------------------ REST, HMAC, the docs


def test_rest_hmac_ascii_example_byte_for_byte() -> None:
    query = _hmac().signed_params(
        {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1", "price": "0.1"},
        timestamp_ms=1499827319559,
        recv_window_ms=5000,
    )
    assert query == (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )


def test_rest_hmac_non_ascii_example_signs_the_percent_encoded_payload() -> None:
    params = {"symbol": UNICODE_SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": 1}
    params["price"] = Decimal("0.1")  # type: ignore[assignment]
    payload = rest_payload(params, timestamp_ms=1499827319559, recv_window_ms=5000)
    assert payload == (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1"
        "&price=0.1&recvWindow=5000&timestamp=1499827319559"
    )
    assert _hmac().sign(payload) == "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
    query = signed_params(_hmac(), params, timestamp_ms=1499827319559, recv_window_ms=5000)
    assert query == payload + "&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"


def test_query_string_percent_encodes_everything_but_unreserved_characters_and_keeps_order() -> None:
    params = {"z": "a b+c", "a": "x:y/z~-_.", "flag": True, "off": False, "n": 7, "skip": None, "d": Decimal("1E-8")}
    assert query_string(params) == "z=a%20b%2Bc&a=x%3Ay%2Fz~-_.&flag=true&off=false&n=7&d=0.00000001"


def test_rest_payload_without_recv_window_and_without_params() -> None:
    assert rest_payload({}, timestamp_ms=5, recv_window_ms=None) == "timestamp=5"
    assert rest_payload({"symbol": "BTCUSDT"}, timestamp_ms=5, recv_window_ms=60000) == (
        "symbol=BTCUSDT&recvWindow=60000&timestamp=5"
    )


@pytest.mark.parametrize(
    ("params", "kwargs", "match"),
    [
        ({"price": 0.1}, {}, "float"),
        ({"price": ""}, {}, "empty"),
        ({"price": [1]}, {}, "list"),
        ({"price": Decimal("NaN")}, {}, "finite"),
        ({"timestamp": 1}, {}, "added by signing"),
        ({"signature": "x"}, {}, "added by signing"),
        ({"recvWindow": 1}, {}, "added by signing"),
        ({}, {"recv_window_ms": 60001}, "recv_window_ms"),
        ({}, {"recv_window_ms": 0}, "recv_window_ms"),
        ({}, {"recv_window_ms": 5000.5}, "recv_window_ms"),
        ({}, {"timestamp_ms": 0}, "timestamp_ms"),
        ({}, {"timestamp_ms": True}, "timestamp_ms"),
    ],
)
def test_rest_signing_refuses_inexact_or_reserved_input(params: dict, kwargs: dict, match: str) -> None:
    args = {"timestamp_ms": 1, "recv_window_ms": None, **kwargs}
    with pytest.raises(InvalidInput, match=match):
        _hmac().signed_params(params, **args)


# ------------------------------------------------------------------------------------- WebSocket API, the docs


def _ws_example(symbol: str, side: str, qty: str, price: str, recv_window: int) -> dict[str, object]:
    params = {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": qty, "price": price}
    return _hmac().ws_signed_params(params, timestamp_ms=1645423376532, recv_window_ms=recv_window)


def test_ws_hmac_ascii_example_byte_for_byte() -> None:
    signed = _ws_example("BTCUSDT", "SELL", "0.01000000", "52000.00", 100)
    assert ws_payload(signed) == (
        f"apiKey={DOC_API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT"
        "&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    assert signed == {
        "apiKey": DOC_API_KEY,
        "price": "52000.00",
        "quantity": "0.01000000",
        "recvWindow": 100,
        "side": "SELL",
        "symbol": "BTCUSDT",
        "timeInForce": "GTC",
        "timestamp": 1645423376532,
        "type": "LIMIT",
        "signature": "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
    }
    assert list(signed)[-1] == "signature"


def test_ws_hmac_non_ascii_example_signs_utf8_without_percent_encoding() -> None:
    signed = _ws_example(UNICODE_SYMBOL, "BUY", "1.00000000", "0.10000000", 5000)
    assert f"symbol={UNICODE_SYMBOL}&" in ws_payload(signed)
    assert signed["signature"] == "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"


@pytest.mark.parametrize(
    ("params", "timestamp", "signature"),
    [
        (  # order.place
            {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "23416.10000000",
             "quantity": "0.00847000"},
            1660801715431,
            "15af09e41c36f3cc61378c2fbe2c33719a03dd5eba8d0f9206fbda44de717c88",
        ),
        (  # order.cancel
            {"symbol": "BTCUSDT", "origClientOrderId": "4d96324ff9d44481926157"},
            1660801715830,
            "33d5b721f278ae17a52f004a82a6f68a70c68e7dd6776ed0be77a455ab855282",
        ),
        (  # order.status
            {"symbol": "BTCUSDT", "orderId": 12569099453},
            1660801720951,
            "2c3aab5a078ee4ea465ecd95523b77289f61476c2f238ec10c55ea6cb11a6f35",
        ),
    ],
    ids=["order.place", "order.cancel", "order.status"],
)  # fmt: skip
def test_ws_api_method_examples_reproduce_the_published_signatures(
    params: dict[str, object], timestamp: int, signature: str
) -> None:
    signed = ws_signed_params(_hmac(), params, timestamp_ms=timestamp)
    assert signed["signature"] == signature
    assert "recvWindow" not in signed


def test_ws_signing_refuses_a_given_api_key_or_signature_and_keeps_decimals_exact() -> None:
    with pytest.raises(InvalidInput, match="apiKey"):
        _hmac().ws_signed_params({"apiKey": "x"}, timestamp_ms=1)
    with pytest.raises(InvalidInput, match="float"):
        _hmac().ws_signed_params({"price": 1.5}, timestamp_ms=1)
    signed = _hmac().ws_signed_params({"price": Decimal("0.10"), "skip": None, "test": True}, timestamp_ms=1)
    assert signed["price"] == "0.10" and "skip" not in signed and "test=true" in ws_payload(signed)


def test_ws_signature_verifies_after_a_json_round_trip() -> None:
    signed = _ws_example(UNICODE_SYMBOL, "BUY", "1.00000000", "0.10000000", 5000)
    received = json.loads(orjson.dumps({"params": signed}))["params"]
    verifier = Verifier.from_hmac(DOC_SECRET)
    assert verifier.verify_ws_params(received)
    assert not verifier.verify_ws_params({**received, "price": "0.10000001"})
    assert not verifier.verify_ws_params({k: v for k, v in received.items() if k != "signature"})


# ----------------------------------------------------------------------------------------------- Ed25519, RSA


@pytest.mark.parametrize("index", [0, 1], ids=["rfc8032-test-1", "rfc8032-test-2"])
def test_ed25519_from_a_pem_file_signs_rfc8032_vectors_byte_for_byte(tmp_path: Path, index: int) -> None:
    _, public, message, signature = RFC8032[index]
    path = _rfc_key_file(tmp_path, index)
    creds = Credentials.from_env({"BINANCE_API_KEY": ED_API_KEY, "BINANCE_PRIVATE_KEY_FILE": str(path)})
    assert creds.kind == "ED25519"
    sig = creds.sign(message.decode("ascii"))
    assert sig == base64.b64encode(bytes.fromhex(signature)).decode("ascii")
    assert Verifier.from_public_key(bytes.fromhex(public)).verify(message.decode("ascii"), sig)
    assert creds.verifier().verify(message.decode("ascii"), sig)


def test_ed25519_docs_ws_payload_is_built_exactly_and_verifies_under_the_rfc_key(tmp_path: Path) -> None:
    creds = Credentials.from_private_key_file(ED_API_KEY, _rfc_key_file(tmp_path, 0))
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000"}
    params["price"] = "52000.00"
    signed = creds.ws_signed_params(params, timestamp_ms=1645423376532, recv_window_ms=100)
    assert ws_payload(signed) == (
        f"apiKey={ED_API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT"
        "&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    raw = base64.b64decode(signed["signature"])  # type: ignore[arg-type]
    assert len(raw) == 64  # a base64 Ed25519 signature, 88 characters like the docs' ws example
    ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC8032[0][1])).verify(raw, ws_payload(signed).encode())
    assert Verifier.from_public_key(bytes.fromhex(RFC8032[0][1])).verify_ws_params(signed)


def test_ed25519_rest_signature_is_percent_encoded_and_the_server_reads_it_back(tmp_path: Path) -> None:
    creds = Credentials.from_private_key_file(ED_API_KEY, _rfc_key_file(tmp_path, 0))
    query = creds.signed_params({"symbol": UNICODE_SYMBOL, "side": "SELL"}, timestamp_ms=1668481559918)
    payload, _, encoded = query.rpartition("&signature=")
    assert payload == f"symbol={query_string({'s': UNICODE_SYMBOL})[2:]}&side=SELL&timestamp=1668481559918"
    assert "+" not in encoded and "/" not in encoded and "=" not in encoded  # %2B %2F %3D
    verifier = creds.verifier()
    assert verifier.verify_query(query)
    assert not verifier.verify_query(query.replace("side=SELL", "side=BUY"))
    # a signature sent with a bare "+" is a space to the server, as it is to Binance
    sig = creds.sign(payload)
    if "+" in sig:
        assert not verifier.verify_query(f"{payload}&signature={sig}")
    assert not verifier.verify_query(payload)  # unsigned


def test_split_signature_takes_it_from_the_query_or_the_body() -> None:
    assert split_signature("a=1&signature=ab%2Bc&b=2") == ("a=1&b=2", "ab+c")
    assert split_signature("a=1", "b=2&signature=ff") == ("a=1b=2", "ff")
    assert split_signature("a=1", "") == ("a=1", None)
    query = _hmac().signed_params({"symbol": "BTCUSDT"}, timestamp_ms=1)
    payload, signature = split_signature("", query)
    assert Verifier.from_hmac(DOC_SECRET).verify(payload, signature)  # type: ignore[arg-type]


def test_hmac_verifier_is_case_insensitive_and_never_raises_on_junk() -> None:
    verifier = _hmac().verifier()
    payload = "symbol=LTCBTC&timestamp=1"
    sig = _hmac().sign(payload)
    assert verifier.verify(payload, sig.upper())
    for junk in ("", "zz", "not hex at all", sig[:-1]):
        assert not verifier.verify(payload, junk)
    ed = Verifier.from_public_key(bytes.fromhex(RFC8032[0][1]))
    for junk in ("", "!!!", base64.b64encode(b"short").decode(), sig):
        assert not ed.verify(payload, junk)


def test_rsa_keys_sign_pkcs1v15_sha256_and_verify(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(_pem(key))
    creds = Credentials.from_private_key_file("CAvIjXy3F44yW6Pou5k8Dy1swsYDWJZLeoK2r8G4cFDnE9nosRppc2eKc1T8TRTQ", path)
    assert creds.kind == "RSA"
    query = creds.signed_params({"symbol": "BTCUSDT"}, timestamp_ms=1668481559918, recv_window_ms=5000)
    payload, signature = split_signature(query)
    assert len(base64.b64decode(signature)) == 256  # type: ignore[arg-type]
    assert Verifier.from_public_key(creds.public_key_pem()).verify_query(query)
    assert creds.verifier().kind == "RSA"


def test_timestamp_rule_of_timing_security() -> None:
    assert timestamp_ok(10_000, 5000, 10_000)
    assert timestamp_ok(10_999, None, 10_000)  # up to 1 s ahead
    assert not timestamp_ok(11_000, None, 10_000)
    assert timestamp_ok(5_000, None, 10_000)  # default window 5000, inclusive
    assert not timestamp_ok(4_999, None, 10_000)
    assert not timestamp_ok(9_899, 100, 10_000)


# ------------------------------------------------------------------------------------------- configuration


def test_from_env_hmac_and_empty_values_count_as_unset() -> None:
    creds = Credentials.from_env(
        {"BINANCE_API_KEY": f" {DOC_API_KEY}\n", "BINANCE_API_SECRET": DOC_SECRET, "BINANCE_PRIVATE_KEY_FILE": ""}
    )
    assert creds.kind == "HMAC" and creds.api_key == DOC_API_KEY
    assert creds.headers() == {"X-MBX-APIKEY": DOC_API_KEY}


def test_from_env_encrypted_key_with_its_password(tmp_path: Path) -> None:
    path = _rfc_key_file(tmp_path, 1, password=b"correct horse")
    creds = Credentials.from_env(
        {
            "BINANCE_API_KEY": ED_API_KEY,
            "BINANCE_PRIVATE_KEY_FILE": str(path),
            "BINANCE_PRIVATE_KEY_PASSWORD": "correct horse",
        }
    )
    assert creds.sign("r") == base64.b64encode(bytes.fromhex(RFC8032[1][3])).decode()


def _env_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Credentials.from_env(env)
    message = str(info.value)
    for value in env.values():
        if value and "/" not in value:  # paths may be named; values never
            assert value not in message
    return message


def test_from_env_errors_name_what_is_missing_or_wrong_and_never_a_value(tmp_path: Path) -> None:
    secret = "s3cr3tValueThatMustNeverAppear0123456789"
    assert "BINANCE_API_KEY is not set" in _env_error({"BINANCE_API_SECRET": secret})
    message = _env_error({"BINANCE_API_KEY": "k" * 64})
    assert "BINANCE_API_SECRET" in message and "BINANCE_PRIVATE_KEY_FILE" in message
    key_file = _rfc_key_file(tmp_path, 0)
    assert "both" in _env_error(
        {"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": secret, "BINANCE_PRIVATE_KEY_FILE": str(key_file)}
    )
    assert "BINANCE_PRIVATE_KEY_PASSWORD is set" in _env_error(
        {"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": secret, "BINANCE_PRIVATE_KEY_PASSWORD": "hunter2hunter2"}
    )
    assert "printable ASCII" in _env_error({"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": f"{secret} x"})
    assert "BINANCE_API_KEY must be printable" in _env_error(
        {"BINANCE_API_KEY": "ab\r\nX-Evil: 1", "BINANCE_API_SECRET": secret}
    )


@pytest.mark.parametrize(
    ("content", "password", "match"),
    [
        (None, None, "names a file that does not exist"),
        (b"not a key", None, "not a PEM private key"),
        (b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", None, "OpenSSH format"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", None, "not a valid PEM private key"),
        ("ec", None, r"not an Ed25519 or RSA key"),
        ("public", None, "holds a public key"),
        ("encrypted", None, "is encrypted: set BINANCE_PRIVATE_KEY_PASSWORD"),
        ("encrypted", "wrong-password-1234", "could not be decrypted with BINANCE_PRIVATE_KEY_PASSWORD"),
        ("plain", "needless-password-1234", "is not encrypted"),
    ],
)  # fmt: skip
def test_bad_private_key_files_are_named_clearly(
    tmp_path: Path, content: bytes | str | None, password: str | None, match: str
) -> None:
    path = tmp_path / "key.pem"
    key = ed25519.Ed25519PrivateKey.generate()
    if content == "ec":
        content = _pem(ec.generate_private_key(ec.SECP256R1()))
    elif content == "public":
        content = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif content == "encrypted":
        content = _pem(key, b"the-real-password")
    elif content == "plain":
        content = _pem(key)
    if content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    env = {"BINANCE_API_KEY": ED_API_KEY, "BINANCE_PRIVATE_KEY_FILE": str(path)}
    if password:
        env["BINANCE_PRIVATE_KEY_PASSWORD"] = password
    message = _env_error(env)
    assert re.search(match, message)
    assert "BINANCE_PRIVATE_KEY_FILE" in message
    assert (str(path) in message) is (content is not None)  # a path naming no file is never repeated (it may be a key)


def test_from_config_names_config_keys() -> None:
    with pytest.raises(ConfigError, match="api_key is not set"):
        Credentials.from_config(api_key=None, api_secret=DOC_SECRET)
    with pytest.raises(ConfigError, match="neither api_secret"):
        Credentials.from_config(api_key=DOC_API_KEY)
    assert Credentials.from_config(api_key=DOC_API_KEY, api_secret=DOC_SECRET).kind == "HMAC"


# ------------------------------------------------------------------------------------------- secrets never leak


def test_repr_and_str_mask_everything_but_four_characters_of_the_api_key(tmp_path: Path) -> None:
    for creds in (_hmac(), Credentials.from_private_key_file(ED_API_KEY, _rfc_key_file(tmp_path, 0))):
        for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr([creds]), repr({"c": creds})):
            assert creds.api_key not in text and DOC_SECRET not in text and "PRIVATE" not in text
            assert f"api_key={creds.api_key[:4]}…(masked)" in text
    assert repr(_hmac()) == "Credentials(kind=HMAC, api_key=vmPU…(masked))"
    assert repr(Verifier.from_hmac(DOC_SECRET)) == "Verifier(kind=HMAC)"


def test_credentials_refuse_pickling_serialisation_and_mutation() -> None:
    import ray.cloudpickle as cloudpickle

    creds = _hmac()
    for dump in (pickle.dumps, cloudpickle.dumps, lambda c: pickle.dumps(c, protocol=0), lambda c: c.__getstate__()):
        with pytest.raises(TypeError, match="CredentialsRef"):
            dump(creds)  # __getstate__ too: a serializer asking for the state directly (before: the secret)
    for serialise in (orjson.dumps, json.dumps):
        with pytest.raises(TypeError):
            serialise(creds)
    with pytest.raises(TypeError):
        pickle.dumps(Verifier.from_hmac(DOC_SECRET))
    assert copy.copy(creds) is creds and copy.deepcopy(creds) is creds
    with pytest.raises(AttributeError):
        creds._secret = b"other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        creds.__dict__  # noqa: B018 - slots only: no instance dict to dump
    with pytest.raises(TypeError):
        Credentials()


def test_no_error_carries_the_secret_or_a_signature() -> None:
    creds = _hmac()
    sig = creds.sign("a=1")
    for bad in ({"price": 0.5}, {"signature": sig}, {"x": object()}):
        with pytest.raises(InvalidInput) as info:
            creds.signed_params(bad, timestamp_ms=1)
        assert DOC_SECRET not in str(info.value) and sig not in str(info.value)


def test_a_credentials_ref_pickles_without_a_secret_and_loads_in_the_receiving_process(tmp_path: Path) -> None:
    path = _rfc_key_file(tmp_path, 0)
    ref = CredentialsRef(api_key_env="MY_KEY", private_key_file=str(path))
    raw = pickle.dumps(ref)
    assert DOC_SECRET.encode() not in raw and b"BEGIN" not in raw and path.read_bytes()[40:80] not in raw
    creds = pickle.loads(raw).load({"MY_KEY": ED_API_KEY})
    assert creds.sign("") == base64.b64encode(bytes.fromhex(RFC8032[0][3])).decode()
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        ref.load({})
    hmac_ref = CredentialsRef(api_key_env="K", api_secret_env="S")
    assert hmac_ref.load({"K": DOC_API_KEY, "S": DOC_SECRET}).sign("a") == _hmac().sign("a")


def test_to_secret_dict_is_an_explicit_round_trip(tmp_path: Path) -> None:
    for creds in (
        _hmac(),
        Credentials.from_private_key_file(ED_API_KEY, _rfc_key_file(tmp_path, 1, b"pw-123456"), "pw-123456"),
    ):
        data = creds.to_secret_dict()
        back = Credentials.from_secret_dict(data)
        assert back.kind == creds.kind and back.api_key == creds.api_key and back.sign("x=1") == creds.sign("x=1")
    assert set(_hmac().to_secret_dict()) == {"kind", "api_key", "api_secret"}
    with pytest.raises(ConfigError, match="kind"):
        Credentials.from_secret_dict({"kind": "DSA"})


def test_verify_signature_takes_a_secret_or_a_public_key() -> None:
    payload = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    )
    assert verify_signature(
        payload, "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71", secret=DOC_SECRET
    )
    assert not verify_signature(payload + "0", "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
                                secret=DOC_SECRET)  # fmt: skip
    rfc_sig = base64.b64encode(bytes.fromhex(RFC8032[1][3])).decode()
    assert verify_signature("r", rfc_sig, public_key=bytes.fromhex(RFC8032[1][1]))
    with pytest.raises(InvalidInput, match="either"):
        verify_signature("a", "b")
    with pytest.raises(InvalidInput, match="either"):
        verify_signature("a", "b", secret=DOC_SECRET, public_key=bytes.fromhex(RFC8032[1][1]))


def test_the_signed_balance_request_never_follows_a_redirect(tmp_path: Path) -> None:
    """A 302 from the REST address must not carry the API key header and the signed query to another host (urllib
    follows redirects by default)."""
    import http.server
    import threading

    from veloz_actors.venues.binance.venue import VenueUnavailable, fetch_account_balances

    seen: list[str] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            seen.append(f"{self.path} {self.headers.get('X-MBX-APIKEY')}")
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"serverTime": 1}')

        def log_message(self, *args: Any) -> None:
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/api/v3/time"):
                super().do_GET()
                return
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}{self.path}")
            self.end_headers()

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (server, other)]
    for thread in threads:
        thread.start()
    try:
        with pytest.raises(VenueUnavailable, match=r"^/api/v3/account: HTTP 302"):
            fetch_account_balances(f"http://127.0.0.1:{server.server_port}", _hmac(), timeout=5.0)
    finally:
        for s in (server, other):
            s.shutdown()
            s.server_close()
    assert seen[0].startswith("/api/v3/time") and all("/api/v3/account" not in line for line in seen)

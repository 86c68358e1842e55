"""Contract test: every payload kind the Binance test server sends has Binance's shape.

Each stream payload and each REST answer the server produces (collected over real sockets) is checked against

(a) recorded examples -- the real payloads in ``binance-api/examples-nautilus`` where there is one, and the payload
    examples of the official docs (``web-socket-streams.md``, ``rest-api.md``): the same keys, the same JSON types,
    recursively;
(b) the published specs -- ``openxapi/asyncapi/spot-streams.yaml`` (stream messages) and ``openxapi/openapi/spot.yaml``
    (REST responses), ``$ref`` resolved: every required property present with its type. The REST schemas list no
    ``required``, so there every declared property counts as required, and an undeclared key is an error too.

The few differences between the server (the 2024 captures) and an example or the spec are listed in ``EXEMPT`` with
their reason, by kind and path; nothing else is tolerated. :func:`test_the_checks_catch_a_renamed_key_or_a_wrong_type`
proves the checks bite: renaming any one key, or changing one value's JSON type, of any payload fails the contract.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
import yarl

from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.auth import Credentials

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
API = SHARED / "binance-api"
NAUTILUS = API / "examples-nautilus"
DOCS = API / "official-spot-docs"
BTC = SHARED / "ticks_l2" / "binance_spot_btcusdt_20240808_ws.txt.gz"
ETH = SHARED / "ticks_l2" / "binance_spot_ethusdt_20240808_ws.txt.gz"

STREAMS = {
    "depthUpdate": "btcusdt@depth@100ms",
    "bookTicker": "btcusdt@bookTicker",
    "trade": "btcusdt@trade",
    "aggTrade": "btcusdt@aggTrade",
    "kline": "btcusdt@kline_1s",
    "partialDepth": "btcusdt@depth5@100ms",
}
REST = {
    "ping": "/api/v3/ping",
    "time": "/api/v3/time",
    "exchangeInfo": "/api/v3/exchangeInfo",
    "depth": "/api/v3/depth?symbol=BTCUSDT&limit=20",
    "trades": "/api/v3/trades?symbol=BTCUSDT&limit=20",
    "aggTrades": "/api/v3/aggTrades?symbol=BTCUSDT&limit=20",
    "klines": "/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=20",
    "bookTicker:rest": "/api/v3/ticker/bookTicker?symbol=BTCUSDT",
    "bookTickers": "/api/v3/ticker/bookTicker",
    "restError": "/api/v3/depth?symbol=NOPEUSDT",
}

# Differences tolerated, each with its reason: kind -> {path: keys that may be missing from the server's payload}.
# Paths: "" is the payload, "k" a nested object, "symbols[]" the items of an array.
_NEWER_EXCHANGE_INFO = {"otoAllowed", "allowTrailingStop", "cancelReplaceAllowed", "permissionSets"}
_NEWER_EXCHANGE_INFO |= {"defaultSelfTradePreventionMode", "allowedSelfTradePreventionModes"}
EXEMPT_EXAMPLE: dict[str, dict[str, set[str]]] = {
    # Binance removed the buyer/seller order ids from <symbol>@trade on 2024-06-18 (CHANGELOG.md); the nautilus
    # example (2021) still has them, the captures (2024-08) do not.
    "trade": {"": {"b", "a"}},
    # the nautilus spot bookTicker example carries "T"/"E", which neither the spot docs nor the spec have (the
    # futures bookTicker does); the recorded spot capture has none
    "bookTicker": {"": {"T", "E"}},
    # "st" in the nautilus aggTrade example is not in the docs or the spec
    "aggTrade": {"": {"st"}},
}
EXEMPT_SPEC: dict[str, dict[str, set[str]]] = {
    "trade": {"": {"b", "a"}},  # removed 2024-06-18, see above; the generated spec predates it
    # exchangeInfo is the recorded 2021 payload: the symbol fields added to Binance since are absent, "sors" is
    # optional ("Present only when SOR is available"); a symbol filter's schema is the union of every filter type
    "exchangeInfo": {"": {"sors"}, "symbols[]": _NEWER_EXCHANGE_INFO, "symbols[].filters[]": {"*"}},
}
# keys of the server's payload that an example does not have (by kind and path), each with its reason
EXTRA_EXAMPLE: dict[str, dict[str, set[str]]] = {}
# keys whose value may be null where the spec declares a type (by kind and path), each with its reason
NULL_OK: dict[str, dict[str, set[str]]] = {}
# keys of the server's payload that the spec does not declare (the REST schemas are closed)
UNDECLARED_OK: dict[str, dict[str, set[str]]] = {
    # MIN_NOTIONAL's "minNotional" (real, recorded) is missing from the generated SpotSymbolFilter union
    "exchangeInfo": {"symbols[].filters[]": {"minNotional"}},
}


# ------------------------------------------------------------------------------------------------- the payloads


@pytest.fixture(scope="module")
def payloads() -> dict[str, Any]:
    """One payload of every kind the server sends, parsed, as a client received it."""
    with BinanceTestServer([BTC, ETH], speed=0, paused=True) as server:
        return asyncio.run(_collect(server))


async def _collect(server: BinanceTestServer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        raw = {kind: await session.ws_connect(f"{server.stream_url}/ws/{name}") for kind, name in STREAMS.items()}
        combined = await session.ws_connect(f"{server.stream_url}/stream?streams=" + "/".join(STREAMS.values()))
        control = await session.ws_connect(f"{server.stream_url}/ws")
        assert await asyncio.to_thread(server.wait_connections, len(raw) + 2)
        assert await asyncio.to_thread(server.publish, 4000) == 4000

        for kind, ws in raw.items():
            frames = [orjson.loads(f) for f in await _quiet(ws)]
            assert frames, kind
            out[kind] = frames[0]
            if kind == "kline":
                out["klineClosed"] = next(f for f in frames if f["k"]["x"])
        envelopes = [orjson.loads(f) for f in await _quiet(combined)]
        for kind, name in STREAMS.items():
            out[f"combined:{kind}"] = next(e for e in envelopes if e["stream"] == name)

        async def call(message: dict[str, Any]) -> Any:
            await control.send_str(json.dumps(message))
            return orjson.loads(await control.receive_str(timeout=5))

        out["subscribeResponse"] = await call({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
        out["listSubscriptionsResponse"] = await call({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        out["getPropertyResponse"] = await call({"method": "GET_PROPERTY", "params": ["combined"], "id": 2})
        out["streamError"] = await call({"method": "SUBSCRIBED", "params": [], "id": 4})

        for kind, path in REST.items():
            async with session.get(server.rest_url + path) as response:
                out[kind] = await response.json()

        assert await asyncio.to_thread(server.faults.server_shutdown) == len(raw) + 2
        out["serverShutdown"] = orjson.loads((await _quiet(raw["trade"]))[0])
        out["combined:serverShutdown"] = orjson.loads((await _quiet(combined))[0])
    return out


async def _quiet(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.1) -> list[str]:
    frames: list[str] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return frames
        if msg.type is aiohttp.WSMsgType.TEXT:
            frames.append(msg.data)
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return frames


# ---------------------------------------------------------------------------------------------- (a) examples


def _nautilus(name: str) -> Any:
    return json.loads((NAUTILUS / name).read_text())


@cache
def _doc_blocks(doc: str, heading: str, lang: str = "javascript") -> list[Any]:
    """The JSON code blocks (```` ```lang ````) of one section of an official doc, ``// comments`` stripped."""
    text = (DOCS / doc).read_text()
    start = text.index(heading + "\n")
    level = heading.split(" ")[0]
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start + len(heading) + 1)
    section = text[start : end.start() if end else len(text)]
    blocks = []
    for block in re.findall(rf"```{lang}\n(.*?)```", section, re.S):
        lines = []
        for line in block.splitlines():
            cut = line.find("//")
            while cut >= 0 and line[:cut].count('"') % 2:  # a "//" inside a string stays
                cut = line.find("//", cut + 2)
            lines.append(line if cut < 0 else line[:cut])
        blocks.append(json.loads("\n".join(lines)))
    return blocks


def _streams_doc(heading: str, n: int = 0) -> Callable[[], Any]:
    return lambda: _doc_blocks("web-socket-streams.md", heading)[n]


def _rest_doc(heading: str, n: int = 0) -> Callable[[], Any]:
    return lambda: _doc_blocks("rest-api.md", heading)[n]


# kind -> the recorded examples it must match (same keys, same JSON types)
EXAMPLES: dict[str, list[Callable[[], Any]]] = {
    "depthUpdate": [_streams_doc("## Diff. Depth Stream")],
    "bookTicker": [
        lambda: _nautilus("ws_spot_ticker_book.json")["data"],
        _streams_doc("## Individual Symbol Book Ticker Streams"),
    ],
    "trade": [lambda: _nautilus("ws_spot_trade.json")["data"], _streams_doc("## Trade Streams")],
    "aggTrade": [lambda: _nautilus("ws_spot_agg_trade.json")["data"], _streams_doc("## Aggregate Trade Streams")],
    "kline": [_streams_doc("## Kline/Candlestick Streams for UTC")],
    "klineClosed": [_streams_doc("## Kline/Candlestick Streams for UTC")],
    "partialDepth": [_streams_doc("## Partial Book Depth Streams")],
    "serverShutdown": [_streams_doc("## Server Shutdown", 0)],
    "combined:serverShutdown": [_streams_doc("## Server Shutdown", 1)],
    "subscribeResponse": [_streams_doc("### Subscribe to a stream", 1)],
    "listSubscriptionsResponse": [_streams_doc("### Listing Subscriptions", 1)],
    "getPropertyResponse": [_streams_doc("### Retrieving Properties", 1)],
    "ping": [_rest_doc("### Test connectivity")],
    "time": [_rest_doc("### Check server time")],
    "exchangeInfo": [lambda: _nautilus("http_spot_market_exchange_info.json")],
    "depth": [lambda: _nautilus("http_spot_market_depth.json"), _rest_doc("### Order book")],
    "trades": [lambda: _nautilus("http_spot_market_trades.json"), _rest_doc("### Recent trades list")],
    "aggTrades": [
        lambda: _nautilus("http_spot_market_agg_trades.json"),
        _rest_doc("### Compressed/Aggregate trades list"),
    ],
    "klines": [lambda: _nautilus("http_spot_market_klines.json"), _rest_doc("### Kline/Candlestick data")],
    "bookTicker:rest": [_rest_doc("### Symbol order book ticker", 0)],
    "bookTickers": [_rest_doc("### Symbol order book ticker", 1)],
    "restError": [_rest_doc("## Error Codes")],
}
ENVELOPE_EXAMPLE = lambda: _nautilus("ws_spot_trade.json")  # noqa: E731 (a recorded combined-stream envelope)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def same_shape(
    ours: Any,
    example: Any,
    exempt: dict[str, set[str]],
    path: str = "",
    extra: dict[str, set[str]] | None = None,
) -> list[str]:
    """Where ``ours`` differs from ``example`` in keys (either way) or JSON types, recursively. ``exempt``: keys of
    the example ours may lack, ``extra``: keys ours may have that the example lacks (by path)."""
    if _json_type(ours) != _json_type(example):
        return [f"{path or '<payload>'}: {_json_type(ours)} where the example has {_json_type(example)}"]
    if isinstance(ours, dict):
        allowed = exempt.get(path, set())
        more = (extra or {}).get(path, set())
        prefix = f"{path}." if path else ""
        problems = [f"{prefix}{k}: not in the example" for k in sorted(set(ours) - set(example) - more)]
        problems += [f"{prefix}{k}: missing" for k in sorted(set(example) - set(ours) - allowed) if "*" not in allowed]
        for key in set(ours) & set(example):
            problems += same_shape(ours[key], example[key], exempt, f"{path}.{key}" if path else key, extra)
        return problems
    if isinstance(ours, list) and ours and example:
        item_path = f"{path}[]"
        if all(isinstance(e, dict) and "filterType" in e for e in example):  # exchangeInfo filters: by filter type
            by_type = {e["filterType"]: e for e in example}
            problems = []
            for o in ours:
                kind = o.get("filterType") if isinstance(o, dict) else None
                match = by_type.get(kind) if isinstance(kind, str) else None
                if match is None:
                    problems.append(f"{item_path}: a filter {kind!r} the example does not have")
                else:
                    problems += same_shape(o, match, exempt, item_path, extra)
            return problems
        if len({_json_type(e) for e in example}) > 1:  # a tuple (a klines row): position by position
            if len(ours) != len(example):
                return [f"{path}: {len(ours)} fields where the example has {len(example)}"]
            return [p for o, e in zip(ours, example, strict=True) for p in same_shape(o, e, exempt, item_path, extra)]
        return [p for o in ours for p in same_shape(o, example[0], exempt, item_path, extra)]
    return []


# ------------------------------------------------------------------------------------------------ (b) the specs


@cache
def _spec(name: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(API / "openxapi" / name) as fh:
        return yaml.load(fh, Loader=loader)  # noqa: S506 (a safe loader)


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _stream_schema(message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = _spec("asyncapi/spot-streams.yaml")
    return spec, _resolve(spec, spec["components"]["messages"][message]["payload"])


def _rest_schema(path: str, status: str = "200", method: str = "get") -> tuple[dict[str, Any], dict[str, Any]]:
    spec = _spec("openapi/spot.yaml")
    response = spec["paths"][path][method]["responses"][status]
    return spec, _resolve(spec, response["content"]["application/json"]["schema"])


_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def conforms(
    value: Any,
    schema: dict[str, Any],
    spec: dict[str, Any],
    *,
    closed: bool,
    exempt: dict[str, set[str]],
    undeclared_ok: dict[str, set[str]],
    path: str = "",
) -> list[str]:
    """Where ``value`` breaks ``schema``: a missing required property (with ``closed``, every declared one), a
    property of the wrong type, an undeclared key (with ``closed``), a const/enum mismatch."""
    schema = _resolve(spec, schema)
    where = path or "<payload>"
    if "oneOf" in schema:
        results = [
            conforms(value, alt, spec, closed=closed, exempt=exempt, undeclared_ok=undeclared_ok, path=path)
            for alt in schema["oneOf"]
        ]
        if any(not r for r in results):
            return []
        return [f"{where}: matches none of oneOf: " + " | ".join("; ".join(r) for r in results)]
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind is not None and not _TYPES[kind](value):
        return [f"{where}: expected {kind}, got {_json_type(value)} {value!r:.60}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: expected {schema['const']!r}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    problems: list[str] = []
    if kind == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        required = set(schema.get("required", properties if closed else ()))
        allowed = exempt.get(path, set())
        if "*" not in allowed:
            problems += [f"{where}: missing required {k!r}" for k in sorted(required - set(value) - allowed)]
        if closed and properties:
            extra = set(value) - set(properties) - undeclared_ok.get(path, set())
            problems += [f"{where}: {k!r} is not declared" for k in sorted(extra)]
        for key, sub in properties.items():
            if key in value:
                sub_path = f"{path}.{key}" if path else key
                problems += conforms(
                    value[key], sub, spec, closed=closed, exempt=exempt, undeclared_ok=undeclared_ok, path=sub_path
                )
    elif kind == "array" and isinstance(value, list) and "items" in schema:
        for item in value:
            problems += conforms(
                item, schema["items"], spec, closed=closed, exempt=exempt, undeclared_ok=undeclared_ok, path=f"{path}[]"
            )
    return problems


def _stream(message: str) -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
    return lambda: _stream_schema(message)


def _rest(path: str, status: str = "200") -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
    return lambda: _rest_schema(path, status)


# kind -> its schema: (spec, schema), and whether the schema is closed (the REST ones)
SCHEMAS: dict[str, tuple[Callable[[], tuple[dict[str, Any], dict[str, Any]]], bool]] = {
    "depthUpdate": (_stream("diffDepthEvent"), False),
    "bookTicker": (_stream("bookTickerEvent"), False),
    "trade": (_stream("tradeEvent"), False),
    "aggTrade": (_stream("aggregateTradeEvent"), False),
    "kline": (_stream("klineEvent"), False),
    "klineClosed": (_stream("klineEvent"), False),
    "partialDepth": (_stream("partialDepthEvent"), False),
    "subscribeResponse": (_stream("subscribeResponse"), True),
    "listSubscriptionsResponse": (_stream("listSubscriptionsResponse"), True),
    "getPropertyResponse": (_stream("getPropertyResponse"), True),
    "streamError": (_stream("errorMessage"), True),
    "ping": (_rest("/api/v3/ping"), True),
    "time": (_rest("/api/v3/time"), True),
    "exchangeInfo": (_rest("/api/v3/exchangeInfo"), True),
    "depth": (_rest("/api/v3/depth"), True),
    "trades": (_rest("/api/v3/trades"), True),
    "aggTrades": (_rest("/api/v3/aggTrades"), True),
    "klines": (_rest("/api/v3/klines"), True),
    "bookTicker:rest": (_rest("/api/v3/ticker/bookTicker"), True),
    "bookTickers": (_rest("/api/v3/ticker/bookTicker"), True),
    "restError": (_rest("/api/v3/depth", "4XX"), True),
}
# serverShutdown is not in the generated AsyncAPI spec: it is checked against the official docs' payload only

# every kind: the combined envelope of each stream kind is checked as an envelope, its data as that kind
KINDS = sorted(set(EXAMPLES) | set(SCHEMAS) | {f"combined:{kind}" for kind in STREAMS})


def contract_problems(kind: str, payload: Any) -> list[str]:
    """Every way ``payload`` (as the server sent it for ``kind``) breaks its examples or its spec; empty if none."""
    if kind.startswith("combined:") and kind.split(":", 1)[1] in STREAMS:
        return _envelope_problems(kind.split(":", 1)[1], payload)
    problems: list[str] = []
    for example in EXAMPLES.get(kind, []):
        problems += [
            f"vs example: {p}"
            for p in same_shape(payload, example(), EXEMPT_EXAMPLE.get(kind, {}), extra=EXTRA_EXAMPLE.get(kind))
        ]
    if kind in SCHEMAS:
        load, closed = SCHEMAS[kind]
        spec, schema = load()
        payload = _without_nulls(payload, NULL_OK.get(kind, {}))
        exempt, undeclared = EXEMPT_SPEC.get(kind, {}), UNDECLARED_OK.get(kind, {})
        problems += [
            f"vs spec: {p}"
            for p in conforms(payload, schema, spec, closed=closed, exempt=exempt, undeclared_ok=undeclared)
        ]
    return problems


def _without_nulls(payload: Any, allowed: dict[str, set[str]]) -> Any:
    """``payload`` without the keys whose null the docs write where the spec types a value (``NULL_OK``)."""
    if not allowed:
        return payload
    payload = copy.deepcopy(payload)
    for path, keys in allowed.items():
        target = payload
        for part in path.split(".") if path else ():
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            for key in keys:
                if key in target and target[key] is None:
                    del target[key]
    return payload


def _envelope_problems(inner: str, payload: Any) -> list[str]:
    """A combined-stream envelope: its keys and types against a recorded envelope and the spec's wrapper (the
    stream name is the one subscribed), its data as the ``inner`` kind."""
    if not isinstance(payload, dict):
        return [f"envelope: not an object: {payload!r:.60}"]
    example = ENVELOPE_EXAMPLE()
    problems = [
        f"envelope vs example: {p}" for p in same_shape({**payload, "data": None}, {**example, "data": None}, {})
    ]
    spec, schema = _stream_schema("combinedMarketStreamEvent")
    wrapper = {**schema, "properties": {k: v for k, v in schema["properties"].items() if k != "data"}}
    problems += [
        f"envelope vs spec: {p}" for p in conforms(payload, wrapper, spec, closed=False, exempt={}, undeclared_ok={})
    ]
    if payload.get("stream") != STREAMS[inner]:
        problems.append(f"envelope: stream {payload.get('stream')!r}, subscribed {STREAMS[inner]!r}")
    if "data" in payload:
        problems += [f"data: {p}" for p in contract_problems(inner, payload["data"])]
    return problems


# ------------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", KINDS)
def test_every_payload_kind_matches_the_examples_and_the_specs(payloads: dict[str, Any], kind: str) -> None:
    payload = payloads[kind]
    inner = kind.removeprefix("combined:")
    assert EXAMPLES.get(inner) or inner in SCHEMAS, f"{kind} is checked against nothing"
    problems = contract_problems(kind, payload)
    assert not problems, f"{kind}: " + "\n".join(problems)


def test_every_kind_the_server_sends_is_covered(payloads: dict[str, Any]) -> None:
    assert set(payloads) == set(KINDS), set(payloads) ^ set(KINDS)
    # each payload is the one it claims to be
    kinds = payloads
    assert kinds["depthUpdate"]["e"] == "depthUpdate" and kinds["trade"]["e"] == "trade"
    assert kinds["kline"]["k"]["x"] is False and kinds["klineClosed"]["k"]["x"] is True
    assert kinds["streamError"]["error"]["code"] == 2 and kinds["restError"]["code"] == -1121


def _mutations(payload: Any) -> list[tuple[str, Any]]:
    """Copies of ``payload`` with one key renamed, or one value's JSON type changed, at every place there is one."""
    out: list[tuple[str, Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        if isinstance(node, dict):
            for key in node:
                renamed = copy.deepcopy(payload)
                target = renamed
                for step in path:
                    target = target[step]
                target[key + "_renamed"] = target.pop(key)
                out.append((f"rename {path + [key]}", renamed))
                walk(node[key], path + [key])
        elif isinstance(node, list):
            if node:
                walk(node[0], path + [0])
        else:
            changed = copy.deepcopy(payload)
            target = changed
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = [] if isinstance(node, str | int | float | bool) or node is None else "x"
            out.append((f"retype {path}", changed))

    walk(payload, [])
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_the_checks_catch_a_renamed_key_or_a_wrong_type(payloads: dict[str, Any], kind: str) -> None:
    payload = payloads[kind]
    mutations = _mutations(payload)
    if payload == {}:
        assert not mutations
        # the empty ping answer: anything else is caught
        assert contract_problems(kind, {"pong": True})
        return
    assert mutations
    for what, mutated in mutations:
        assert contract_problems(kind, mutated), f"{kind}: {what} went unnoticed"


# ------------------------------------------------------------------------------------------- the trading side
# The SIGNED REST answers, the WebSocket API envelopes and the user data events of binance_trading.py, against the
# docs' examples (rest-api.md, web-socket-api.md, user-data-stream.md), the recorded nautilus execution reports, and
# the specs: openxapi/openapi/spot.yaml (closed, as above) and openxapi/asyncapi/spot.yaml (the WebSocket API: its
# responses closed too, its events by their required properties and declared types).

TRADING_KEY = "contractKey00000000000000000000000000000000000000000000000000000"
TRADING_SECRET = "contractSecret000000000000000000000000000000000000000000000000"
_LIMIT = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}
_MARKET = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}


@pytest.fixture(scope="module")
def trading_payloads() -> dict[str, Any]:
    """One payload of every kind the trading side sends, parsed, as a client received it."""
    with BinanceTestServer([BTC], speed=0, paused=True) as server:
        server.add_account(TRADING_KEY, hmac_secret=TRADING_SECRET, balances={"USDT": "100000", "BTC": "1"})
        return asyncio.run(_collect_trading(server))


async def _collect_trading(server: BinanceTestServer) -> dict[str, Any]:
    creds = Credentials.from_hmac(TRADING_KEY, TRADING_SECRET)
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:

        async def rest(method: str, path: str, params: dict[str, Any]) -> Any:
            query = creds.signed_params(params, timestamp_ms=server.server_time_ms())
            url = yarl.URL(f"{server.rest_url}{path}?{query}", encoded=True)
            async with session.request(method, url, headers=creds.headers()) as response:
                return await response.json()

        ws = await session.ws_connect(f"{server.stream_url}/ws-api/v3")
        frames: list[dict[str, Any]] = []
        counter = iter(range(1, 1000))

        async def call(method: str, params: dict[str, Any] | None = None, *, signed: bool = True) -> Any:
            request_id = f"contract-{next(counter)}"
            message: dict[str, Any] = {"id": request_id, "method": method}
            if signed:
                message["params"] = creds.ws_signed_params(params or {}, timestamp_ms=server.server_time_ms())
            elif params is not None:
                message["params"] = params
            await ws.send_str(json.dumps(message))
            while True:
                frame = orjson.loads(await ws.receive_str(timeout=5))
                frames.append(frame)
                if frame.get("id") == request_id:
                    return frame

        out["ws:userDataStream.subscribe.signature"] = await call("userDataStream.subscribe.signature")
        out["order:ack"] = await rest("POST", "/api/v3/order", {**_LIMIT, "price": "60000", "newOrderRespType": "ACK"})
        resting = out["order:ack"]["orderId"]
        out["order:result"] = await rest(
            "POST", "/api/v3/order", {**_LIMIT, "price": "60001", "newOrderRespType": "RESULT"}
        )
        out["order:full"] = await rest("POST", "/api/v3/order", _MARKET)
        out["order:expired"] = await rest(
            "POST",
            "/api/v3/order",
            {**_LIMIT, "timeInForce": "IOC", "price": "60000", "newOrderRespType": "RESULT"},
        )
        out["orderTest"] = await rest("POST", "/api/v3/order/test", {**_LIMIT, "price": "60000"})
        out["orderTest:rates"] = await rest(
            "POST", "/api/v3/order/test", {**_LIMIT, "price": "60000", "computeCommissionRates": "true"}
        )
        out["queryOrder"] = await rest("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": resting})
        out["openOrders"] = await rest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
        out["cancelOrder"] = await rest("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": resting})
        out["cancelAll"] = await rest("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
        out["myTrades"] = await rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
        out["account"] = await rest("GET", "/api/v3/account", {})
        out["tradingError"] = await rest("POST", "/api/v3/order", {**_LIMIT, "quantity": "100", "price": "60000"})
        await asyncio.to_thread(server.deposit, TRADING_KEY, "BTC", "0.5")

        for resp in ("ACK", "RESULT", "FULL"):
            params = {**_LIMIT, "price": "60000", "newOrderRespType": resp}
            out[f"ws:order.place:{resp.lower()}"] = await call("order.place", params)
        placed = out["ws:order.place:ack"]["result"]["orderId"]
        out["ws:order.test"] = await call("order.test", {**_LIMIT, "price": "60000"})
        out["ws:order.status"] = await call("order.status", {"symbol": "BTCUSDT", "orderId": placed})
        out["ws:openOrders.status"] = await call("openOrders.status", {"symbol": "BTCUSDT"})
        out["ws:order.cancel"] = await call("order.cancel", {"symbol": "BTCUSDT", "orderId": placed})
        out["ws:openOrders.cancelAll"] = await call("openOrders.cancelAll", {"symbol": "BTCUSDT"})
        out["ws:account.status"] = await call("account.status")
        out["ws:myTrades"] = await call("myTrades", {"symbol": "BTCUSDT"})
        out["ws:time"] = await call("time", signed=False)
        out["ws:ping"] = await call("ping", signed=False)
        out["ws:session.subscriptions"] = await call("session.subscriptions", signed=False)
        out["ws:error"] = await call("order.status", {"symbol": "BTCUSDT", "orderId": 999_999})
        out["ws:userDataStream.unsubscribe"] = await call("userDataStream.unsubscribe", signed=False)
        assert await asyncio.to_thread(server.trading_faults.ws_server_shutdown, None) == 1
        while not any(f.get("event", {}).get("e") == "serverShutdown" for f in frames):
            frames.append(orjson.loads(await ws.receive_str(timeout=5)))
        await ws.close()

    events = [f for f in frames if "event" in f]
    for frame in events:
        event = frame["event"]
        kind = event["e"] if event["e"] != "executionReport" else f"executionReport:{event['x']}"
        if kind == "serverShutdown":
            kind = "ws:serverShutdown"
        out.setdefault(kind, frame)
    return out


def _ws_doc(heading: str, n: int = 0, lang: str = "javascript") -> Callable[[], Any]:
    return lambda: _doc_blocks("web-socket-api.md", heading, lang)[n]


def _uds_doc(heading: str, n: int = 0) -> Callable[[], Any]:
    return lambda: _doc_blocks("user-data-stream.md", heading)[n]


def _with(example: Callable[[], Any], path: str, **fields: Any) -> Callable[[], Any]:
    """An example plus conditional fields the docs list, with the docs' example values (at ``path``)."""

    def build() -> Any:
        payload = copy.deepcopy(example())
        target = payload
        for part in path.split(".") if path else ():
            target = target[part]
        target.update(fields)
        return payload

    return build


def _nautilus_report(name: str) -> Callable[[], Any]:
    """A recorded execution report (combined-stream envelope) as the WebSocket API frames it."""
    return lambda: {"subscriptionId": 0, "event": _nautilus(name)["data"]}


_NEW_ORDER = "### New order (TRADE)"
_PLACE = "### Place new order (TRADE)"
_ORDER_UPDATE = _uds_doc("### Order Update")
_TRADING_EXAMPLES: dict[str, list[Callable[[], Any]]] = {
    "order:ack": [_rest_doc(_NEW_ORDER, 0)],
    "order:result": [_rest_doc(_NEW_ORDER, 1)],
    "order:full": [_rest_doc(_NEW_ORDER, 2)],
    # "expiryReason": conditional ("When an order has expired"), rest-api.md's table and its example value
    "order:expired": [_with(_rest_doc(_NEW_ORDER, 1), "", expiryReason="INSUFFICIENT_LIQUIDITY")],
    "orderTest": [_rest_doc("### Test new order (TRADE)", 0)],
    "orderTest:rates": [_rest_doc("### Test new order (TRADE)", 1)],
    "queryOrder": [_rest_doc("### Query order (USER_DATA)")],
    "openOrders": [_rest_doc("### Current open orders (USER_DATA)")],
    "cancelOrder": [_rest_doc("### Cancel order (TRADE)")],
    "cancelAll": [_rest_doc("### Cancel All Open Orders on a Symbol (TRADE)")],
    "myTrades": [_rest_doc("### Account trade list (USER_DATA)")],
    "account": [_rest_doc("### Account information (USER_DATA)")],
    "tradingError": [_rest_doc("## Error Codes")],
    "ws:order.place:ack": [_ws_doc(_PLACE, 1)],
    "ws:order.place:result": [_ws_doc(_PLACE, 2)],
    # web-socket-api.md's FULL example lacks selfTradePreventionMode, which its RESULT example (and the REST FULL
    # example) has: the FULL example with it
    "ws:order.place:full": [_with(_ws_doc(_PLACE, 3), "result", selfTradePreventionMode="NONE")],
    "ws:order.test": [_ws_doc("### Test new order (TRADE)", 1)],
    "ws:order.status": [_ws_doc("### Query order (USER_DATA)", 1)],
    "ws:openOrders.status": [_ws_doc("### Current open orders (USER_DATA)", 1)],
    "ws:order.cancel": [_ws_doc("### Cancel order (TRADE)", 1)],
    "ws:openOrders.cancelAll": [_ws_doc("### Cancel open orders (TRADE)", 1)],
    "ws:account.status": [_ws_doc("### Account information (USER_DATA)", 1)],
    "ws:myTrades": [_ws_doc("### Account trade history (USER_DATA)", 1)],
    "ws:time": [_ws_doc("### Check server time", 1)],
    "ws:ping": [_ws_doc("### Test connectivity", 1)],
    "ws:session.subscriptions": [_ws_doc("#### Listing all subscriptions", 1)],
    "ws:userDataStream.subscribe.signature": [
        _ws_doc("#### Subscribe to User Data Stream through signature subscription (USER_STREAM)", 1)
    ],
    "ws:userDataStream.unsubscribe": [_ws_doc("#### Unsubscribe from User Data Stream", 1)],
    "ws:error": [_ws_doc("## Response format", 1, "json")],
    "ws:serverShutdown": [_ws_doc("### Server Shutdown")],
    "executionReport:NEW": [_ORDER_UPDATE, _nautilus_report("ws_spot_execution_report_new.json")],
    # the docs' example is a NEW report, whose commission asset "N" is null; a trade's is the asset's name
    "executionReport:TRADE": [
        _with(_ORDER_UPDATE, "event", N="BNB"),
        _nautilus_report("ws_spot_execution_report_trade.json"),
    ],
    "executionReport:CANCELED": [_ORDER_UPDATE, _nautilus_report("ws_spot_execution_report_canceled.json")],
    # "eR": conditional ("Appears when the order has expired"), user-data-stream.md's table and example value
    "executionReport:EXPIRED": [_with(_ORDER_UPDATE, "event", eR="INSUFFICIENT_LIQUIDITY")],
    "outboundAccountPosition": [_uds_doc("### Account Update"), _ws_doc("## Event format")],
    "balanceUpdate": [_uds_doc("### Balance Update")],
    "eventStreamTerminated": [_uds_doc("## Event Stream Terminated")],
}
EXAMPLES.update(_TRADING_EXAMPLES)
_REPORT_EXEMPT = {
    # "v" (prevented match id) appears only for an order expired by self-trade prevention, which never happens here
    "event": {"v"},
}
_OFF_BOOK_EXEMPT = {
    # ... and "W" (working time) only while the order is on the book: not once it is filled, cancelled or expired
    "event": {"v", "W"},
}
EXEMPT_EXAMPLE.update(
    {
        "executionReport:NEW": _REPORT_EXEMPT,
        "executionReport:TRADE": _OFF_BOOK_EXEMPT,
        "executionReport:CANCELED": _OFF_BOOK_EXEMPT,
        "executionReport:EXPIRED": _OFF_BOOK_EXEMPT,
    }
)
# rest-api.md "Conditional fields in Order Responses" (and the WebSocket API's "present only if ..." notes): fields
# for self-trade prevention expiries, strategy ids the request did not send, stop / trailing / iceberg orders; none
# of them applies to the orders this server takes. The docs' examples and the closed specs list them all the same.
_CONDITIONAL = {"preventedMatchId", "preventedQuantity", "strategyId", "strategyType", "trailingDelta", "trailingTime"}
_CANCEL_CONDITIONAL = {"stopPrice", "icebergQty", "strategyId", "strategyType", "trailingDelta", "trailingTime"}
EXEMPT_EXAMPLE.update(
    {
        "ws:order.status": {"result": _CONDITIONAL},
        "ws:order.cancel": {"result": _CANCEL_CONDITIONAL},
        "ws:openOrders.cancelAll": {"result[]": _CANCEL_CONDITIONAL},
    }
)
_RESULT_FIELDS = {
    "price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status", "timeInForce", "type",
    "side", "workingTime", "selfTradePreventionMode",
}  # fmt: skip
EXEMPT_SPEC.update(
    {
        # one schema for the three answer types of POST /api/v3/order: ACK has none of RESULT's fields, RESULT no fills
        "order:ack": {"": _RESULT_FIELDS | {"fills"}},
        "order:result": {"": {"fills"}},
        "order:expired": {"": {"fills"}},
        # without computeCommissionRates the answer is {} (rest-api.md); the schema is the one with the rates
        "orderTest": {"": {"*"}},
        # the order item of the generated schema lists stopPrice / icebergQty, conditional (see above)
        "cancelAll": {"[]": {"stopPrice", "icebergQty"}},
        "ws:order.status": {"result": _CONDITIONAL},
        "ws:order.cancel": {"result": _CANCEL_CONDITIONAL},
        "ws:openOrders.cancelAll": {"result[]": _CANCEL_CONDITIONAL},
    }
)
UNDECLARED_OK.update(
    {
        # conditional "expiryReason" ("When an order has expired", rest-api.md) is missing from the generated schema
        "order:expired": {"": {"expiryReason"}},
        # the docs' cancel answer has origQuoteOrderQty; the generated DeleteOrderV3Resp lacks it
        "cancelOrder": {"": {"origQuoteOrderQty"}},
        # rest-api.md's answer with computeCommissionRates has specialCommissionForOrder; the schema lacks it
        "orderTest:rates": {"": {"specialCommissionForOrder"}},
        # the generated orderPlaceResponse has the ACK result only; RESULT and FULL are in web-socket-api.md
        "ws:order.place:result": {"result": _RESULT_FIELDS},
        "ws:order.place:full": {"result": _RESULT_FIELDS | {"fills"}},
    }
)
EXTRA_EXAMPLE.update(
    {
        # the nautilus recordings predate the "W" (working time) and "V" (self-trade prevention mode) fields
        "executionReport:NEW": {"event": {"W", "V"}},
        "executionReport:TRADE": {"event": {"W", "V"}},
        "executionReport:CANCELED": {"event": {"W", "V"}},
    }
)
# user-data-stream.md writes the commission asset "N": null while nothing was charged; the spec types it string
NULL_OK.update({f"executionReport:{x}": {"event": {"N"}} for x in ("NEW", "CANCELED", "EXPIRED")})


def _api(message: str) -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
    def load() -> tuple[dict[str, Any], dict[str, Any]]:
        spec = _spec("asyncapi/spot.yaml")
        return spec, _resolve(spec, spec["components"]["messages"][message]["payload"])

    return load


def _rest_method(path: str, method: str, status: str = "200") -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
    return lambda: _rest_schema(path, status, method)


_TRADING_SCHEMAS: dict[str, tuple[Callable[[], tuple[dict[str, Any], dict[str, Any]]], bool]] = {
    "order:ack": (_rest_method("/api/v3/order", "post"), True),
    "order:result": (_rest_method("/api/v3/order", "post"), True),
    "order:full": (_rest_method("/api/v3/order", "post"), True),
    "order:expired": (_rest_method("/api/v3/order", "post"), True),
    "orderTest": (_rest_method("/api/v3/order/test", "post"), True),
    "orderTest:rates": (_rest_method("/api/v3/order/test", "post"), True),
    "queryOrder": (_rest_method("/api/v3/order", "get"), True),
    "openOrders": (_rest_method("/api/v3/openOrders", "get"), True),
    "cancelOrder": (_rest_method("/api/v3/order", "delete"), True),
    "cancelAll": (_rest_method("/api/v3/openOrders", "delete"), True),
    "myTrades": (_rest_method("/api/v3/myTrades", "get"), True),
    "account": (_rest_method("/api/v3/account", "get"), True),
    "tradingError": (_rest_method("/api/v3/order", "post", "4XX"), True),
    "ws:order.place:ack": (_api("orderPlaceResponse"), True),
    "ws:order.place:result": (_api("orderPlaceResponse"), True),
    "ws:order.place:full": (_api("orderPlaceResponse"), True),
    "ws:order.test": (_api("orderTestResponse"), True),
    "ws:order.status": (_api("orderStatusResponse"), True),
    "ws:openOrders.status": (_api("openOrdersStatusResponse"), True),
    "ws:order.cancel": (_api("orderCancelResponse"), True),
    "ws:openOrders.cancelAll": (_api("openOrdersCancelAllResponse"), True),
    "ws:account.status": (_api("accountStatusResponse"), True),
    "ws:myTrades": (_api("myTradesResponse"), True),
    "ws:time": (_api("timeResponse"), True),
    "ws:ping": (_api("pingResponse"), True),
    "ws:session.subscriptions": (_api("sessionSubscriptionsResponse"), True),
    "ws:userDataStream.subscribe.signature": (_api("userDataStreamSubscribeSignatureResponse"), True),
    "ws:userDataStream.unsubscribe": (_api("userDataStreamUnsubscribeResponse"), True),
    "ws:error": (_api("errorMessage"), True),
    "executionReport:NEW": (_api("orderUpdateEvent"), False),
    "executionReport:TRADE": (_api("orderUpdateEvent"), False),
    "executionReport:CANCELED": (_api("orderUpdateEvent"), False),
    "executionReport:EXPIRED": (_api("orderUpdateEvent"), False),
    "outboundAccountPosition": (_api("accountUpdateEvent"), False),
    "balanceUpdate": (_api("balanceUpdateEvent"), False),
    "eventStreamTerminated": (_api("eventStreamTerminatedEvent"), False),
}
SCHEMAS.update(_TRADING_SCHEMAS)
# ws:serverShutdown is not in the generated AsyncAPI spec: it is checked against the official docs' payload only

TRADING_KINDS = sorted(set(_TRADING_EXAMPLES) | set(_TRADING_SCHEMAS))


@pytest.mark.parametrize("kind", TRADING_KINDS)
def test_every_trading_payload_kind_matches_the_examples_and_the_specs(
    trading_payloads: dict[str, Any], kind: str
) -> None:
    payload = trading_payloads[kind]
    problems = contract_problems(kind, payload)
    assert not problems, f"{kind}: " + "\n".join(problems)


def test_every_trading_kind_is_collected_and_is_what_it_claims(trading_payloads: dict[str, Any]) -> None:
    assert set(trading_payloads) == set(TRADING_KINDS), set(trading_payloads) ^ set(TRADING_KINDS)
    p = trading_payloads
    assert p["order:full"]["fills"] and p["order:full"]["status"] == "FILLED"
    assert p["order:expired"]["status"] == "EXPIRED" and p["cancelOrder"]["status"] == "CANCELED"
    assert p["tradingError"]["code"] == -2010 and p["ws:error"]["error"]["code"] == -2013
    assert p["myTrades"] and p["openOrders"] and p["orderTest"] == {}
    assert {p[f"executionReport:{x}"]["event"]["x"] for x in ("NEW", "TRADE", "CANCELED", "EXPIRED")} == {
        "NEW",
        "TRADE",
        "CANCELED",
        "EXPIRED",
    }


@pytest.mark.parametrize("kind", TRADING_KINDS)
def test_the_trading_checks_catch_a_renamed_key_or_a_wrong_type(trading_payloads: dict[str, Any], kind: str) -> None:
    payload = trading_payloads[kind]
    mutations = _mutations(payload)
    if payload == {}:
        assert not mutations and contract_problems(kind, {"pong": True})
        return
    assert mutations
    for what, mutated in mutations:
        assert contract_problems(kind, mutated), f"{kind}: {what} went unnoticed"

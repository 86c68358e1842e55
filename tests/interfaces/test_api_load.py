"""1,000 orders through the REST API from 4 threads while 20 WebSocket clients watch, one of them deliberately slow.

No order is lost: every POST gets a definite answer (201 or 409), and every answer's events reach every fast watcher,
numbered consecutively with no gap. The slow watcher (a queue of 4 events, a pause after each message) loses events:
its gap messages say how many, their sum is what the server counts as dropped, and its fresh snapshots end it at the
same place as everyone else.

The order rate limit is lifted for this test (the shipped config allows 100 orders/s with a burst of 200: most of the
1,000 would be rejected RATE_LIMIT). The market ticks only once, at start: its book is deep enough for the market
orders (0.25 BTC each side against 2.5), and nothing but the test's orders moves the stream. Speed is measured by
``scripts/bench_api.py``, not here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import websockets.exceptions

from .api_helpers import Client, RunningApi, Watcher, below_reference, running_api, wait_for

ORDERS = 1_000
THREADS = 4
WATCHERS = 20
SLOW_QUEUE = 4


def _order(i: int, far_buy: str) -> dict[str, Any]:
    """Four kinds in turn: market buy, market sell (they fill and move balances), a far limit (rests), and an IOC
    limit at the same far price (expires at once)."""
    kind = i % 4
    symbol = "BTCUSDT" if i % 8 < 4 else "ETHUSDT"
    qty = "0.001" if symbol == "BTCUSDT" else "0.01"
    if kind == 0:
        return {"symbol": symbol, "side": "BUY", "qty": qty}
    if kind == 1:
        return {"symbol": symbol, "side": "SELL", "qty": qty}
    price = far_buy[symbol]
    return {"symbol": symbol, "side": "BUY", "qty": qty, "price": price, "tif": "GTC" if kind == 2 else "IOC",
            "cid": f"load-{i}"}  # fmt: skip


class _Reader(threading.Thread):
    """Reads one stream into ``objects`` until the socket closes; ``pause`` after each message (the slow one)."""

    def __init__(self, url: str, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.watcher = Watcher(url)
        self.pause = pause
        self.objects: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                self.objects.append(self.watcher.next(timeout=300))
                if self.pause:
                    time.sleep(self.pause)
        except websockets.exceptions.ConnectionClosed:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def last_seq(self) -> int:
        for obj in reversed(self.objects):
            if "seq" in obj:
                return int(obj["seq"])
        return -1


def _post_all(api: RunningApi, far_buy: dict[str, str]) -> list[tuple[int, dict[str, Any]]]:
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        client = api.client()
        try:
            for i in range(worker, ORDERS, THREADS):
                status, body = client.order(**_order(i, far_buy))
                with lock:
                    answers.append((status, body))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not failures, failures
    return answers


def test_a_thousand_orders_while_twenty_clients_watch(tmp_path: Path) -> None:
    with running_api(tmp_path) as api:
        far_buy = {"BTCUSDT": below_reference(api, 3, "BTCUSDT"), "ETHUSDT": below_reference(api, 3, "ETHUSDT")}
        readers = [_Reader(api.ws_url()) for _ in range(WATCHERS - 1)]
        slow = _Reader(api.ws_url(queue=SLOW_QUEUE), pause=0.002)
        for reader in [*readers, slow]:
            reader.start()
        wait_for(lambda: all(r.objects for r in [*readers, slow]), what="every watcher's snapshot")
        client = api.client()
        balances_before = client.get("/api/v1/balances")["balances"]

        answers = _post_all(api, far_buy)

        # every POST got a definite answer
        assert len(answers) == ORDERS
        assert Counter(status for status, _ in answers).keys() <= {201, 409}, Counter(s for s, _ in answers)
        accepted = [body for status, body in answers if status == 201]
        assert len(accepted) >= ORDERS * 0.9, Counter(s for s, _ in answers)
        assert all(body["accepted"] for body in accepted)
        final_seq = Client(api.server.url, None).get("/api/v1/health")["seq"]
        wait_for(lambda: all(r.last_seq() == final_seq for r in [*readers, slow]), timeout=120,
                 what="every watcher to reach the last event")  # fmt: skip

        # every fast watcher saw every event, in order, without a gap, and every answer's events among them
        answered = [json.dumps(e, sort_keys=True) for _, body in answers for e in body["events"]]
        for reader in readers:
            assert reader.error is None
            snapshot, *events = reader.objects
            assert snapshot["type"] == "snapshot"
            assert not [e for e in events if e.get("type") in ("gap", "snapshot")]
            assert [e["seq"] for e in events] == list(range(snapshot["seq"] + 1, final_seq + 1))
            seen = Counter(json.dumps({k: v for k, v in e.items() if k != "seq"}, sort_keys=True) for e in events)
            missing = Counter(answered) - seen
            assert not missing, list(missing)[:3]
        for body in accepted:  # and each accepted order ended where the engine says
            cid = body["cid"]
            last = [e for e in body["events"] if e["type"] == "order_update"][-1]
            assert last["status"] in ("FILLED", "ACCEPTED", "EXPIRED"), last
            if last["status"] == "ACCEPTED":
                assert client.get(f"/api/v1/orders/{cid}")["status"] == "ACCEPTED"

        # the slow watcher lost events, was told how many, and the server counted the same
        assert slow.error is None
        gaps = [o for o in slow.objects if o.get("type") == "gap"]
        assert gaps and all(g["missed"] > 0 for g in gaps)
        assert client.get("/api/v1/status")["api"]["dropped"] == sum(g["missed"] for g in gaps)
        for i, obj in enumerate(slow.objects):  # each gap is followed by a fresh snapshot
            if obj.get("type") == "gap":
                assert slow.objects[i + 1]["type"] == "snapshot"
                assert slow.objects[i + 1]["seq"] >= obj["last_seq"] + obj["missed"]
        numbered = [o for o in slow.objects if "seq" in o]
        assert all(b["seq"] > a["seq"] for a, b in zip(numbered, numbered[1:], strict=False))

        # balances moved (the market orders filled), and the fills the API lists are the answers' fills
        assert client.get("/api/v1/balances")["balances"] != balances_before
        fills = client.get("/api/v1/fills?limit=10000")["items"]
        answered_fills = [e for _, body in answers for e in body["events"] if e["type"] == "fill"]
        assert sorted(json.dumps(f, sort_keys=True) for f in fills) == sorted(
            json.dumps(f, sort_keys=True) for f in answered_fills
        )
        client.close()
    for reader in [*readers, slow]:
        reader.join(30)

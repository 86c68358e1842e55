"""The monitoring page (``veloz_actors/interfaces/web/``) in headless Chromium against a real engine.

``veloz start --local --single-process --no-journal --http 127.0.0.1:0`` runs as a subprocess (its stdin a pipe kept
open); the test reads the address it prints on stderr (``api: http://HOST:PORT/?token=TOKEN``) and opens it. The page
then trades only through its own controls (the order form, a Cancel button, HALT and Resume), and every outcome is
checked twice: in the page's DOM and in the API's answers.

The tests of this module run in file order on one engine and one browser: each starts from the state the previous one
left (a fill, then a cancelled order, then a halt). Screenshots go to the pytest tmp dir and to
``test-artifacts/`` under the repository root.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium, console_errors

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"
WEB = ROOT / "veloz_actors" / "interfaces" / "web"
ARTIFACTS = ROOT / "test-artifacts"
API_LINE = re.compile(r"api: (http://[^/\s]+)/\?token=(\S+) \(schema: ")
WAIT_SECONDS = 30


@dataclass
class Engine:
    process: subprocess.Popen[bytes]
    base: str  # http://HOST:PORT
    token: str
    stderr: list[str] = field(default_factory=list)
    run_dir: Path | None = None  # the engine's run folder (runs/ under its working directory): reports go there

    @property
    def page(self) -> str:
        return f"{self.base}/?token={self.token}"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One API call with the token: (HTTP status, JSON answer)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        status, answer = self.api("GET", path)
        assert status == 200, f"GET {path}: HTTP {status} {answer}"
        return answer


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine with its API, in a folder of its own (the API token file goes to its runs/)."""
    run = tmp_path_factory.mktemp("monitor-engine")
    env = {k: v for k, v in os.environ.items() if k != "VELOZ_API_TOKEN"}
    env["RAY_AUTH_MODE"] = "disabled"
    command = [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process",
               "--no-journal", "--no-market", "--json", "--config", str(CONFIG), "--http", "127.0.0.1:0"]  # fmt: skip
    with (run / "stdout.jsonl").open("wb") as stdout:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE, cwd=run,
                                   env=env)  # fmt: skip
    lines: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def drain() -> None:  # stderr is read to its end, so the engine never blocks on a full pipe
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            match = API_LINE.search(line)
            if match and not found:
                found.update(base=match.group(1), token=match.group(2))
                ready.set()
        ready.set()

    threading.Thread(target=drain, name="engine-stderr", daemon=True).start()
    try:
        ready.wait(timeout=90)
        if not found:
            text = "\n".join(lines[-40:])
            raise AssertionError(f"the engine printed no `api: http://...` line on stderr within 90 s:\n{text}")
        yield Engine(process, found["base"], found["token"], lines, run / "runs")
    finally:
        if process.stdin is not None:
            process.stdin.close()  # end of input: the engine stops cleanly
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def driver(engine: Engine) -> Iterator[Any]:
    """One laptop-sized browser on the page; tall, so the screenshot shows most of it."""
    with chromium(width=1280, height=2000) as browser:
        browser.get(engine.page)
        yield browser


# ------------------------------------------------------------------------------------------------------- helpers


def _wait(browser: Any, predicate: Any, what: str, timeout: float = WAIT_SECONDS) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        browser, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda b: predicate(b), message=f"waited {timeout} s for {what}")


def _text(browser: Any, selector: str) -> str | None:
    """The text of the first element matching ``selector`` (None when there is none)."""
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else None


def _usdt_free(browser: Any) -> str | None:
    return _text(browser, '#balances tr[data-asset="USDT"] td[data-field="free"]')


def _has_row(browser: Any, table: str, cid: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(browser.find_elements(By.CSS_SELECTOR, f'#{table} tbody tr[data-cid="{cid}"]'))


def _place(browser: Any, *, symbol: str, side: str, qty: str, price: str | None, cid: str) -> None:
    """Fill in the order form and submit it, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _wait(browser, lambda b: symbol in [o.text for o in Select(b.find_element(By.ID, "order-symbol")).options],
          f"{symbol} in the form's symbols")  # fmt: skip
    Select(browser.find_element(By.ID, "order-symbol")).select_by_visible_text(symbol)
    Select(browser.find_element(By.ID, "order-side")).select_by_visible_text(side)
    Select(browser.find_element(By.ID, "order-type")).select_by_value("MARKET" if price is None else "LIMIT")
    for field_id, value in (("order-qty", qty), ("order-price", price or ""), ("order-cid", cid)):
        box = browser.find_element(By.ID, field_id)
        if box.is_enabled():
            box.clear()
            box.send_keys(value)
    browser.execute_script("document.getElementById('order-result').textContent = ''")
    browser.find_element(By.ID, "order-submit").click()
    _wait(browser, lambda b: (_text(b, "#order-result") or "").strip() not in ("", "sending…"), f"the answer to {cid}")


def _save_screenshot(browser: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    browser.save_screenshot(str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


# --------------------------------------------------------------------------------------------------------- tests


def test_the_page_loads_clean_and_takes_the_token_out_of_the_address(engine: Engine, driver: Any) -> None:
    _wait(driver, lambda b: _usdt_free(b), "the USDT balance on the page")
    assert console_errors(driver) == []
    assert "token" not in driver.current_url
    assert driver.execute_script("return sessionStorage.getItem('veloz.apiToken')") == engine.token
    # Everything the page loaded came from the engine itself: no CDN, no web font.
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded, "the page loaded no resource at all"
    assert [url for url in loaded if not url.startswith(engine.base + "/")] == []
    _wait(driver, lambda b: _text(b, "#stream-state") == "stream live", "the event stream to be live")
    assert _text(driver, "#mode") == engine.get("/api/v1/health")["mode"] == "sim"


def test_the_page_shows_the_balances_the_api_serves(engine: Engine, driver: Any) -> None:
    balances = engine.get("/api/v1/balances")["balances"]
    for asset, balance in balances.items():
        cell = f'#balances tr[data-asset="{asset}"] td[data-field="free"]'
        _wait(driver, lambda b, c=cell, f=balance["free"]: _text(b, c) == f, f"{asset} free = {balance['free']}")
    assert _usdt_free(driver) == balances["USDT"]["free"]


def test_a_market_buy_from_the_form_fills_and_moves_the_balance(engine: Engine, driver: Any) -> None:
    before = _usdt_free(driver)
    assert before == engine.get("/api/v1/balances")["balances"]["USDT"]["free"]
    _place(driver, symbol="BTCUSDT", side="BUY", qty="0.001", price=None, cid="page-buy-1")
    assert (_text(driver, "#order-result") or "").startswith("Accepted"), _text(driver, "#order-result")
    _wait(driver, lambda b: _has_row(b, "fills", "page-buy-1"), "the buy's fill row")
    _wait(driver, lambda b: _usdt_free(b) not in (None, before), "the USDT free balance to change")
    fills = engine.get("/api/v1/fills?limit=10")["items"]
    assert [f["cid"] for f in fills] == ["page-buy-1"]
    shown = Decimal(_wait(driver, lambda b: _usdt_free(b) if _usdt_free(b) == _api_usdt_free(engine) else None,
                          "the page's USDT free balance to equal the API's"))  # fmt: skip
    paid = Decimal(fills[0]["price"]) * Decimal(fills[0]["qty"]) + Decimal(fills[0]["fee"])
    assert shown == Decimal(before) - paid  # the fee is in USDT (the quote asset) on a buy
    assert _text(driver, '#positions tbody tr[data-symbol="BTCUSDT"] td:nth-child(2)') == "0.001"


def _api_usdt_free(engine: Engine) -> str:
    return str(engine.get("/api/v1/balances")["balances"]["USDT"]["free"])


def test_a_resting_limit_leaves_the_open_orders_with_its_cancel_button(engine: Engine, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    price = _far_bid(engine)
    _place(driver, symbol="BTCUSDT", side="BUY", qty="0.001", price=price, cid="page-rest-1")
    _wait(driver, lambda b: _has_row(b, "open-orders", "page-rest-1"), "the resting order in the open orders")
    assert [o["cid"] for o in engine.get("/api/v1/orders?state=open")["items"]] == ["page-rest-1"]
    driver.find_element(By.CSS_SELECTOR, '#open-orders tr[data-cid="page-rest-1"] button').click()
    _wait(driver, lambda b: not _has_row(b, "open-orders", "page-rest-1"), "the cancelled order to leave the table")
    assert engine.get("/api/v1/orders?state=open")["items"] == []
    closed = engine.get("/api/v1/orders?state=closed&limit=10")["items"]
    assert {(o["cid"], o["status"]) for o in closed} >= {("page-rest-1", "CANCELLED")}
    assert console_errors(driver) == []


def test_an_order_whose_id_a_refused_order_reused_stays_in_the_open_orders(engine: Engine, driver: Any) -> None:
    """A REJECTED DUPLICATE_CLIENT_ORDER_ID refused the new order only (before: the page dropped the resting one)."""
    from selenium.webdriver.common.by import By

    price = _far_bid(engine)
    _place(driver, symbol="BTCUSDT", side="BUY", qty="0.001", price=price, cid="page-dup-1")
    _wait(driver, lambda b: _has_row(b, "open-orders", "page-dup-1"), "the resting order in the open orders")
    _place(driver, symbol="BTCUSDT", side="BUY", qty="0.002", price=price, cid="page-dup-1")
    assert "DUPLICATE_CLIENT_ORDER_ID" in (_text(driver, "#order-result") or "")
    _wait(driver, lambda b: _has_row(b, "rejections", "page-dup-1"), "the refused reuse in the risk panel")
    assert _has_row(driver, "open-orders", "page-dup-1")
    assert [o["cid"] for o in engine.get("/api/v1/orders?state=open")["items"]] == ["page-dup-1"]
    driver.find_element(By.CSS_SELECTOR, '#open-orders tr[data-cid="page-dup-1"] button').click()
    _wait(driver, lambda b: not _has_row(b, "open-orders", "page-dup-1"), "the cancelled order to leave the table")
    closed = engine.get("/api/v1/orders?state=closed&limit=10")["items"]
    assert [o["status"] for o in closed if o["cid"] == "page-dup-1"] == ["CANCELLED"]


def _far_bid(engine: Engine) -> str:
    """A bid 3 % under the engine's reference price (inside the 5 % price band, far below the simulated market's
    asks): from STATUS, so a test run alone needs no earlier test's fill."""
    reference = engine.get("/api/v1/status")["reference_prices"]["BTCUSDT"]  # a decimal string
    return str(math.floor(Decimal(reference) * Decimal("0.97")))


def test_halt_cancels_open_orders_and_refuses_new_ones_until_resume(
    engine: Engine, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    _place(driver, symbol="BTCUSDT", side="BUY", qty="0.001", price=_far_bid(engine), cid="page-rest-2")
    _wait(driver, lambda b: _has_row(b, "open-orders", "page-rest-2"), "the second resting order")
    halt = driver.find_element(By.ID, "halt-button")
    halt.click()  # arms it
    assert halt.text == "Confirm HALT"
    assert engine.get("/api/v1/risk")["use"]["halted"] is False
    halt.click()
    _wait(driver, lambda b: b.find_element(By.ID, "halt-state").is_displayed(), "the HALTED badge")
    _wait(driver, lambda b: not _has_row(b, "open-orders", "page-rest-2"), "HALT to cancel the resting order")
    assert engine.get("/api/v1/risk")["use"]["halted"] is True
    assert engine.get("/api/v1/orders?state=open")["items"] == []

    fills_before = [f["cid"] for f in engine.get("/api/v1/fills?limit=10")["items"]]
    _place(driver, symbol="BTCUSDT", side="BUY", qty="0.001", price=None, cid="page-halted-1")
    answer = _text(driver, "#order-result") or ""
    assert answer.startswith("Rejected") and "CIRCUIT_BREAKER" in answer, answer
    _wait(driver, lambda b: _has_row(b, "rejections", "page-halted-1"), "the rejection in the risk panel")
    assert [f["cid"] for f in engine.get("/api/v1/fills?limit=10")["items"]] == fills_before  # the halted order: none
    shot = _save_screenshot(driver, tmp_path, "monitor-page.png")
    assert shot.stat().st_size > 20_000

    driver.find_element(By.ID, "resume-button").click()
    _wait(driver, lambda b: not b.find_element(By.ID, "halt-state").is_displayed(), "Resume to clear the halt")
    assert engine.get("/api/v1/risk")["use"]["halted"] is False
    # The only console error: the browser's own line for the 409 that answered the refused order.
    unexpected = [e for e in console_errors(driver) if not ("/api/v1/orders" in e["message"] and "409" in e["message"])]
    assert unexpected == []


def test_the_pages_content_security_policy_is_in_force(engine: Engine) -> None:
    """The page works under its policy (no violation of its own), and the policy binds: a script written into the
    page (as an injection would) is refused and never runs."""
    with chromium() as browser:
        browser.get(engine.page)
        _wait(browser, lambda b: _text(b, "#stream-state") == "stream live", "the event stream to be live")
        _wait(browser, lambda b: _usdt_free(b), "the USDT balance on the page")
        assert console_errors(browser) == []
        browser.execute_script(
            "const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.head.append(s)"
        )
        refused = _wait(browser, lambda b: console_errors(b), "the browser's report of the refused script")
        assert browser.execute_script("return window.injected === undefined")
        assert [e["source"] for e in refused] == ["security"]
        assert "Content Security Policy" in refused[0]["message"]


def test_a_report_draws_under_its_policy_and_cannot_reach_the_api(engine: Engine, shared_data: Path) -> None:
    """A real backtest report served by the API: plotly draws every figure with no policy violation; a script in
    the page cannot call the API (connect-src 'none'), so the token in its address is no use to one."""
    import veloz_actors as vz

    assert engine.run_dir is not None
    data = shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz"
    vz.run_backtest(data=str(data), strategy="sma_cross", params={"fast": 10, "slow": 30},
                    out=str(engine.run_dir / "bt-csp"))  # fmt: skip
    assert "bt-csp/report.html" in [r["path"] for r in engine.get("/api/v1/reports")["reports"]]
    with chromium() as browser:
        browser.get(f"{engine.base}/reports/bt-csp/report.html?token={engine.token}")
        _wait(browser, lambda b: b.execute_script("return document.querySelectorAll('.js-plotly-plot').length") >= 2
              and b.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") >= 2,
              "plotly's figures")  # fmt: skip
        assert console_errors(browser) == []
        browser.execute_script(
            "window.answer = 'pending'; fetch('/api/v1/balances', {headers: {Authorization: 'Bearer "
            + engine.token
            + "'}}).then(() => { window.answer = 'reached'; }, () => { window.answer = 'refused'; })"
        )
        _wait(browser, lambda b: b.execute_script("return window.answer") != "pending", "the fetch to settle")
        assert browser.execute_script("return window.answer") == "refused"
        assert any("connect-src 'none'" in e["message"] for e in console_errors(browser))


def test_a_wrong_token_is_forgotten_and_asked_for_again(engine: Engine) -> None:
    from selenium.webdriver.common.by import By

    with chromium() as browser:
        browser.get(f"{engine.base}/?token=not-the-token")
        _wait(browser, lambda b: b.find_element(By.ID, "login").is_displayed(), "the token field")
        assert browser.execute_script("return sessionStorage.getItem('veloz.apiToken')") is None
        assert "not-the-token" not in browser.current_url
        assert not browser.find_element(By.ID, "dashboard").is_displayed()
        browser.find_element(By.ID, "login-token").send_keys(engine.token)
        browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        _wait(browser, lambda b: _usdt_free(b) == _api_usdt_free(engine), "the balances after typing the token")


def test_a_phone_wide_viewport_has_no_horizontal_overflow(engine: Engine, tmp_path: Path) -> None:
    with chromium(width=375, height=800) as browser:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": 375, "height": 800, "deviceScaleFactor": 2, "mobile": True}
        )
        browser.get(engine.page)
        _wait(browser, lambda b: _usdt_free(b), "the USDT balance on a phone")
        _wait(browser, lambda b: b.execute_script("return document.querySelectorAll('#chart svg').length"), "the chart")
        assert browser.execute_script("return window.innerWidth") == 375
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1] + 1, f"the page is {width[0]} px wide in a {width[1]} px viewport"
        assert console_errors(browser) == []
        _save_screenshot(browser, tmp_path, "monitor-page-375.png")


def test_the_page_puts_engine_text_into_the_dom_as_text_only() -> None:
    script = (WEB / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, f"app.js uses {sink}"
    html = (WEB / "index.html").read_text()
    outside = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']*)""", html)
    assert outside == [], f"index.html loads {outside}"


def test_a_page_that_falls_behind_resyncs_from_the_fresh_snapshot(engine: Engine) -> None:
    """With a one-event queue (``/?queue=1`` is passed on to the stream) the server drops events all the time; each
    gap is followed by a snapshot, and the page must still end up showing exactly what the engine holds."""
    from selenium.webdriver.common.by import By

    with chromium() as browser:
        browser.get(f"{engine.page}&queue=1")
        _wait(browser, lambda b: "fell behind" in b.find_element(By.ID, "messages").text, "a gap message")
        _place(browser, symbol="ETHUSDT", side="BUY", qty="0.01", price=None, cid="page-behind-1")
        assert (_text(browser, "#order-result") or "").startswith("Accepted"), _text(browser, "#order-result")
        eth = lambda b: _text(b, '#balances tr[data-asset="ETH"] td[data-field="free"]')  # noqa: E731
        _wait(browser, lambda b: eth(b) == engine.get("/api/v1/balances")["balances"]["ETH"]["free"] == "10.01",
              "the ETH balance after the buy")  # fmt: skip
        _wait(browser, lambda b: _usdt_free(b) == _api_usdt_free(engine), "the USDT balance after the buy")
        assert browser.execute_script("return window.location.search") == "?queue=1"
        assert console_errors(browser) == []


class _Proxy:
    """A TCP forwarder between the browser and the API whose connections the test can cut: a dropped network."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refusing = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), name="proxy-pipe", daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self, *, refuse: bool) -> None:
        """Drop every connection; with ``refuse`` new ones are closed at once until :meth:`restore`."""
        self.refusing = refuse
        with self.lock:
            dropped, self.sockets = self.sockets, []
        for end in dropped:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def restore(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.cut(refuse=True)
        self.server.close()


def test_a_dropped_stream_reconnects_and_shows_what_happened_meanwhile(engine: Engine) -> None:
    """The connection drops (and new ones fail for a moment) while an order fills elsewhere: the page reconnects by
    itself and its fresh snapshot shows the fill and the balance it missed."""
    address = urllib.parse.urlsplit(engine.base)
    proxy = _Proxy((address.hostname or "127.0.0.1", address.port or 80))
    try:
        with chromium() as browser:
            browser.get(f"http://127.0.0.1:{proxy.port}/?token={engine.token}")
            _wait(browser, lambda b: _text(b, "#stream-state") == "stream live", "the stream through the proxy")
            _wait(browser, lambda b: _usdt_free(b) == _api_usdt_free(engine), "the balances through the proxy")
            proxy.cut(refuse=True)
            _wait(browser, lambda b: _text(b, "#stream-state") == "stream reconnecting", "the page to see the drop")
            body = {"symbol": "BTCUSDT", "side": "SELL", "qty": "0.001", "price": None, "cid": "while-away-1"}
            status, answer = engine.api("POST", "/api/v1/orders", body)
            assert status == 201, answer
            assert not _has_row(browser, "fills", "while-away-1")
            proxy.restore()
            _wait(browser, lambda b: _text(b, "#stream-state") == "stream live", "the page to reconnect")
            _wait(browser, lambda b: _has_row(b, "fills", "while-away-1"), "the fill made while away")
            _wait(browser, lambda b: _usdt_free(b) == _api_usdt_free(engine), "the balance made while away")
            # Failed requests while the proxy refused are the browser's network lines; no script error.
            assert [e for e in console_errors(browser) if e.get("source") != "network"] == []
    finally:
        proxy.close()


def test_a_page_whose_engine_is_gone_says_it_is_stale_and_disables_the_actions(engine: Engine, tmp_path: Path) -> None:
    """Before, with the engine unreachable the venue badge stayed green, every actor "alive", the old quotes and
    balances looked live and HALT and Place order stayed enabled."""
    from selenium.webdriver.common.by import By

    address = urllib.parse.urlsplit(engine.base)
    proxy = _Proxy((address.hostname or "127.0.0.1", address.port or 80))
    body = {"symbol": "BTCUSDT", "side": "BUY", "qty": "0.001", "price": _far_bid(engine), "cid": "stale-rest-1"}
    status, answer = engine.api("POST", "/api/v1/orders", body)  # a resting order: its Cancel button
    assert status == 201, answer

    def enabled(b: Any) -> dict[str, bool]:
        buttons = {name: b.find_element(By.ID, name) for name in ("halt-button", "order-submit")}
        buttons["cancel"] = b.find_element(By.CSS_SELECTOR, '#open-orders tr[data-cid="stale-rest-1"] button')
        return {name: button.is_enabled() for name, button in buttons.items()}

    def actor_states(b: Any) -> set[str]:
        return {row.text for row in b.find_elements(By.CSS_SELECTOR, "#actors tbody tr td:nth-child(2)")}

    try:
        with chromium() as browser:
            browser.get(f"http://127.0.0.1:{proxy.port}/?token={engine.token}")
            _wait(browser, lambda b: _text(b, "#stream-state") == "stream live", "the stream through the proxy")
            _wait(browser, lambda b: _has_row(b, "open-orders", "stale-rest-1"), "the resting order")
            _wait(browser, lambda b: actor_states(b) == {"alive"}, "the actors alive")
            _wait(browser, lambda b: "simulated" in (_text(b, "#venue-state") or ""), "the venue's state")
            assert enabled(browser) == {"halt-button": True, "order-submit": True, "cancel": True}
            assert not browser.find_element(By.ID, "stale-banner").is_displayed()

            proxy.cut(refuse=True)  # the engine is gone as far as the page can tell
            _wait(browser, lambda b: b.find_element(By.ID, "stale-banner").is_displayed(), "the stale banner")
            banner = _text(browser, "#stale-banner") or ""
            assert banner.startswith("Stale: ") and "disabled until it is back" in banner, banner
            assert re.search(r"as of \d\d:\d\d:\d\d UTC, its last update", banner), banner
            assert "stale" in browser.find_element(By.TAG_NAME, "body").get_attribute("class").split()
            assert enabled(browser) == {"halt-button": False, "order-submit": False, "cancel": False}
            assert _text(browser, "#venue-state") == "venue unknown"
            assert actor_states(browser) == {"unknown"}
            _save_screenshot(browser, tmp_path, "monitor-page-stale.png")

            proxy.restore()
            _wait(browser, lambda b: not b.find_element(By.ID, "stale-banner").is_displayed(), "the page to recover")
            _wait(browser, lambda b: actor_states(b) == {"alive"}, "the actors alive again")
            _wait(browser, lambda b: "simulated" in (_text(b, "#venue-state") or ""), "the venue's state again")
            assert "stale" not in browser.find_element(By.TAG_NAME, "body").get_attribute("class").split()
            assert enabled(browser) == {"halt-button": True, "order-submit": True, "cancel": True}
            assert _text(browser, "#stream-state") == "stream live"
            assert [e for e in console_errors(browser) if e.get("source") != "network"] == []
    finally:
        proxy.close()
        engine.api("DELETE", "/api/v1/orders/stale-rest-1")


def test_a_page_whose_engine_is_stalled_says_so_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's loop blocked (a venue call that never returns): /health says "stalled" and the page says so, with
    its actions disabled, instead of "engine unreachable" (before, /health said "ok" and the page looked live)."""
    from selenium.webdriver.common.by import By

    from veloz_actors.interfaces import http_api

    from .api_helpers import running_api

    monkeypatch.setattr(http_api, "STALL_SECONDS", 0.5)
    with running_api(tmp_path) as running, chromium() as browser:
        browser.get(f"{running.server.url}/?token={running.token}")
        _wait(browser, lambda b: _text(b, "#stream-state") == "stream live", "the stream")
        gate = threading.Event()
        running.service.call_async(lambda s: gate.wait(120))  # the engine's thread, held
        try:
            _wait(browser, lambda b: b.find_element(By.ID, "stale-banner").is_displayed(), "the stale banner")
            banner = _text(browser, "#stale-banner") or ""
            assert "the engine has been busy or blocked for" in banner, banner
            assert _text(browser, "#mode") == "engine stalled"
            assert not browser.find_element(By.ID, "halt-button").is_enabled()
        finally:
            gate.set()
        _wait(browser, lambda b: not b.find_element(By.ID, "stale-banner").is_displayed(), "the page to recover")
        assert _text(browser, "#mode") == "sim"
        assert browser.find_element(By.ID, "halt-button").is_enabled()


def test_a_queue_size_the_engine_refuses_is_said_once_not_retried_for_ever(engine: Engine) -> None:
    """/?queue=0 (the page's own check takes 1-6 digits): the stream closes 4400 naming it; before, the page said only
    "stream reconnecting" and asked again every 15 s for ever."""
    from selenium.webdriver.common.by import By

    with chromium() as browser:
        browser.get(f"{engine.base}/?queue=0&token={engine.token}")
        _wait(browser, lambda b: _text(b, "#stream-state") == "stream refused", "the stream refused")
        banner = _text(browser, "#stale-banner") or ""
        assert "the engine refused the stream: queue must be 1..100000, got '0'" in banner, banner
        assert browser.find_element(By.ID, "stale-banner").is_displayed()

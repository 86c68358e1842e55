// The VeloZ monitoring page: the engine's HTTP API (/api/v1/*) and its live event stream (WS /api/v1/stream).
//
// No build step and no outside resource: this file, index.html and style.css are everything, served by the API.
// The stream's first message is a snapshot (type "snapshot", with the "seq" it is valid at); then every event comes
// as {"seq": n, ...the stdio protocol's object}, one per message or several in a JSON array (both are handled). A
// "gap" message (the page fell behind and the server dropped events) is followed by a fresh snapshot, which
// replaces everything the page held. What the stream does not carry (the equity series, risk use, actor health, the
// venues' connection state) is polled every few seconds and after the events that change it. When the socket drops,
// the page reconnects with a growing delay (0.5 s doubling to 15 s) and polls the REST endpoints meanwhile. The
// page's own address may carry ?queue=N, passed on to the stream (this client's queue size; a test uses 1).
//
// The token comes from the address the engine prints (/?token=...) or from the login field; it is kept in
// sessionStorage (this tab only) and removed from the address bar. Any 401 forgets it and asks again.
//
// Every text from the engine goes into the DOM through textContent or attributes, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "veloz.apiToken";
  const POLL_MS = 5000;
  const MAX_FILLS = 100;
  const MAX_REJECTIONS = 20;
  const MAX_MESSAGES = 30;
  const MAX_POINTS = 5000;
  const OPEN_STATUSES = new Set(["NEW", "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL", "UNKNOWN"]);
  const TERMINAL_STATUSES = new Set(["FILLED", "CANCELLED", "REJECTED", "EXPIRED"]);

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    started: false,
    seq: null, // the last event applied (null: no snapshot yet)
    balances: {}, // asset -> {free, locked}
    equity: null, // {asset, equity, peak, drawdown, complete, unvalued}
    positions: new Map(), // symbol -> position object
    orders: new Map(), // cid -> order object (open only)
    fills: [], // newest first
    rejections: [], // newest first
    series: [], // [{ts (number, ns), equity (number), drawdown (number)}], oldest first
    quotes: {}, // symbol -> {bid, ask} or {price}
    symbols: [],
    halted: false,
    haltReason: "",
    lastEventAt: 0, // performance.now() of the last event received
    lastUpdate: 0, // Date.now() of the last snapshot or event from the stream
    stale: false, // the stream is down or the engine does not answer: what the page shows is as of lastUpdate
    actors: null, // the last GET /api/v1/actors answer, drawn again as "unknown" while stale
    venueSummary: null,
    socket: null,
    socketOpen: false,
    reconnectDelay: 500,
    reconnectTimer: null,
    pollTimer: null,
    pending: {}, // name -> timer of a debounced refresh
    haltArmedUntil: 0,
  };

  // ---------------------------------------------------------------------------------------------- small helpers

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function cell(text, className) {
    return el("td", text === undefined || text === null || text === "" ? "—" : text, className);
  }

  function formatTime(ns) {
    if (typeof ns !== "number" || !ns) return "—";
    const date = new Date(ns / 1e6);
    return date.toLocaleTimeString([], { hour12: false });
  }

  function isoTime(ns) {
    return typeof ns === "number" && ns ? new Date(ns / 1e6).toISOString() : "";
  }

  function percent(fraction) {
    const value = Number(fraction);
    if (!Number.isFinite(value)) return "—";
    return (value * 100).toFixed(2) + " %";
  }

  // A valuation for the eye (two decimals, grouped); the exact decimal string stays in the element's title.
  function money(decimal) {
    const value = Number(decimal);
    if (!Number.isFinite(value)) return "—";
    return value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function isZero(decimal) {
    return decimal === null || decimal === undefined || Number(decimal) === 0;
  }

  function sideClass(side) {
    return side === "BUY" ? "buy" : side === "SELL" ? "sell" : "";
  }

  function age(ms) {
    if (ms < 1000) return "now";
    const seconds = Math.round(ms / 1000);
    if (seconds < 120) return seconds + " s ago";
    const minutes = Math.round(seconds / 60);
    return minutes < 120 ? minutes + " min ago" : Math.round(minutes / 60) + " h ago";
  }

  function showNotice(text, kind) {
    const notice = $("notice");
    notice.textContent = text;
    notice.className = "notice " + (kind || "");
    notice.hidden = !text;
  }

  function addMessage(text, kind, ts) {
    const list = $("messages");
    const item = el("li", null, kind || "");
    item.append(el("time", formatTime(ts || Date.now() * 1e6)), document.createTextNode(" " + text));
    list.prepend(item);
    while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
  }

  // Only the first argument of the detail FastAPI sends: a string, or a list of {loc, msg} for a bad body.
  function describeDetail(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((item) => {
          const loc = Array.isArray(item.loc) ? item.loc.filter((part) => part !== "body").join(".") : "";
          return (loc ? loc + ": " : "") + (item.msg || JSON.stringify(item));
        })
        .join("; ");
    }
    return detail === undefined ? "" : JSON.stringify(detail);
  }

  // ----------------------------------------------------------------------------------------------------- the API

  // Never rejects: {status, ok, data}; status 0 is a network failure. A 401 forgets the token and asks again.
  async function api(method, path, body) {
    if (!state.token) return { status: 401, ok: false, data: null };
    const headers = { Authorization: "Bearer " + state.token, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    let text = "";
    try {
      response = await fetch(path, init);
      text = await response.text();
    } catch (error) {
      return { status: 0, ok: false, data: { detail: "the engine did not answer (" + error.message + ")" } };
    }
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (error) {
        data = { detail: text.slice(0, 300) };
      }
    }
    if (response.status === 401) askToken("The engine refused the token: enter it again.");
    return { status: response.status, ok: response.ok, data };
  }

  // The engine's health answer, a 503's too ("stopping"; "stalled": its loop has not turned for 30 s), or null when
  // nothing answers.
  async function health() {
    try {
      const response = await fetch("/api/v1/health", { cache: "no-store" });
      const data = await response.json();
      return data && typeof data === "object" && typeof data.status === "string" ? data : null;
    } catch (error) {
      return null;
    }
  }

  // ------------------------------------------------------------------------------------------------- the token

  function takeTokenFromAddress() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get("token");
    if (token === null) return;
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + (url.search ? url.search : "") + url.hash);
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
  }

  function askToken(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    stop();
    $("login-reason").textContent = reason;
    $("login").hidden = false;
    $("dashboard").hidden = true;
    setStreamState("signed out", "bad");
    $("login-token").focus();
  }

  function onLogin(event) {
    event.preventDefault();
    const token = $("login-token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login-token").value = "";
    begin();
  }

  // --------------------------------------------------------------------------------------------------- running

  function begin() {
    state.token = sessionStorage.getItem(TOKEN_KEY);
    if (!state.token) {
      askToken("Paste the API token: the engine printed it on its standard error, api: http://HOST:PORT/?token=…");
      return;
    }
    $("login").hidden = true;
    $("dashboard").hidden = false;
    state.started = true;
    state.seq = null;
    loadAll();
    connect();
    state.pollTimer = window.setInterval(poll, POLL_MS);
  }

  function stop() {
    state.started = false;
    window.clearInterval(state.pollTimer);
    window.clearTimeout(state.reconnectTimer);
    for (const timer of Object.values(state.pending)) window.clearTimeout(timer);
    state.pending = {};
    if (state.socket) {
      const socket = state.socket;
      state.socket = null;
      socket.close();
    }
    state.socketOpen = false;
    state.stale = false; // signed out: the login form, not a stale dashboard
    document.body.classList.remove("stale");
    $("stale-banner").hidden = true;
  }

  function loadAll() {
    refreshHealth();
    refreshStatus();
    refreshVenue();
    refreshPnl(true);
    refreshRisk();
    refreshActors();
    refreshStreamedState();
  }

  // Every few seconds: what the stream does not carry; everything when the stream is down.
  function poll() {
    if (!state.started || document.hidden) return;
    refreshHealth();
    refreshStatus();
    refreshVenue();
    refreshPnl(false);
    refreshRisk();
    refreshActors();
    if (!state.socketOpen) refreshStreamedState();
  }

  function later(name, fn, ms) {
    if (state.pending[name]) return;
    state.pending[name] = window.setTimeout(() => {
      delete state.pending[name];
      if (state.started) fn();
    }, ms);
  }

  // Balances, positions, open orders and fills over REST: before the first snapshot, and while the stream is down.
  async function refreshStreamedState() {
    const [balances, positions, orders, fills] = await Promise.all([
      api("GET", "/api/v1/balances"),
      api("GET", "/api/v1/positions"),
      api("GET", "/api/v1/orders?state=open"),
      api("GET", "/api/v1/fills?limit=" + MAX_FILLS),
    ]);
    if (state.socketOpen && state.seq !== null) return; // the stream's snapshot is newer
    if (balances.ok) {
      state.balances = balances.data.balances || {};
      if (balances.data.equity) state.equity = balances.data.equity;
      renderBalances();
    }
    if (positions.ok) {
      state.positions = new Map((positions.data.positions || []).map((p) => [p.symbol, p]));
      renderPositions();
    }
    if (orders.ok) {
      state.orders = new Map((orders.data.items || []).map((o) => [o.cid, o]));
      renderOrders();
    }
    if (fills.ok) {
      state.fills = (fills.data.items || []).slice(0, MAX_FILLS);
      renderFills();
    }
  }

  async function refreshHealth() {
    const data = await health();
    if (!data || data.status !== "ok") {
      setBadge("mode", data ? "engine " + data.status : "engine unreachable", "bad");
      if (!data) markStale("the engine does not answer");
      else if (data.status === "stalled") {
        const seconds = Math.round(Number(data.loop_age_seconds) || 0);
        markStale("the engine has been busy or blocked for " + seconds + " s and answers nothing meanwhile");
      } else markStale("the engine is " + data.status);
      return;
    }
    setMode(data.mode);
    if (state.stale && state.socketOpen && state.seq !== null) markFresh(); // the stream stayed up meanwhile
  }

  // ------------------------------------------------------------------------------------------------ staleness

  // When the engine stops answering or its stream drops, nothing on the page is live any more: a banner says since
  // when, the panels are greyed, the venue and the actors read "unknown", and no order, cancel, HALT or Resume can
  // be sent until the stream's fresh snapshot (or the engine's answer with the stream still up) comes back.
  function markStale(why) {
    if (!state.started) return;
    const since = state.lastUpdate
      ? "the data below is as of " + new Date(state.lastUpdate).toISOString().slice(11, 19) + " UTC, its last update"
      : "no data has arrived yet";
    const banner = $("stale-banner");
    banner.textContent = "Stale: " + why + "; " + since + ". Orders, cancels and HALT are disabled until it is back.";
    banner.hidden = false;
    if (state.stale) return;
    state.stale = true;
    document.body.classList.add("stale");
    setBadge("venue-state", "venue unknown", "warn");
    $("clock-offset").hidden = true;
    if (state.actors) renderActors(state.actors);
    setActionsEnabled();
  }

  function markFresh() {
    if (!state.stale) return;
    state.stale = false;
    document.body.classList.remove("stale");
    $("stale-banner").hidden = true;
    if (state.actors) renderActors(state.actors);
    setActionsEnabled();
    refreshVenue();
    refreshActors();
  }

  function setActionsEnabled() {
    for (const id of ["halt-button", "resume-button", "order-submit"]) $(id).disabled = state.stale;
    for (const button of $("open-orders").querySelectorAll("button")) {
      if (button.textContent === "Cancel") button.disabled = state.stale;
    }
  }

  function setMode(mode) {
    const kind = mode === "live" ? "live" : mode === "paper" ? "warn" : "ok";
    setBadge("mode", mode || "?", kind);
    document.body.dataset.mode = mode || "";
  }

  function setBadge(id, text, kind) {
    const node = $(id);
    node.textContent = text;
    node.className = "badge " + (kind || "");
  }

  function setStreamState(text, kind) {
    setBadge("stream-state", text, kind);
  }

  async function refreshStatus() {
    const answer = await api("GET", "/api/v1/status");
    if (!answer.ok || !answer.data) return;
    const status = answer.data;
    if (status.mode) setMode(status.mode);
    const symbols = new Set(state.symbols);
    for (const name of Object.keys(status.reference_prices || {})) symbols.add(name);
    for (const venue of venueRows(status.venues)) symbols.add(venue.symbol);
    for (const name of status.symbols || []) symbols.add(name);
    setSymbols([...symbols]);  // the halted state comes from /api/v1/risk alone (use.halted)
    const info = $("api-info");
    info.replaceChildren();
    const apiStats = status.api || {};
    addPair(info, "API clients", apiStats.clients ?? "—");
    addPair(info, "Events dropped for slow clients", apiStats.dropped ?? "—");
    if (status.orders !== undefined) addPair(info, "Orders (all time)", status.orders);
    if (status.journal !== undefined) addPair(info, "Journal", status.journal || "off");
  }

  function setSymbols(symbols) {
    symbols.sort();
    if (symbols.join() === state.symbols.join()) return;
    state.symbols = symbols;
    const select = $("order-symbol");
    const chosen = select.value;
    select.replaceChildren(...symbols.map((symbol) => el("option", symbol)));
    if (symbols.includes(chosen)) select.value = chosen;
    renderQuote();
  }

  async function refreshVenue() {
    const answer = await api("GET", "/api/v1/venue");
    if (!answer.ok || !answer.data) return;
    renderVenue(answer.data);
  }

  async function refreshPnl(initial) {
    const last = state.series.length ? state.series[state.series.length - 1].ts : 0;
    const query = initial || !last ? "?limit=" + MAX_POINTS : "?since=" + Math.floor(last) + "&limit=" + MAX_POINTS;
    const answer = await api("GET", "/api/v1/pnl" + query);
    if (!answer.ok || !answer.data) return;
    const points = (answer.data.series || []).map((p) => ({
      ts: Number(p.ts),
      equity: Number(p.equity),
      drawdown: Number(p.drawdown),
    }));
    if (initial || !last) state.series = points;
    else for (const point of points) if (point.ts > last) state.series.push(point);
    if (state.series.length > MAX_POINTS) state.series.splice(0, state.series.length - MAX_POINTS);
    if (answer.data.equity) state.equity = answer.data.equity;
    renderEquity();
    renderChart();
  }

  async function refreshRisk() {
    const answer = await api("GET", "/api/v1/risk");
    if (!answer.ok || !answer.data) return;
    renderRisk(answer.data);
  }

  async function refreshActors() {
    const answer = await api("GET", "/api/v1/actors");
    if (!answer.ok || !answer.data) return;
    renderActors(answer.data);
  }

  // ------------------------------------------------------------------------------------------------ the stream

  function connect() {
    if (!state.started || state.socket) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    let url = scheme + "//" + window.location.host + "/api/v1/stream?token=" + encodeURIComponent(state.token);
    const queue = new URLSearchParams(window.location.search).get("queue"); // /?queue=N: this client's queue size
    if (queue && /^[0-9]{1,6}$/.test(queue)) url += "&queue=" + queue;
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    setStreamState("stream connecting", "warn");
    socket.onopen = () => {
      state.socketOpen = true;
      setStreamState("stream live", "ok");
    };
    socket.onmessage = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (error) {
        addMessage("the stream sent something that is not JSON", "bad");
        return;
      }
      const items = Array.isArray(data) ? data : [data];
      for (const item of items) receive(item);
      scheduleRender(); // once a frame however fast events come
    };
    socket.onclose = (event) => {
      if (state.socket !== socket) return; // closed on purpose
      state.socket = null;
      state.socketOpen = false;
      if (!state.started) return;
      if (event.code === 4401 || event.code === 1008) {
        // the token was refused: a REST call confirms and asks again (the stream's reason is not shown)
        refreshStatus();
        setStreamState("token refused", "bad");
        return;
      }
      if (event.code === 4400) {
        // the address's ?queue= was refused: asking again would be refused again; the reason names it
        setStreamState("stream refused", "bad");
        markStale("the engine refused the stream: " + (event.reason || "a bad request"));
        refreshStreamedState();
        return;
      }
      setStreamState("stream reconnecting", "bad");
      markStale("the engine's stream is down");
      refreshStreamedState();
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    window.clearTimeout(state.reconnectTimer);
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
    state.reconnectTimer = window.setTimeout(() => {
      if (state.started) connect();
    }, delay + Math.random() * 250);
  }

  function receive(item) {
    if (!item || typeof item !== "object") return;
    if (item.type === "snapshot") {
      applySnapshot(item);
      return;
    }
    if (item.type === "gap") {
      state.gaps = (state.gaps || 0) + 1;
      state.missed = (state.missed || 0) + (Number(item.missed) || 0);
      if (performance.now() - (state.lastGapMessage || -1e9) > 10000) {
        state.lastGapMessage = performance.now();
        const text = "the page fell behind: " + state.missed + " events missed so far; resynced from a fresh snapshot";
        addMessage(text, "warn");
      }
      return;
    }
    if (typeof item.seq === "number") {
      if (state.seq !== null && item.seq <= state.seq) return; // already in the snapshot
      state.seq = item.seq;
    }
    state.lastEventAt = performance.now();
    state.lastUpdate = Date.now();
    applyEvent(item);
  }

  function applySnapshot(snapshot) {
    state.seq = typeof snapshot.seq === "number" ? snapshot.seq : null;
    state.reconnectDelay = 500;
    state.lastEventAt = performance.now();
    state.lastUpdate = Date.now();
    markFresh();
    if (snapshot.mode) setMode(snapshot.mode);
    state.balances = snapshot.balances || {};
    if (snapshot.equity) state.equity = snapshot.equity;
    state.positions = new Map((snapshot.positions || []).map((p) => [p.symbol, p]));
    state.orders = new Map((snapshot.open_orders || []).map((o) => [o.cid, o]));
    state.fills = (snapshot.fills || []).slice().reverse().slice(0, MAX_FILLS);
    state.rejections = (snapshot.rejections || []).slice().reverse().slice(0, MAX_REJECTIONS);
    for (const [symbol, mark] of Object.entries(snapshot.marks || {})) {
      state.quotes[symbol] = Object.assign(state.quotes[symbol] || {}, { mark });
    }
    setSymbols([...new Set([...state.symbols, ...Object.keys(snapshot.marks || {})])]);
    state.dirty = { balances: true, positions: true, orders: true, fills: true, rejections: true, quote: true };
    renderAfterEvents();
    tickClock();
    later("pnl", () => refreshPnl(false), 400);
  }

  function markDirty(name) {
    state.dirty = state.dirty || {};
    state.dirty[name] = true;
  }

  function applyEvent(event) {
    switch (event.type) {
      case "market":
        if (event.kind === "book_top") {
          state.quotes[event.symbol] = { bid: event.bid, ask: event.ask };
        } else if (event.kind === "trade") {
          state.quotes[event.symbol] = Object.assign(state.quotes[event.symbol] || {}, { last: event.price });
        }
        markDirty("quote");
        break;
      case "account":
        state.balances = event.balances || {};
        markDirty("balances");
        later("pnl", () => refreshPnl(false), 400);
        break;
      case "position":
        if (event.symbol) state.positions.set(event.symbol, event);
        markDirty("positions");
        break;
      case "order_update":
        applyOrderUpdate(event);
        break;
      case "fill":
        state.fills.unshift(event);
        if (state.fills.length > MAX_FILLS) state.fills.length = MAX_FILLS;
        markDirty("fills");
        break;
      case "status":
        applyStatusEvent(event);
        break;
      case "error":
        addMessage((event.code || "error") + ": " + (event.message || ""), "bad", event.ts);
        break;
      default:
        break;
    }
  }

  function applyOrderUpdate(update) {
    const status = update.status;
    if (status === "REJECTED" || status === "CANCEL_REJECTED") {
      state.rejections.unshift(update);
      if (state.rejections.length > MAX_REJECTIONS) state.rejections.length = MAX_REJECTIONS;
      markDirty("rejections");
      later("risk", refreshRisk, 500);
    }
    // the order itself is unchanged: a refused cancel, or a refused new order that reused its client order id
    if (status === "CANCEL_REJECTED" || update.reason === "DUPLICATE_CLIENT_ORDER_ID") return;
    if (TERMINAL_STATUSES.has(status)) {
      state.orders.delete(update.cid);
    } else if (OPEN_STATUSES.has(status)) {
      const known = state.orders.get(update.cid) || {};
      state.orders.set(update.cid, Object.assign({}, known, update));
    }
    markDirty("orders");
  }

  function applyStatusEvent(event) {
    if (event.event === "circuit_breaker_tripped") {
      setHalted(true, event.reason || "");
      addMessage("trading halted: " + (event.reason || "circuit breaker"), "bad", event.ts);
      later("risk", refreshRisk, 300);
    } else if (typeof event.event === "string" && event.event.startsWith("venue_")) {
      const what = event.event.slice("venue_".length);
      addMessage((event.venue || "venue") + (event.symbol ? " " + event.symbol : "") + ": " + what +
        (event.detail ? " (" + event.detail + ")" : ""), ["connected", "reconciled", "trading"].includes(what) ? "" : "warn",
        event.ts);
      later("venue", refreshVenue, 300);
    } else if (event.state === "stopped") {
      setStreamState("engine stopped", "bad");
      addMessage("the engine stopped", "bad", event.ts);
    }
  }

  function scheduleRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    window.requestAnimationFrame(() => {
      state.renderQueued = false;
      renderAfterEvents();
    });
  }

  function renderAfterEvents() {
    const dirty = state.dirty || {};
    state.dirty = {};
    if (dirty.balances) renderBalances();
    if (dirty.positions) renderPositions();
    if (dirty.orders) renderOrders();
    if (dirty.fills) renderFills();
    if (dirty.rejections) renderRejections();
    if (dirty.quote) renderQuote();
  }

  // --------------------------------------------------------------------------------------------------- render

  function addPair(list, term, value, className) {
    const wrap = el("div");
    wrap.append(el("dt", term), el("dd", value, className));
    list.append(wrap);
  }

  function renderBalances() {
    const body = $("balances").tBodies[0];
    const rows = Object.keys(state.balances)
      .sort()
      .map((asset) => {
        const balance = state.balances[asset] || {};
        const row = el("tr");
        row.dataset.asset = asset;
        const free = cell(balance.free, "num");
        free.dataset.field = "free";
        const locked = cell(balance.locked, "num");
        locked.dataset.field = "locked";
        row.append(cell(asset), free, locked);
        return row;
      });
    body.replaceChildren(...rows);
    renderEquity();
  }

  function renderEquity() {
    const equity = state.equity;
    if (!equity) return;
    const suffix = equity.asset ? " " + equity.asset : "";
    const value = $("equity-value");
    const notes = [];
    if (equity.complete === false) notes.push("some assets unpriced");
    if (equity.unvalued && equity.unvalued.length) notes.push(equity.unvalued.join(", ") + " not valued");
    value.textContent = money(equity.equity) + suffix + (notes.length ? " (" + notes.join("; ") + ")" : "");
    value.title = equity.equity + suffix;
    const peak = $("equity-peak");
    peak.textContent = money(equity.peak) + suffix;
    peak.title = equity.peak + suffix;
    $("equity-drawdown").textContent = percent(equity.drawdown);
  }

  function renderPositions() {
    const body = $("positions").tBodies[0];
    const rows = [...state.positions.values()]
      .sort((a, b) => String(a.symbol).localeCompare(String(b.symbol)))
      .map((p) => {
        const row = el("tr", null, isZero(p.qty) ? "flat" : "");
        row.dataset.symbol = p.symbol;
        const unrealized = Number(p.unrealized_pnl);
        row.append(
          cell(p.symbol),
          cell(p.qty, "num"),
          cell(p.avg_entry_price, "num"),
          cell(p.mark_price, "num"),
          cell(p.unrealized_pnl, "num " + (unrealized > 0 ? "up" : unrealized < 0 ? "down" : "")),
          cell(p.realized_pnl, "num"),
        );
        return row;
      });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(6, "no positions")]));
  }

  function emptyRow(columns, text) {
    const row = el("tr", null, "empty");
    const only = el("td", text);
    only.colSpan = columns;
    row.append(only);
    return row;
  }

  function renderOrders() {
    const body = $("open-orders").tBodies[0];
    const rows = [...state.orders.values()]
      .sort((a, b) => (Number(b.ts) || 0) - (Number(a.ts) || 0))
      .map((order) => {
        const row = el("tr");
        row.dataset.cid = order.cid;
        const button = el("button", "Cancel", "small");
        button.type = "button";
        button.disabled = state.stale;
        button.dataset.cid = order.cid;
        button.addEventListener("click", () => cancelOrder(order.cid, button));
        const action = el("td");
        action.append(button);
        row.append(
          cell(order.cid, "cid"),
          cell(order.symbol),
          cell(order.side, sideClass(order.side)),
          cell(order.order_type),
          cell(order.price, "num"),
          cell(order.qty, "num"),
          cell(order.filled_qty, "num"),
          cell(order.status),
          action,
        );
        return row;
      });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(9, "no open orders")]));
    $("open-count").textContent = String(state.orders.size);
  }

  function renderFills() {
    const body = $("fills").tBodies[0];
    const rows = state.fills.map((fill) => {
      const row = el("tr");
      row.dataset.cid = fill.cid;
      const time = cell(formatTime(fill.ts));
      time.title = isoTime(fill.ts);
      row.append(
        time,
        cell(fill.cid, "cid"),
        cell(fill.symbol),
        cell(fill.side, sideClass(fill.side)),
        cell(fill.price, "num"),
        cell(fill.qty, "num"),
        cell(fill.fee === undefined ? "" : fill.fee + " " + (fill.fee_asset || ""), "num"),
        cell(fill.liquidity),
      );
      return row;
    });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(8, "no fills yet")]));
  }

  function renderRejections() {
    const body = $("rejections").tBodies[0];
    const rows = state.rejections.map((update) => {
      const row = el("tr");
      row.dataset.cid = update.cid || "";
      const time = cell(formatTime(update.ts));
      time.title = isoTime(update.ts);
      const reason = cell(update.reason, "reason");
      if (update.detail) reason.append(el("small", update.detail));
      reason.title = [update.side, update.qty, update.symbol, update.price ? "@ " + update.price : ""].join(" ").trim();
      row.append(time, cell(update.cid, "cid"), reason);
      return row;
    });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(3, "none")]));
  }

  function renderQuote() {
    const symbol = $("order-symbol").value;
    const quote = state.quotes[symbol];
    const node = $("order-quote");
    if (!symbol || !quote) {
      node.textContent = symbol ? symbol + ": no quote yet" : "—";
      return;
    }
    const parts = [];
    if (quote.bid && quote.ask) parts.push("bid " + quote.bid + " / ask " + quote.ask);
    if (quote.last) parts.push("last " + quote.last);
    if (!parts.length && quote.mark) parts.push("mark " + quote.mark);
    node.textContent = symbol + ": " + parts.join(", ");
  }

  function renderRisk(risk) {
    const use = risk.use || {};
    const list = $("risk-use");
    list.replaceChildren();
    const halted = Boolean(use.halted);
    addPair(list, "Trading", halted ? "HALTED" : "allowed", halted ? "down" : "up");
    addPair(list, "Open orders", use.open_orders ?? "—");
    const breaker = use.circuit_breaker || {};
    const tripped = Object.entries(breaker).filter(([, value]) => value);
    const trippedText = tripped.map(([account, why]) => account + ": " + describe(why)).join(", ");
    addPair(list, "Circuit breaker", trippedText || "armed");
    setHalted(halted, tripped.map(([, v]) => describe(v)).join(", "));

    const positions = $("risk-positions");
    positions.replaceChildren();
    for (const [symbol, info] of Object.entries(use.positions || {})) {
      const line = el("div", null, "usage");
      const limit = info.max_position ? " of " + info.max_position : " (no limit)";
      const label = el("span", symbol + " " + info.qty + limit);
      const bar = el("span", null, "bar");
      const fill = el("span", null, "bar-fill");
      const known = info.used !== null && info.used !== undefined;
      const used = known ? Math.min(1, Math.abs(Number(info.used))) : 0;
      fill.style.width = (used * 100).toFixed(1) + "%";
      if (used > 0.8) fill.classList.add("hot");
      bar.append(fill);
      line.append(label, bar, el("span", known ? percent(info.used) : "", "meta"));
      positions.append(line);
    }

    const limits = $("risk-limits");
    limits.replaceChildren();
    for (const [name, value] of Object.entries(risk.limits || {})) {
      addPair(limits, name.replace(/_/g, " "), describe(value));
    }

    if (Array.isArray(risk.rejections)) {
      const newestFirst = risk.rejections.slice().sort((a, b) => (Number(b.ts) || 0) - (Number(a.ts) || 0));
      state.rejections = newestFirst.slice(0, MAX_REJECTIONS);
      renderRejections();
    }
  }

  // A limit or a status value as one line of text (maps as "key value, ...").
  function describe(value) {
    if (value === null || value === undefined || value === "") return "—";
    if (Array.isArray(value)) return value.map(describe).join(", ") || "—";
    if (typeof value === "object") {
      const entries = Object.entries(value);
      return entries.length ? entries.map(([k, v]) => k + " " + describe(v)).join(", ") : "—";
    }
    return String(value);
  }

  function renderActors(data) {
    state.actors = data;
    $("engine-kind").textContent = data.engine || "";
    const body = $("actors").tBodies[0];
    const rows = Object.entries(data.actors || {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, actor]) => {
        const row = el("tr");
        row.dataset.actor = name;
        const component = cell(name);
        if (actor.last_error) component.append(el("small", actor.last_error, "error-text"));
        row.append(
          component,
          state.stale ? cell("unknown", "stale") : cell(actor.alive ? "alive" : "down", actor.alive ? "up" : "down"),
          cell(actor.inbox_depth, "num"),
          cell(actor.restarts, "num"),
        );
        return row;
      });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(4, "no components reported")]));
  }

  function renderVenue(data) {
    if (data.mode) setMode(data.mode);
    const container = $("venues");
    container.replaceChildren();
    const connections = [];
    let offset = null;

    const marketData = data.market_data;
    if (marketData && typeof marketData === "object") {
      connections.push("market data " + (marketData.state || "?"));
      if (typeof marketData.clock_offset_ms === "number") offset = marketData.clock_offset_ms;
      const list = el("dl", null, "kv");
      addPair(list, "Market data", (marketData.venue || "") + " " + (marketData.state || "?"));
      addPair(list, "Reconnects", marketData.reconnects ?? "—");
      const ms = marketData.clock_offset_ms;
      addPair(list, "Clock offset", typeof ms === "number" ? ms + " ms" : "—");
      const ages = Object.values(marketData.last_event_age_ms || {}).filter((v) => typeof v === "number");
      if (ages.length) addPair(list, "Oldest stream age", Math.max(...ages) + " ms");
      container.append(list);
    }

    const trading = data.trading;
    if (trading && typeof trading === "object") {
      connections.push("trading " + (trading.state || "?") + (trading.ready === false ? " (not ready)" : ""));
      const clock = trading.clock || {};
      if (typeof clock.offset_ms === "number") offset = clock.offset_ms;
      const list = el("dl", null, "kv");
      addPair(list, "Trading", (trading.venue || "") + " " + (trading.state || "?"));
      addPair(list, "Ready", trading.ready ? "yes" : describe(trading.not_ready || "no"));
      addPair(list, "Clock offset", typeof clock.offset_ms === "number" ? clock.offset_ms + " ms" : "—");
      const windows = (trading.rate_limits && trading.rate_limits.windows) || [];
      for (const window_ of windows) {
        const of = window_.limit ? " of " + window_.limit : "";
        addPair(list, "Weight " + window_.type + " / " + window_.interval, (window_.used ?? "?") + of);
      }
      container.append(list);
    }

    const table = el("table");
    const head = el("tr");
    for (const title of ["Symbol", "Venue", "State", "Resting", "Trades"]) head.append(el("th", title));
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    const names = new Set();
    for (const venue of venueRows(data.venues)) {
      names.add(venue.venue);
      const row = el("tr");
      row.dataset.symbol = venue.symbol;
      row.append(cell(venue.symbol), cell(venue.venue), cell(venue.state, venue.bad ? "down" : ""),
        cell(venue.resting, "num"), cell(venue.trades, "num"));
      table.tBodies[0].append(row);
    }
    if (table.tBodies[0].rows.length) {
      const wrap = el("div", null, "scroll");
      wrap.append(table);
      container.append(wrap);
    }
    if (!connections.length && names.size) {
      connections.push([...names].join(", ") + (names.has("SIM") ? " simulated" : ""));
    }
    const text = connections.join(" · ") || "no venue";
    const bad = /disconnect|closed|error|stale|down|connecting/i.test(text) || (trading && trading.ready === false);
    if (state.stale) return; // an answer from before the engine went away: the badge stays "venue unknown"
    setBadge("venue-state", text, bad ? "bad" : "ok");
    const clock = $("clock-offset");
    clock.hidden = offset === null; // a simulated venue has no clock of its own
    clock.textContent = offset === null ? "" : "clock offset " + offset + " ms";
  }

  // STATUS "venues" as one row per symbol: the single-process engine keys them by symbol; the actor engine by venue
  // actor, each with its symbols' venues inside ("venues") and the actor's own state (restarted, unacknowledged).
  function venueRows(venues) {
    const rows = [];
    const add = (key, venue, actor) => {
      let state = venue.state || (venue.attached ? "attached" : venue.venue === "SIM" ? "simulated" : "—");
      let bad = false;
      if (actor && actor.restarted) {
        state += ", actor restarted";
        bad = true;
      }
      if (actor && actor.unacked) state += ", " + actor.unacked + " batches unacknowledged";
      rows.push({
        symbol: venue.symbol || key,
        venue: venue.venue || "—",
        state,
        bad,
        resting: venue.resting_orders,
        trades: venue.trades,
      });
    };
    for (const [key, venue] of Object.entries(venues || {})) {
      if (!venue || typeof venue !== "object") continue;
      if (venue.venues && typeof venue.venues === "object") {
        for (const [inner, one] of Object.entries(venue.venues)) {
          if (one && typeof one === "object") add(inner, one, venue);
        }
      } else {
        add(key, venue, null);
      }
    }
    return rows.sort((a, b) => a.symbol.localeCompare(b.symbol));
  }

  function setHalted(halted, reason) {
    state.halted = halted;
    state.haltReason = reason || "";
    const badge = $("halt-state");
    badge.hidden = !halted;
    badge.textContent = halted ? "HALTED" + (reason ? ": " + reason : "") : "";
    badge.className = "badge bad";
    document.body.classList.toggle("halted", halted);
    $("resume-button").hidden = !halted;
    $("halt-button").disabled = state.stale;
  }

  // ------------------------------------------------------------------------------------------- equity chart

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A line of equity on top, the drawdown below it (filled down from zero), both against time.
  function renderChart() {
    const box = $("chart");
    const points = state.series;
    const width = Math.max(260, Math.round(box.clientWidth || 600));
    const height = width < 500 ? 220 : 260;
    const pad = { left: 8, right: 8, top: 18, bottom: 18 };
    const split = Math.round((height - pad.top - pad.bottom) * 0.68) + pad.top; // equity above, drawdown below
    const gap = 14;
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, width: "100%", height, class: "chart-svg" });
    root.append(svg("title", {}, "Equity and drawdown"));
    if (points.length < 1) {
      const empty = { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" };
      root.append(svg("text", empty, "no equity points yet"));
      box.replaceChildren(root);
      return;
    }
    const t0 = points[0].ts;
    const t1 = points[points.length - 1].ts;
    const span = t1 - t0 || 1;
    let low = Infinity;
    let high = -Infinity;
    let deepest = 0;
    for (const p of points) {
      low = Math.min(low, p.equity);
      high = Math.max(high, p.equity);
      deepest = Math.max(deepest, p.drawdown);
    }
    if (high === low) {
      const margin = Math.abs(high) * 0.001 || 1;
      high += margin;
      low -= margin;
    }
    const x = (ts) => pad.left + ((ts - t0) / span) * (width - pad.left - pad.right);
    const yEquity = (value) => pad.top + (1 - (value - low) / (high - low)) * (split - pad.top);
    const ddTop = split + gap;
    const ddDepth = Math.max(deepest, 0.0001);
    const yDrawdown = (value) => ddTop + (value / ddDepth) * (height - pad.bottom - ddTop);

    const single = points.length === 1;
    const line = points.map((p) => x(p.ts).toFixed(1) + "," + yEquity(p.equity).toFixed(1));
    if (single) line.push((width - pad.right).toFixed(1) + "," + yEquity(points[0].equity).toFixed(1));
    root.append(svg("polyline", { points: line.join(" "), class: "equity-line" }));

    const area = [x(t0).toFixed(1) + "," + ddTop];
    for (const p of points) area.push(x(p.ts).toFixed(1) + "," + yDrawdown(p.drawdown).toFixed(1));
    area.push((single ? width - pad.right : x(t1)).toFixed(1) + "," + ddTop);
    root.append(svg("polygon", { points: area.join(" "), class: "drawdown-area" }));
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: ddTop, y2: ddTop, class: "zero" }));

    const asset = state.equity && state.equity.asset ? " " + state.equity.asset : "";
    const label = (value) => value.toLocaleString(undefined, { maximumFractionDigits: 2 });
    const range = "high " + label(high) + " · low " + label(low) + asset;
    root.append(svg("text", { x: pad.left, y: pad.top - 6, class: "axis" }, range));
    const middle = { x: width / 2, y: height - 4, "text-anchor": "middle", class: "axis" };
    root.append(svg("text", middle, "drawdown, max " + percent(deepest)));
    root.append(svg("text", { x: pad.left, y: height - 4, class: "axis" }, formatTime(t0)));
    const right = { x: width - pad.right, y: height - 4, "text-anchor": "end", class: "axis" };
    root.append(svg("text", right, formatTime(t1)));
    box.replaceChildren(root);
  }

  // ------------------------------------------------------------------------------------------------- actions

  async function placeOrder(event) {
    event.preventDefault();
    if (state.stale) return; // Enter in a field: the disabled button does not stop every browser
    const result = $("order-result");
    const market = $("order-type").value === "MARKET";
    const body = {
      symbol: $("order-symbol").value,
      side: $("order-side").value,
      qty: $("order-qty").value.trim(),
      price: market ? null : $("order-price").value.trim(),
      tif: $("order-tif").value,
    };
    const cid = $("order-cid").value.trim();
    if (cid) body.cid = cid;
    if (!market && !body.price) {
      showResult(result, "bad", "A LIMIT order needs a price (or choose MARKET).");
      return;
    }
    const button = $("order-submit");
    button.disabled = true;
    showResult(result, "", "sending…");
    const answer = await api("POST", "/api/v1/orders", body);
    button.disabled = state.stale;
    const data = answer.data || {};
    if (answer.status === 201 || (answer.ok && data.accepted)) {
      const events = data.events || [];
      const last = [...events].reverse().find((e) => e.type === "order_update");
      const fills = events.filter((e) => e.type === "fill");
      let text = "Accepted " + body.side + " " + body.qty + " " + body.symbol + " (cid " + data.cid + ")";
      if (last) text += ": " + last.status;
      if (fills.length) text += ", filled " + fills.map((f) => f.qty + " @ " + f.price).join(", ");
      showResult(result, "ok", text);
      $("order-cid").value = "";
    } else if (answer.status === 409) {
      const rejected = (data.events || []).find((e) => e.type === "order_update" && e.status === "REJECTED");
      const reason = rejected ? reasonOf(rejected) : describeDetail(data.detail);
      showResult(result, "bad", "Rejected (cid " + (data.cid || "?") + "): " + reason);
    } else if (answer.status === 401) {
      // askToken has taken over the page
    } else {
      showResult(result, "bad", "Not sent (HTTP " + (answer.status || "error") + "): " + describeDetail(data.detail));
    }
    later("risk", refreshRisk, 300);
  }

  function reasonOf(update) {
    return update.reason + (update.detail ? ": " + update.detail : "");
  }

  function failure(what, answer) {
    return what + " failed (HTTP " + (answer.status || "error") + "): " + describeDetail((answer.data || {}).detail);
  }

  function showResult(node, kind, text) {
    node.textContent = text;
    node.className = "result " + kind;
  }

  async function cancelOrder(cid, button) {
    button.disabled = true;
    button.textContent = "Cancelling…";
    const answer = await api("DELETE", "/api/v1/orders/" + encodeURIComponent(cid));
    const data = answer.data || {};
    if (answer.status === 200 && data.cancelled) {
      state.orders.delete(cid);
      renderOrders();
      showNotice("Cancelled " + cid + ".", "ok");
      return;
    }
    if (answer.status === 202) {
      // the venue has not answered yet: the stream's order_update removes the row when it does
      button.textContent = "Cancel sent";
      showNotice("Cancel of " + cid + " sent; waiting for the venue.", "");
      return;
    }
    button.disabled = state.stale;
    button.textContent = "Cancel";
    if (answer.status === 401) return;
    const rejected = (data.events || []).find((e) => e.type === "order_update");
    const why = rejected && rejected.reason ? reasonOf(rejected) : describeDetail(data.detail);
    showNotice("Cancel of " + cid + " refused (HTTP " + (answer.status || "error") + "): " + why, "bad");
    if (answer.status === 404) {
      state.orders.delete(cid);
      renderOrders();
    }
  }

  // Two presses within five seconds: a stray tap never cancels every order.
  async function halt() {
    const button = $("halt-button");
    const now = Date.now();
    if (now > state.haltArmedUntil) {
      state.haltArmedUntil = now + 5000;
      button.textContent = "Confirm HALT";
      button.classList.add("armed");
      window.setTimeout(() => {
        if (Date.now() >= state.haltArmedUntil) disarmHalt();
      }, 5100);
      return;
    }
    disarmHalt();
    button.disabled = true;
    const answer = await api("POST", "/api/v1/halt");
    button.disabled = state.stale;
    if (answer.ok) {
      const cancelled = (answer.data.events || []).filter((e) => e.type === "order_update" && e.status === "CANCELLED");
      const halted = Boolean(answer.data.halted);  // a 202: the engine had not confirmed the halt yet
      setHalted(halted, "kill switch");
      for (const update of cancelled) state.orders.delete(update.cid);
      renderOrders();
      const text = halted
        ? "Trading halted: " + cancelled.length + " open orders cancelled; risk-increasing orders are refused until Resume."
        : "HALT sent; the engine has not confirmed it yet.";
      showNotice(text, "bad");
    } else if (answer.status !== 401) {
      showNotice(failure("HALT", answer), "bad");
    }
    later("risk", refreshRisk, 200);
  }

  function disarmHalt() {
    state.haltArmedUntil = 0;
    const button = $("halt-button");
    button.textContent = "HALT";
    button.classList.remove("armed");
  }

  async function resume() {
    const button = $("resume-button");
    button.disabled = true;
    const answer = await api("POST", "/api/v1/resume");
    button.disabled = state.stale;
    if (answer.ok) {
      const halted = Boolean(answer.data.halted);  // a 202: the engine had not confirmed the resume yet
      setHalted(halted, halted ? "kill switch" : "");
      showNotice(halted ? "Resume sent; the engine has not confirmed it yet." : "Trading resumed.", halted ? "bad" : "ok");
    } else if (answer.status !== 401) {
      showNotice(failure("Resume", answer), "bad");
    }
    later("risk", refreshRisk, 200);
  }

  function onTypeChange() {
    const market = $("order-type").value === "MARKET";
    const price = $("order-price");
    price.disabled = market;
    price.placeholder = market ? "market" : "limit price";
    if (market) price.value = "";
  }

  function tickClock() {
    const node = $("last-event");
    const since = state.lastEventAt ? age(performance.now() - state.lastEventAt) : "—";
    node.textContent = "last event " + since;
  }

  function init() {
    $("login").addEventListener("submit", onLogin);
    $("order-form").addEventListener("submit", placeOrder);
    $("order-type").addEventListener("change", onTypeChange);
    $("order-symbol").addEventListener("change", renderQuote);
    $("halt-button").addEventListener("click", halt);
    $("resume-button").addEventListener("click", resume);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(renderChart, 150);
    });
    window.setInterval(tickClock, 1000);
    onTypeChange();
    renderChart();
    renderOrders();
    renderFills();
    renderPositions();
    renderRejections();
    takeTokenFromAddress();
    begin();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

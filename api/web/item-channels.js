// Item Channels — a dependency-free browser client (ES module).
//
//   import { Client } from "/static/item-channels.js";
//   const client = new Client();                      // same origin as the page
//   await client.login("alice", "correct horse battery");
//   const channel = client.channel("board");          // connects at once
//   channel.addEventListener("message", (e) => show(e.detail));   // {seq, sender, data, ts, ...}
//   channel.addEventListener("refused", (e) => alert(e.detail.reason));
//   await channel.publish({ text: "hi" });           // resolves with the stored seq
//
// Item state. `client.channel(id, { state: true })` opens the socket with `?state=1`:
// `itemstate` events carry {version, state, sender?, snapshot} (the snapshot after every
// (re)connect, then each change in version order), `channel.itemState` holds the latest,
// and `channel.patch(ops)` / `channel.action({move: 4})` resolve with the new version once
// stored, or reject with an ApiError whose `status` is the error code (`conflict`,
// `illegal`, `bad_request`, `forbidden`, `too_large`) and `message` the server's detail.
// (`channel.state` and the `state` event are the connection's: idle, open, ...)
//
// Many items on one socket. `client.multiplex()` opens `/ws` once; `mux.subscribe(id,
// {since, state})` returns a Subscription with the same events as a Channel (`message`,
// `presence`, `itemstate`, plus `unsubscribed` and `refused`), `mux.publish(id, data)`,
// `mux.patch(id, ops)` and `mux.action(id, action)` resolve once acknowledged, and after
// every reconnect each item is subscribed again with `since=<its last seq>`.
//
// Credentials. REST calls carry `Authorization: Bearer <access token>` (and the
// `session` cookie set by /auth/login travels too). Every connection attempt, reconnects
// included, first asks POST /auth/ws-ticket {"item_id"} for a single-use ticket and
// connects to `/items/{item_id}/ws?token=<ticket>` (`/ws` asks for a ticket without an
// item): long-lived credentials never appear in URLs. A ticket's socket lives as long as
// its session, so nothing needs refreshing.
//
// The alternative, `auth: "subprotocol"`, sends the access token in the handshake's
// subprotocol list instead of the URL:
//
//     new WebSocket(url, ["bearer", accessToken]);   // the server answers "bearer"
//
// Such a socket closes with 1008 `token expired` at the token's `exp`, so the client
// sends `{"type":"refresh","token"}` on it whenever it refreshes the access token
// (POST /auth/refresh, a minute or so before expiry). `auth: "token"` does the same with
// `?token=<access token>` (avoid: URLs end up in logs).
//
// Reconnects. Closes 1006 (network), 1011, 1012 (service restart), 1013 (slow consumer,
// broker unavailable) and failed ticket requests are retried with exponential backoff
// and jitter, resuming with `since=<last seq seen>`; message events are deduplicated by
// seq, so each seq is delivered exactly once and in order. A 1008 refusal is never
// retried as is: `token expired`, `session revoked`, `invalid token` and `invalid session`
// are retried once after re-authenticating (a token refresh through the session cookie);
// `forbidden` and `origin not allowed`, or a reason that comes back right after a
// re-authentication, end the channel with a `refused` event carrying the reason.

const JSON_HEADERS = { "Content-Type": "application/json" };

/** The reasons after which retrying cannot help. */
export const FINAL_REASONS = new Set(["forbidden", "origin not allowed"]);
/** The reasons a re-authentication may cure (one retry after it). */
export const REAUTH_REASONS = new Set([
  "token expired",
  "session revoked",
  "invalid token",
  "invalid session",
  "missing credentials",
]);

/** A REST call that did not succeed: `status` and the server's `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

/** Exponential backoff with jitter: 50–100 % of min(max, base · 2^attempt) milliseconds. */
export function backoffDelay(attempt, base = 500, max = 30000) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return ceiling * (0.5 + Math.random() / 2);
}

function wsBase(baseUrl) {
  const url = new URL(baseUrl || window.location.href, window.location.href);
  return `${url.protocol === "https:" ? "wss:" : "ws:"}//${url.host}`;
}

/**
 * The REST side: login, tokens kept fresh, items, members, messages, presence.
 * Events (EventTarget): `auth` {user} after login or session resume, `logout`,
 * `token` {expiresIn} after each refresh.
 */
export class Client extends EventTarget {
  constructor({ baseUrl = "", refreshMargin = 0.8 } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.user = null;
    this.accessToken = null;
    this.tokenExpiresAt = 0; // ms since epoch
    this.refreshMargin = refreshMargin; // refresh after this fraction of the lifetime (≤ 1 min early)
    this._refreshTimer = null;
    this._refreshing = null;
    this._sockets = new Set(); // open Channel/Monitor objects, told about fresh tokens
  }

  // Identity.

  async register(username, password) {
    return this._json("POST", "/auth/register", { username, password }, { auth: false });
  }

  async login(username, password) {
    const body = await this._json("POST", "/auth/login", { username, password }, { auth: false });
    this._setToken(body.access_token, body.expires_in);
    this.user = body.user;
    this.dispatchEvent(new CustomEvent("auth", { detail: { user: this.user } }));
    return this.user;
  }

  /** Resume a session from its (HttpOnly) cookie, e.g. after a page reload; null if none. */
  async resume() {
    try {
      await this.refresh();
      this.user = await this._json("GET", "/auth/me");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return null;
      throw err;
    }
    this.dispatchEvent(new CustomEvent("auth", { detail: { user: this.user } }));
    return this.user;
  }

  async logout() {
    try {
      await this._request("POST", "/auth/logout");
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) throw err;
    } finally {
      this._forget();
      for (const socket of [...this._sockets]) socket.close();
      this.dispatchEvent(new Event("logout"));
    }
  }

  /** A fresh access token of the same session (POST /auth/refresh), shared by concurrent callers. */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = (async () => {
        // A token still valid authenticates the call; otherwise the session cookie does.
        const useToken = this.accessToken && Date.now() < this.tokenExpiresAt - 1000;
        const body = await this._json("POST", "/auth/refresh", undefined, {
          auth: useToken,
          retry: false,
        });
        this._setToken(body.access_token, body.expires_in);
        for (const socket of this._sockets) socket._tokenRefreshed(body.access_token);
        this.dispatchEvent(new CustomEvent("token", { detail: { expiresIn: body.expires_in } }));
        return body.access_token;
      })().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  /** A single-use channel ticket, limited to `itemId` when given. */
  async ticket(itemId) {
    const body = itemId === undefined ? undefined : { item_id: itemId };
    return (await this._json("POST", "/auth/ws-ticket", body)).token;
  }

  // Items, members, messages.

  listItems() {
    return this._json("GET", "/items");
  }

  createItem(name, id, kind) {
    const body = { name };
    if (id) body.id = id;
    if (kind) body.kind = kind;
    return this._json("POST", "/items", body);
  }

  kinds() {
    return this._json("GET", "/kinds");
  }

  getState(itemId) {
    return this._json("GET", `/items/${encodeURIComponent(itemId)}/state`);
  }

  /** `change` is {ops: [...]} for a document or {action: {...}} for a game. */
  changeState(itemId, change) {
    return this._json("POST", `/items/${encodeURIComponent(itemId)}/state`, change);
  }

  getItem(itemId) {
    return this._json("GET", `/items/${encodeURIComponent(itemId)}`);
  }

  deleteItem(itemId) {
    return this._json("DELETE", `/items/${encodeURIComponent(itemId)}`);
  }

  members(itemId) {
    return this._json("GET", `/items/${encodeURIComponent(itemId)}/members`);
  }

  share(itemId, username, role = "writer") {
    const path = `/items/${encodeURIComponent(itemId)}/members/${encodeURIComponent(username)}`;
    return this._json("PUT", path, { role });
  }

  unshare(itemId, username) {
    const path = `/items/${encodeURIComponent(itemId)}/members/${encodeURIComponent(username)}`;
    return this._json("DELETE", path);
  }

  messages(itemId, { after = 0, limit = 100 } = {}) {
    const q = new URLSearchParams({ after: String(after), limit: String(limit) });
    return this._json("GET", `/items/${encodeURIComponent(itemId)}/messages?${q}`);
  }

  postMessage(itemId, data) {
    return this._json("POST", `/items/${encodeURIComponent(itemId)}/messages`, { data });
  }

  presence(itemId) {
    return this._json("GET", `/items/${encodeURIComponent(itemId)}/presence`);
  }

  // Sockets.

  /** The channel of one item; connects at once unless `{connect: false}`. */
  channel(itemId, options = {}) {
    const channel = new Channel(this, itemId, options);
    if (options.connect !== false) channel.connect();
    return channel;
  }

  /** One socket for many items (`/ws`); connects at once unless `{connect: false}`. */
  multiplex(options = {}) {
    const mux = new Multiplex(this, options);
    if (options.connect !== false) mux.connect();
    return mux;
  }

  /** The `/monitor/ws` stats stream; connects at once unless `{connect: false}`. */
  monitor(options = {}) {
    const monitor = new Monitor(this, options);
    if (options.connect !== false) monitor.connect();
    return monitor;
  }

  wsUrl(path, query) {
    const q = new URLSearchParams(query);
    const qs = q.toString();
    return `${wsBase(this.baseUrl)}${path}${qs ? `?${qs}` : ""}`;
  }

  // Plumbing.

  _setToken(token, expiresIn) {
    this.accessToken = token;
    this.tokenExpiresAt = Date.now() + expiresIn * 1000;
    clearTimeout(this._refreshTimer);
    // Refresh well before expiry; on failure try again a little later until it expires.
    const schedule = (delay) => {
      this._refreshTimer = setTimeout(() => {
        this.refresh().catch((err) => {
          if (err instanceof ApiError && err.status === 401) {
            this._forget();
            this.dispatchEvent(new Event("logout"));
          } else if (Date.now() < this.tokenExpiresAt) {
            schedule(Math.min(10000, Math.max(1000, (this.tokenExpiresAt - Date.now()) / 4)));
          }
        });
      }, delay);
    };
    // Ahead of expiry by a fifth of the lifetime (at most a minute), plus a second for
    // the server's whole-second `exp`.
    const lead = Math.min(60, expiresIn * (1 - this.refreshMargin)) + 1;
    schedule(Math.max(500, (expiresIn - lead) * 1000));
  }

  _forget() {
    clearTimeout(this._refreshTimer);
    this.accessToken = null;
    this.tokenExpiresAt = 0;
    this.user = null;
  }

  async _request(method, path, body, { auth = true, retry = true } = {}) {
    const headers = body === undefined ? {} : { ...JSON_HEADERS };
    if (auth && this.accessToken) headers.Authorization = `Bearer ${this.accessToken}`;
    const response = await fetch(this.baseUrl + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && auth && retry && this.accessToken) {
      // The token may have expired while the page slept: refresh through the cookie, once.
      try {
        this.accessToken = null;
        await this.refresh();
      } catch {
        throw await errorOf(response);
      }
      return this._request(method, path, body, { auth, retry: false });
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async _json(method, path, body, options) {
    const response = await this._request(method, path, body, options);
    if (response.status === 204) return null;
    return response.json();
  }
}

async function errorOf(response) {
  let detail = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.detail !== undefined) detail = body.detail;
  } catch {
    // not JSON
  }
  if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return new ApiError(response.status, detail);
}

/**
 * One reconnecting socket: tickets, backoff, 1008 handling. Subclasses name the URL
 * and handle frames.
 *
 * Events: `state` {state, attempt?, delay?} with state one of connecting, open,
 * reconnecting, refused, closed; `refused` {code, reason, needsLogin}; `frame` (every
 * parsed frame).
 */
class ReconnectingSocket extends EventTarget {
  constructor(client, { auth = "ticket", backoffBase = 500, backoffMax = 30000, pingEvery = 25000 } = {}) {
    super();
    this.client = client;
    this.auth = auth; // "ticket" (default), "subprotocol" or "token"
    this.backoffBase = backoffBase;
    this.backoffMax = backoffMax;
    this.pingEvery = pingEvery;
    this.state = "idle";
    this.ws = null;
    this.attempt = 0;
    this._reauthed = null; // the 1008 reason we re-authenticated for, until the next `ready`
    this._timer = null;
    this._pingTimer = null;
    this._pongDeadline = null;
    this._stopped = false;
    this._onOnline = () => {
      if (this.state === "reconnecting") {
        clearTimeout(this._timer);
        this.connect();
      }
    };
  }

  connect() {
    this._stopped = false;
    clearTimeout(this._timer);
    this.client._sockets.add(this);
    window.addEventListener("online", this._onOnline);
    this._open();
  }

  /** Close for good (code 1000); no reconnect. */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    this._stopPinging();
    this.client._sockets.delete(this);
    window.removeEventListener("online", this._onOnline);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      this._detach(ws);
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
    }
    this._setState("closed");
  }

  get isOpen() {
    return this.state === "open";
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("not connected");
    this.ws.send(JSON.stringify(frame));
  }

  // To override.
  path() {
    throw new Error("abstract");
  }
  query() {
    return {};
  }
  ticketScope() {
    return undefined;
  }
  _handle(_frame) {}
  _closed() {}

  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  async _open() {
    if (this._stopped) return;
    this._setState(this.attempt === 0 && !this._everOpened ? "connecting" : "reconnecting", {
      attempt: this.attempt,
    });
    let query = this.query();
    let protocols;
    try {
      if (this.auth === "ticket") {
        query = { ...query, token: await this.client.ticket(this.ticketScope()) };
      } else {
        if (!this.client.accessToken || Date.now() >= this.client.tokenExpiresAt - 1000) {
          await this.client.refresh();
        }
        if (this.auth === "token") query = { ...query, token: this.client.accessToken };
        else protocols = ["bearer", this.client.accessToken];
      }
    } catch (err) {
      if (this._stopped) return;
      if (err instanceof ApiError && err.status === 401) {
        return this._refuse(1008, "invalid session", true);
      }
      return this._retryLater(); // server restarting, network down, 5xx
    }
    if (this._stopped) return;
    const ws = protocols ? new WebSocket(this.client.wsUrl(this.path(), query), protocols)
                         : new WebSocket(this.client.wsUrl(this.path(), query));
    this.ws = ws;
    if (this.openOnHandshake) {
      // No greeting frame on this socket: show it open once the handshake completes
      // (a refusal still arrives as a close right after).
      ws.onopen = () => {
        if (ws === this.ws && this.state !== "open") this._setState("open");
      };
    }
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this._pongDeadline = null;
      if (frame.type === "ready" || frame.type === "stats") this._opened(frame);
      // A `batch` frame (channels opened with `batch: true`) carries several, in order.
      for (const one of frame.type === "batch" ? frame.frames : [frame]) {
        this.dispatchEvent(new CustomEvent("frame", { detail: one }));
        this._handle(one);
      }
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this._onClose(event.code, event.reason);
    };
  }

  // The first frame after a handshake proves the socket was accepted.
  _opened(_frame) {
    this.attempt = 0;
    this._reauthed = null;
    this._everOpened = true;
    if (this.state !== "open") {
      this._setState("open");
      this._startPinging();
    }
  }

  async _onClose(code, reason) {
    this._stopPinging();
    this._closed(code, reason);
    if (this._stopped) return;
    if (code === 1008) {
      if (FINAL_REASONS.has(reason) || this._reauthed === reason || !REAUTH_REASONS.has(reason)) {
        return this._refuse(code, reason, REAUTH_REASONS.has(reason));
      }
      this._reauthed = reason;
      if (reason !== "invalid token") {
        // A ticket or token the server no longer honours: get a fresh access token
        // through the session cookie first; if the session is gone, the user must log in.
        try {
          await this.client.refresh();
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) return this._refuse(code, reason, true);
          return this._retryLater();
        }
      }
      return this._open();
    }
    if (code === 1003 || code === 1009) return this._refuse(code, reason || "client error", false);
    this._retryLater();
  }

  _retryLater() {
    if (this._stopped) return;
    const delay = backoffDelay(this.attempt++, this.backoffBase, this.backoffMax);
    this._setState("reconnecting", { attempt: this.attempt, delay });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _refuse(code, reason, needsLogin) {
    this._stopped = true;
    this.client._sockets.delete(this);
    window.removeEventListener("online", this._onOnline);
    this._setState("refused", { code, reason });
    this.dispatchEvent(new CustomEvent("refused", { detail: { code, reason, needsLogin } }));
  }

  _detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
  }

  // Liveness: a ping every `pingEvery` ms; no frame at all for another `pingEvery` means
  // the connection is dead (a half-open TCP connection may never report a close).
  _startPinging() {
    this._stopPinging();
    if (!this.pingEvery) return;
    this._pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (this._pongDeadline !== null && Date.now() > this._pongDeadline) {
        const ws = this.ws;
        this.ws = null;
        this._detach(ws);
        ws.close();
        this._onClose(1006, "no answer to ping");
        return;
      }
      if (this._pongDeadline === null) this._pongDeadline = Date.now() + this.pingEvery;
      this.ws.send('{"type":"ping"}');
    }, this.pingEvery);
  }

  _stopPinging() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
    this._pongDeadline = null;
  }

  _tokenRefreshed(token) {
    // Sockets opened with an access token close at its `exp` unless told of a fresh one.
    if (this.auth !== "ticket" && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "refresh", token }));
    }
  }
}

/**
 * An item's channel. Events (detail):
 * - `ready` {frame, recovered, resumed}
 * - `message` — a message object {item_id, seq, sender, data, ts}, once per seq, in order
 * - `presence` {users: [username...], count, event?, user?}
 * - `reset` — the server has fewer messages than were shown (its history was lost or
 *   pruned): discard the view; messages that follow are the server's
 * - `gap` — some messages after the last one seen were pruned by retention
 * - `error` — an `error` frame {code, detail, ref?}
 * plus `state`, `refused` and `frame` of every socket.
 *
 * Options: `backlog` (messages of history to show on the first connect, default 0),
 * `batch` (let the server send pending frames together: fewer frames under load),
 * `state` (also receive the item's state: `itemstate` events and `itemState`),
 * `auth`, `backoffBase`, `backoffMax`, `pingEvery`.
 */
export class Channel extends ReconnectingSocket {
  constructor(client, itemId, options = {}) {
    super(client, options);
    this.itemId = itemId;
    this.backlog = options.backlog || 0;
    this.batch = Boolean(options.batch);
    this.wantsState = Boolean(options.state);
    this.itemState = null; // {version, state, sender?} with `state: true`
    this.lastSeq = options.since ?? null; // the last seq delivered; null before the first ready
    this.role = null;
    this.user = null;
    this.users = new Set();
    this._pending = new Map(); // ref -> {resolve, reject}
    this._refs = 0;
    this._holding = null; // live messages held back while history loads
    this._presenceHeld = null; // presence frames held back while the snapshot loads
  }

  path() {
    return `/items/${encodeURIComponent(this.itemId)}/ws`;
  }

  query() {
    const query = this.lastSeq === null ? {} : { since: String(this.lastSeq) };
    if (this.batch) query.batch = "1";
    if (this.wantsState) query.state = "1";
    return query;
  }

  ticketScope() {
    return this.itemId;
  }

  /** Publish `data`; resolves with its seq once acknowledged, rejects on an error frame or a close. */
  publish(data) {
    return this._request({ type: "publish", data });
  }

  /** Apply JSON Patch operations to a document's state; resolves with the new version. */
  patch(ops) {
    return this._request({ type: "patch", ops });
  }

  /** Make a move in a game item, e.g. `{move: 4}`; resolves with the new version. */
  action(action) {
    return this._request({ type: "action", action });
  }

  _request(frame) {
    const ref = `c-${++this._refs}`;
    return new Promise((resolve, reject) => {
      try {
        this.send({ ...frame, ref });
      } catch (err) {
        reject(err);
        return;
      }
      this._pending.set(ref, { resolve, reject });
    });
  }

  _closed(code, reason) {
    // An unacknowledged publish may or may not have been stored (at most once): the
    // resumed stream shows it if it was.
    for (const { reject } of this._pending.values()) {
      reject(new Error(`connection closed before the acknowledgement (${code}${reason ? ` ${reason}` : ""})`));
    }
    this._pending.clear();
    this._holding = null;
    this._presenceHeld = null;
  }

  _handle(frame) {
    switch (frame.type) {
      case "ready":
        return this._ready(frame);
      case "message":
        if (this._holding) this._holding.push(frame);
        else this._deliver(frame);
        return;
      case "presence":
        if (this._presenceHeld) this._presenceHeld.push(frame);
        else this._applyPresence(frame);
        return;
      case "ack": {
        const waiting = this._pending.get(frame.ref);
        if (waiting) {
          this._pending.delete(frame.ref);
          waiting.resolve(frame.version ?? frame.seq);
        }
        return;
      }
      case "state": {
        // The first after `ready` is the snapshot: it replaces whatever was known.
        const snapshot = frame.sender === undefined;
        if (!snapshot && this.itemState && frame.version <= this.itemState.version) return;
        const { type: _type, item_id: _item, ...body } = frame;
        this.itemState = body;
        this.dispatchEvent(new CustomEvent("itemstate", { detail: { ...body, snapshot } }));
        return;
      }
      case "error": {
        const waiting = frame.ref === undefined ? null : this._pending.get(frame.ref);
        if (waiting) {
          this._pending.delete(frame.ref);
          waiting.reject(new ApiError(frame.code, frame.detail));
        }
        this.dispatchEvent(new CustomEvent("error", { detail: frame }));
        return;
      }
      default:
        return; // pong, and frame types of later versions
    }
  }

  _ready(frame) {
    const resumed = this.lastSeq !== null;
    this.role = frame.role;
    this.user = frame.user;
    if (frame.recovered === false) {
      if (this.lastSeq !== null && this.lastSeq > frame.last_seq) {
        this.lastSeq = frame.last_seq;
        this.dispatchEvent(new CustomEvent("reset", { detail: frame }));
      } else {
        this.dispatchEvent(new CustomEvent("gap", { detail: frame }));
      }
    }
    this.dispatchEvent(new CustomEvent("ready", { detail: { frame, recovered: frame.recovered, resumed } }));
    if (this.lastSeq === null) {
      this.lastSeq = frame.last_seq;
      if (this.backlog > 0 && frame.last_seq > 0) this._loadBacklog(frame.last_seq);
    }
    this._loadPresence();
  }

  _deliver(message) {
    if (this.lastSeq !== null && message.seq <= this.lastSeq) return; // seen already
    this.lastSeq = message.seq;
    const { type: _type, ...body } = message;
    this.dispatchEvent(new CustomEvent("message", { detail: body }));
  }

  async _loadBacklog(upto) {
    // Messages up to `upto` come from history, the live ones after it wait meanwhile.
    const ws = this.ws;
    const held = (this._holding = []);
    let older = [];
    try {
      const after = Math.max(0, upto - this.backlog);
      older = await this.client.messages(this.itemId, { after, limit: Math.min(1000, upto - after) });
    } catch {
      older = []; // history is a nicety; the live stream goes on
    }
    if (this._holding !== held || ws !== this.ws) {
      // The socket closed meanwhile; its held messages come again on resume. The history
      // is still worth showing while nothing newer has been delivered.
      if (this.lastSeq === upto) for (const m of older) if (m.seq <= upto) this._emitHistory(m);
      return;
    }
    this._holding = null;
    for (const message of older) {
      if (message.seq <= upto) this._emitHistory(message);
    }
    for (const message of held) this._deliver(message);
  }

  _emitHistory(message) {
    this.dispatchEvent(new CustomEvent("message", { detail: { ...message, history: true } }));
  }

  async _loadPresence() {
    // The snapshot first, then every presence frame received since, in order.
    const ws = this.ws;
    const held = (this._presenceHeld = []);
    let snapshot = null;
    try {
      snapshot = await this.client.presence(this.itemId);
    } catch {
      snapshot = null;
    }
    if (this._presenceHeld !== held || ws !== this.ws) return;
    this._presenceHeld = null;
    if (snapshot) this.users = new Set(snapshot.users);
    for (const frame of held) this._applyPresence(frame, false);
    this._emitPresence({});
  }

  _applyPresence(frame, emit = true) {
    if (frame.event === "join") this.users.add(frame.user);
    else if (frame.event === "leave") this.users.delete(frame.user);
    if (emit) this._emitPresence({ event: frame.event, user: frame.user });
  }

  _emitPresence(extra) {
    const users = [...this.users].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    this.dispatchEvent(new CustomEvent("presence", { detail: { users, count: users.length, ...extra } }));
  }
}

/**
 * The `/monitor/ws` stream. Events: `stats` with the frame {ts, cpu_percent,
 * memory_percent, connections, messages_per_s}, plus `state` and `refused`.
 * Options: `interval` (seconds, the server clamps it to 0.2–60), and those of sockets.
 */
export class Monitor extends ReconnectingSocket {
  constructor(client, options = {}) {
    super(client, { pingEvery: 0, ...options });
    this.interval = options.interval;
    this.openOnHandshake = true;
  }

  path() {
    return "/monitor/ws";
  }

  query() {
    return this.interval === undefined ? {} : { interval: String(this.interval) };
  }

  ticketScope() {
    return undefined; // an item-scoped ticket is refused here
  }

  _handle(frame) {
    if (frame.type === "stats") this.dispatchEvent(new CustomEvent("stats", { detail: frame }));
  }
}

/**
 * Many items on one socket: `WS /ws` (multiplexed mode). Same credentials handling as
 * item channels (a ticket not limited to an item by default; `auth: "subprotocol"` or
 * `"token"` with refresh frames), same reconnects. Every subscription is renewed after a
 * reconnect with `since=<its last seq>`, and messages are deduplicated by seq per item,
 * so each item's messages are delivered exactly once and in order across drops.
 *
 *   const mux = client.multiplex();                      // connects at once
 *   const board = mux.subscribe("board", { state: true }); // a Subscription
 *   board.addEventListener("message", (e) => show(e.detail));
 *   await mux.publish("board", { text: "hi" });           // resolves with the seq
 *   await mux.patch("notes", [{ op: "add", path: "/a", value: 1 }]);  // the new version
 *   await mux.unsubscribe("board");
 *
 * Events of the Multiplex: `ready` {frame, resumed} after each accepted socket (the
 * subscriptions are renewed right after it), `message` (the messages of every item, each
 * once; the message object names its item), `error` (every `error` frame), plus `state`,
 * `refused` and `frame` of every socket. Per item, see `Subscription`.
 */
export class Multiplex extends ReconnectingSocket {
  constructor(client, options = {}) {
    super(client, options);
    this.subscriptions = new Map(); // item id -> Subscription (current, live or pending)
    this.user = null;
    this.maxSubscriptions = null;
    this._ready = false; // a `ready` came on the current socket
    this._everReady = false;
    this._pending = new Map(); // ref -> {resolve, reject, kind, sub?}
    this._refs = 0;
  }

  path() {
    return "/ws";
  }

  ticketScope() {
    return undefined; // an item-limited ticket is refused on /ws
  }

  /**
   * Follow an item: returns its Subscription at once (subscribed as soon as the socket
   * is ready). Options: `since` (deliver every stored message after it first), `state`
   * (also its state frames), `presence` (keep `users`, from a REST snapshot plus the
   * frames). Throws if the item is already subscribed here.
   */
  subscribe(itemId, { since = null, state = false, presence = false } = {}) {
    if (this.subscriptions.has(itemId)) throw new Error(`already subscribed to ${itemId}`);
    const sub = new Subscription(this, itemId, { since, state, presence });
    this.subscriptions.set(itemId, sub);
    if (this._ready) this._sendSubscribe(sub);
    return sub;
  }

  /** Stop following an item: no event of it follows. Resolves once the server answered. */
  unsubscribe(itemId) {
    const sub = this.subscriptions.get(itemId);
    if (!sub) return Promise.resolve();
    this.subscriptions.delete(itemId);
    sub._end();
    if (!this._ready) return Promise.resolve(); // renewed subscriptions skip it
    return this._request({ type: "unsubscribe", item_id: itemId }, "unsubscribe").catch(() => {});
  }

  /** Publish on any item one may write to (subscribed or not); resolves with the seq. */
  publish(itemId, data) {
    return this._request({ type: "publish", item_id: itemId, data }, "ack");
  }

  /** JSON Patch a document item's state; resolves with the new version. */
  patch(itemId, ops) {
    return this._request({ type: "patch", item_id: itemId, ops }, "ack");
  }

  /** A move in a game item, e.g. `{move: 4}`; resolves with the new version. */
  action(itemId, action) {
    return this._request({ type: "action", item_id: itemId, action }, "ack");
  }

  _request(frame, kind, sub) {
    const ref = `m-${++this._refs}`;
    return new Promise((resolve, reject) => {
      try {
        if (!this._ready) throw new Error("not connected");
        this.send({ ...frame, ref });
      } catch (err) {
        reject(err);
        return;
      }
      this._pending.set(ref, { resolve, reject, kind, sub });
    });
  }

  _sendSubscribe(sub) {
    const frame = { type: "subscribe", item_id: sub.itemId };
    if (sub.lastSeq !== null) frame.since = sub.lastSeq;
    if (sub.wantsState) frame.state = true;
    sub._live = false; // frames of the item are the previous subscription's until answered
    const ref = `m-${++this._refs}`;
    this._pending.set(ref, { kind: "subscribe", sub, resolve() {}, reject() {} });
    this.send({ ...frame, ref });
  }

  _closed(code, reason) {
    this._ready = false;
    for (const { reject, kind } of this._pending.values()) {
      if (kind !== "subscribe") {
        reject(new Error(`connection closed before the answer (${code}${reason ? ` ${reason}` : ""})`));
      }
    }
    this._pending.clear();
    for (const sub of this.subscriptions.values()) sub._disconnected();
  }

  _handle(frame) {
    if (frame.type === "ready") return this._onReady(frame);
    const waiting = typeof frame.ref === "string" ? this._pending.get(frame.ref) : undefined;
    if (waiting) this._pending.delete(frame.ref);
    const sub = frame.item_id === undefined ? undefined : this.subscriptions.get(frame.item_id);
    switch (frame.type) {
      case "subscribed":
        if (waiting && this._current(waiting.sub)) waiting.sub._subscribed(frame);
        return;
      case "unsubscribed":
        if (waiting) waiting.resolve(frame);
        // Not our request: the server ended the subscription (removed, item deleted).
        else if (sub && sub._live) this._drop(sub, frame.reason);
        return;
      case "ack":
        if (waiting) waiting.resolve(frame.version ?? frame.seq);
        return;
      case "error":
        if (waiting && waiting.kind === "subscribe") {
          if (this._current(waiting.sub)) {
            this.subscriptions.delete(waiting.sub.itemId);
            waiting.sub._refused(frame);
          }
        } else if (waiting) {
          waiting.reject(new ApiError(frame.code, frame.detail));
        }
        this.dispatchEvent(new CustomEvent("error", { detail: frame }));
        return;
      case "message":
        if (sub && sub._live && sub._deliver(frame)) {
          const { type: _type, ...body } = frame;
          this.dispatchEvent(new CustomEvent("message", { detail: body }));
        }
        return;
      case "presence":
        if (sub && sub._live) sub._presence(frame);
        return;
      case "state":
        if (sub && sub._live) sub._state(frame);
        return;
      default:
        return; // pong, and frame types of later versions
    }
  }

  _onReady(frame) {
    const resumed = this._everReady;
    this._ready = true;
    this._everReady = true;
    this.user = frame.user;
    this.maxSubscriptions = frame.max_subscriptions ?? null;
    this.dispatchEvent(new CustomEvent("ready", { detail: { frame, resumed } }));
    for (const sub of this.subscriptions.values()) this._sendSubscribe(sub);
  }

  _current(sub) {
    return sub !== undefined && this.subscriptions.get(sub.itemId) === sub;
  }

  _drop(sub, reason) {
    this.subscriptions.delete(sub.itemId);
    sub._end();
    sub.dispatchEvent(new CustomEvent("unsubscribed", { detail: { reason } }));
  }
}

/**
 * One item followed on a Multiplex. Events (detail), as those of a Channel:
 * - `subscribed` {frame, recovered, resumed} — after each (re)subscription
 * - `message` — a message object {item_id, seq, sender, data, ts}, once per seq, in order
 * - `presence` {event, user, count} per frame; with `presence: true` also `users`
 *   (sorted), after a snapshot following each subscription
 * - `itemstate` {version, state, sender?, snapshot} with `state: true`; `itemState`
 * - `unsubscribed` {reason: "forbidden"} — the server ended it (removed, item deleted)
 * - `refused` {code, detail} — a subscribe (first or renewed) was refused: it has ended
 * - `reset`, `gap` — as a Channel's, after `recovered: false`
 * `publish`, `patch` and `action` are the Multiplex's, for this item.
 */
export class Subscription extends EventTarget {
  constructor(mux, itemId, { since, state, presence }) {
    super();
    this.mux = mux;
    this.itemId = itemId;
    this.wantsState = Boolean(state);
    this.wantsPresence = Boolean(presence);
    this.lastSeq = since ?? null; // the last seq delivered; null before the first answer
    this.role = null;
    this.itemState = null;
    this.users = new Set();
    this.ended = false;
    this._live = false;
    this._presenceHeld = null;
  }

  publish(data) {
    return this.mux.publish(this.itemId, data);
  }

  patch(ops) {
    return this.mux.patch(this.itemId, ops);
  }

  action(action) {
    return this.mux.action(this.itemId, action);
  }

  unsubscribe() {
    return this.mux.unsubscribe(this.itemId);
  }

  _subscribed(frame) {
    const resumed = this.lastSeq !== null;
    this._live = true;
    this.role = frame.role;
    if (frame.recovered === false) {
      if (this.lastSeq !== null && this.lastSeq > frame.last_seq) {
        this.lastSeq = frame.last_seq;
        this.dispatchEvent(new CustomEvent("reset", { detail: frame }));
      } else {
        this.dispatchEvent(new CustomEvent("gap", { detail: frame }));
      }
    }
    if (this.lastSeq === null) this.lastSeq = frame.last_seq;
    this.dispatchEvent(new CustomEvent("subscribed", { detail: { frame, recovered: frame.recovered, resumed } }));
    if (this.wantsPresence) this._loadPresence();
  }

  /** True when the message was new (and delivered). */
  _deliver(frame) {
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return false; // seen already
    this.lastSeq = frame.seq;
    const { type: _type, ...body } = frame;
    this.dispatchEvent(new CustomEvent("message", { detail: body }));
    return true;
  }

  _state(frame) {
    const snapshot = frame.sender === undefined;
    if (!snapshot && this.itemState && frame.version <= this.itemState.version) return;
    const { type: _type, item_id: _item, ...body } = frame;
    this.itemState = body;
    this.dispatchEvent(new CustomEvent("itemstate", { detail: { ...body, snapshot } }));
  }

  _presence(frame) {
    if (this._presenceHeld) {
      this._presenceHeld.push(frame);
      return;
    }
    this._applyPresence(frame);
    const detail = { event: frame.event, user: frame.user, count: frame.count };
    if (this.wantsPresence) detail.users = this._sortedUsers();
    this.dispatchEvent(new CustomEvent("presence", { detail }));
  }

  _applyPresence(frame) {
    if (frame.event === "join") this.users.add(frame.user);
    else if (frame.event === "leave") this.users.delete(frame.user);
  }

  _sortedUsers() {
    return [...this.users].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async _loadPresence() {
    // The snapshot first, then every presence frame received since, in order.
    const held = (this._presenceHeld = []);
    let snapshot = null;
    try {
      snapshot = await this.mux.client.presence(this.itemId);
    } catch {
      snapshot = null;
    }
    if (this._presenceHeld !== held) return; // disconnected or ended meanwhile
    this._presenceHeld = null;
    if (snapshot) this.users = new Set(snapshot.users);
    for (const frame of held) this._applyPresence(frame);
    const users = this._sortedUsers();
    this.dispatchEvent(new CustomEvent("presence", { detail: { users, count: users.length } }));
  }

  _disconnected() {
    this._live = false;
    this._presenceHeld = null;
  }

  _refused(frame) {
    this._end();
    this.dispatchEvent(new CustomEvent("refused", { detail: { code: frame.code, detail: frame.detail } }));
  }

  _end() {
    this.ended = true;
    this._live = false;
    this._presenceHeld = null;
  }
}

// The channels page: log in, list and create items, share them, chat on an item's channel;
// the list shows live unread counts of the items not open (one `/ws` socket follows them).

import { ApiError, Client } from "./item-channels.js";
import {
  $,
  REFUSAL_HINTS,
  bindAuthForm,
  bindHeader,
  describe,
  el,
  show,
  showUser,
} from "./ui.js";
import { UnreadCounts } from "./unread.js";

const BACKLOG = 50; // messages of history shown when a channel opens

const client = new Client();
let channel = null; // the open Channel
let current = null; // {id, name, owner} of the open item
let lines = new Map(); // seq -> <li>, so a seq is never shown twice
let itemState = null; // {version, state, sender?} of the open item
const unread = new UnreadCounts(client);
const TITLE = document.title;

// Views.

function showAuth(message) {
  closeChannel();
  unread.stop();
  current = null;
  showUser(null);
  show($("loading"), false);
  show($("workspace"), false);
  show($("auth"), true);
  $("auth-error").textContent = message || "";
  $("username").focus();
}

async function showWorkspace(user) {
  showUser(user);
  show($("loading"), false);
  show($("auth"), false);
  show($("workspace"), true);
  unread.setOpen(hashItemId()); // not followed on /ws: its own channel is about to open
  await loadItems();
  openFromHash();
}

// Items.

async function loadItems() {
  let items;
  try {
    items = await client.listItems();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showAuth("Your session ended; log in again.");
    $("items-error").textContent = describe(err);
    return;
  }
  $("items-error").textContent = "";
  const list = $("items");
  list.replaceChildren(
    ...items.map((item) => {
      const link = el("a", { className: "item-link", attrs: { href: `#item=${encodeURIComponent(item.id)}` } },
        el("span", { className: "item-name", text: item.name }),
        el("span", { className: "item-meta", text: item.owner === client.user?.username ? item.id : `${item.id} · ${item.owner}` }),
      );
      link.append(el("span", { className: "unread", attrs: { "aria-label": "unread messages" } }));
      link.dataset.itemId = item.id;
      if (current && current.id === item.id) link.setAttribute("aria-current", "true");
      return el("li", {}, link);
    }),
  );
  show($("items-empty"), items.length === 0);
  unread.setItems(items.map((item) => item.id));
  for (const item of items) renderUnread(item.id, unread.count(item.id));
}

function itemLink(id) {
  for (const link of $("items").querySelectorAll(".item-link")) if (link.dataset.itemId === id) return link;
  return null;
}

function renderUnread(id, count, lastSeq) {
  const link = itemLink(id);
  if (link) {
    link.dataset.unread = String(count);
    if (lastSeq !== undefined && lastSeq !== null) link.dataset.lastSeq = String(lastSeq);
    const badge = link.querySelector(".unread");
    badge.textContent = count > 0 ? String(count) : "";
    show(badge, count > 0);
  }
  const total = unread.total();
  document.title = total > 0 ? `(${total}) ${TITLE}` : TITLE;
}

unread.addEventListener("change", (e) => renderUnread(e.detail.itemId, e.detail.count, e.detail.lastSeq));
// Removed from an item, or it was deleted: it leaves the list.
unread.addEventListener("gone", () => loadItems());

function markCurrentItem() {
  for (const link of $("items").querySelectorAll(".item-link")) {
    if (current && link.dataset.itemId === current.id) link.setAttribute("aria-current", "true");
    else link.removeAttribute("aria-current");
  }
}

$("create-item").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("item-name").value.trim();
  const id = $("item-new-id").value.trim();
  if (!name) return;
  try {
    const item = await client.createItem(name, id || undefined, $("item-kind").value);
    $("item-name").value = "";
    $("item-new-id").value = "";
    $("items-error").textContent = "";
    await loadItems();
    location.hash = `item=${encodeURIComponent(item.id)}`;
  } catch (err) {
    $("items-error").textContent =
      err instanceof ApiError && err.status === 409 ? "That id is taken." : describe(err);
  }
});

function hashItemId() {
  const match = /^#item=(.+)$/.exec(location.hash);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null;
  }
}

function openFromHash() {
  const id = hashItemId();
  if (id === null) return;
  if (!current || current.id !== id || !channel) openItem(id);
}

window.addEventListener("hashchange", () => {
  if (client.user) openFromHash();
});

// The open item.

function closeChannel() {
  if (channel) channel.close();
  channel = null;
}

async function openItem(id) {
  // The item left is followed for unread counts again, after what its channel showed.
  unread.setOpen(id, channel && current && current.id !== id ? channel.lastSeq : null);
  closeChannel();
  current = { id, name: id, owner: null };
  lines = new Map();
  markCurrentItem();
  show($("no-item"), false);
  show($("item-view"), true);
  show($("refused"), false);
  $("item-title").textContent = id;
  $("item-id").textContent = id;
  $("messages").replaceChildren();
  $("online").replaceChildren();
  $("online-count").textContent = "0";
  $("members").replaceChildren();
  $("publish-error").textContent = "";
  $("share-error").textContent = "";
  show($("role"), false);
  show($("share"), false);
  show($("delete-item"), false);
  setPublishing(false);
  itemState = null;
  show($("state-panel"), false);
  $("game-error").textContent = "";

  const opened = current;
  client.getItem(id).then(
    (item) => {
      if (current !== opened) return;
      current = { ...item };
      $("item-title").textContent = item.name;
      renderItemState();
      const owner = item.owner === client.user?.username;
      show($("share"), owner);
      show($("delete-item"), owner);
      loadMembers();
    },
    () => {}, // the channel says why, with its reason
  );

  channel = client.channel(id, { backlog: BACKLOG, state: true });
  const mine = channel;
  mine.addEventListener("itemstate", (e) => {
    if (channel !== mine) return;
    itemState = e.detail;
    renderItemState();
  });
  mine.addEventListener("state", (e) => {
    if (channel === mine) renderState(e.detail);
  });
  mine.addEventListener("ready", (e) => {
    if (channel !== mine) return;
    const role = e.detail.frame.role;
    $("role").textContent = role;
    show($("role"), true);
    setPublishing(role !== "reader");
    $("message-input").placeholder =
      role === "reader" ? "Readers cannot publish on this item" : "Write a message…";
  });
  mine.addEventListener("message", (e) => {
    if (channel === mine) addLine(e.detail);
  });
  mine.addEventListener("reset", () => {
    if (channel !== mine) return;
    lines = new Map();
    $("messages").replaceChildren();
  });
  mine.addEventListener("presence", (e) => {
    if (channel === mine) renderPresence(e.detail.users);
  });
  mine.addEventListener("error", (e) => {
    if (channel === mine && e.detail.ref === undefined) $("publish-error").textContent = e.detail.detail;
  });
  mine.addEventListener("refused", (e) => {
    if (channel !== mine) return;
    refused(e.detail);
  });
}

function renderState({ state, delay }) {
  const badge = $("channel-status");
  badge.dataset.state = state;
  const labels = {
    idle: "",
    connecting: "connecting…",
    open: "live",
    reconnecting: delay ? `reconnecting in ${Math.ceil(delay / 1000)} s…` : "reconnecting…",
    refused: "refused",
    closed: "closed",
  };
  badge.textContent = labels[state] ?? state;
  if (state !== "open") setPublishing(false);
  else if (channel && channel.role && channel.role !== "reader") setPublishing(true);
}

function refused({ reason, needsLogin }) {
  setPublishing(false);
  $("refused-reason").textContent = reason || "refused";
  $("refused-hint").textContent = REFUSAL_HINTS[reason] || "";
  show($("refused"), true);
  renderPresence([]);
  if (reason === "forbidden") loadItems(); // the item is gone from this user's list
  if (needsLogin) {
    // Keep the reason on screen; the form is right below.
    show($("auth"), true);
    $("auth-error").textContent = `Channel refused: ${reason}. Log in again to reconnect.`;
  }
}

function setPublishing(enabled) {
  $("message-input").disabled = !enabled;
  $("send").disabled = !enabled;
}

function messageText(data) {
  if (typeof data === "string") return data;
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function clock(ts) {
  const date = new Date(ts);
  return Number.isNaN(date.getTime()) ? ts : date.toLocaleTimeString();
}

function addLine(message) {
  if (lines.has(message.seq)) return;
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const line = el(
    "li",
    { className: message.sender === client.user?.username ? "message mine" : "message" },
    el("span", { className: "seq", text: `#${message.seq}` }),
    el("span", { className: "sender", text: message.sender }),
    el("span", { className: "text", text: messageText(message.data) }),
    el("time", { className: "ts", text: clock(message.ts), attrs: { datetime: message.ts } }),
  );
  line.dataset.seq = String(message.seq);
  // Keep seq order even when history arrives after live lines (rare: a linear scan).
  const last = list.lastElementChild;
  let before = null;
  if (last && Number(last.dataset.seq) > message.seq) {
    for (const [seq, node] of lines) {
      if (seq > message.seq && (before === null || seq < Number(before.dataset.seq))) before = node;
    }
  }
  list.insertBefore(line, before);
  lines.set(message.seq, line);
  if (atBottom || message.sender === client.user?.username) list.scrollTop = list.scrollHeight;
}

function renderPresence(users) {
  $("online-count").textContent = String(users.length);
  $("online").replaceChildren(
    ...users.map((name) =>
      el("li", { className: name === client.user?.username ? "person me" : "person", text: name }),
    ),
  );
}

$("publish").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value;
  if (!text.trim() || !channel) return;
  $("publish-error").textContent = "";
  input.value = "";
  try {
    await channel.publish({ text });
  } catch (err) {
    // Not acknowledged: it may or may not have been stored; the resumed stream will show
    // it if it was. Give the text back so it is not lost from the user's side.
    if (!input.value) input.value = text;
    $("publish-error").textContent = `Not sent: ${describe(err)}`;
  }
  input.focus();
});

// Item state: a board for games, the JSON for documents.

function renderItemState() {
  if (!current || !current.kind || !itemState) return;
  const panel = $("state-panel");
  panel.dataset.version = String(itemState.version);
  show(panel, true);
  const game = current.kind === "tictactoe";
  show($("game"), game);
  show($("document"), !game);
  if (game) renderBoard(itemState.state);
  else {
    $("state-version").textContent = `version ${itemState.version}`;
    $("document-json").textContent = JSON.stringify(itemState.state, null, 2);
  }
}

function renderBoard(game) {
  const board = $("board");
  if (board.children.length !== 9) {
    board.replaceChildren(
      ...Array.from({ length: 9 }, (_, cell) => {
        const button = el("button", {
          className: "cell",
          attrs: { type: "button", "aria-label": `cell ${cell}` },
        });
        button.dataset.cell = String(cell);
        button.addEventListener("click", () => move(cell));
        return button;
      }),
    );
  }
  const me = client.user?.username;
  const playing = channel && channel.role && channel.role !== "reader";
  game.board.forEach((mark, cell) => {
    const button = board.children[cell];
    button.textContent = mark || "";
    button.dataset.mark = mark || "";
    button.disabled = Boolean(mark) || game.winner !== null || !playing;
  });
  const name = (mark) => game.players[mark] || "whoever moves first";
  let status;
  if (game.winner === "draw") status = "Draw: the board is full.";
  else if (game.winner) status = `${game.winner} wins: ${name(game.winner)}${game.players[game.winner] === me ? " (you)" : ""}!`;
  else status = `${game.turn} to move: ${name(game.turn)}${game.players[game.turn] === me ? " (you)" : ""}`;
  $("game-status").textContent = status;
  $("game-status").dataset.winner = game.winner || "";
}

async function move(cell) {
  if (!channel) return;
  $("game-error").textContent = "";
  try {
    await channel.action({ move: cell });
  } catch (err) {
    // The server's rule, said inline: not your turn, cell taken, game over, not a player.
    $("game-error").textContent =
      err instanceof ApiError && err.status === "illegal" ? `Illegal move: ${err.message}.` : describe(err);
  }
}

// Members.

async function loadMembers() {
  if (!current) return;
  const opened = current;
  let members;
  try {
    members = await client.members(opened.id);
  } catch {
    return;
  }
  if (current !== opened) return;
  const owner = opened.owner === client.user?.username;
  $("members").replaceChildren(
    ...members.map((m) => {
      const row = el(
        "li",
        { className: "person" },
        el("span", { text: m.username }),
        el("span", { className: `badge role-${m.role}`, text: m.role }),
      );
      if (owner && m.role !== "owner") {
        const remove = el("button", {
          className: "link danger",
          text: "remove",
          attrs: { type: "button", "aria-label": `Remove ${m.username}` },
        });
        remove.addEventListener("click", async () => {
          try {
            await client.unshare(opened.id, m.username);
            $("share-error").textContent = "";
          } catch (err) {
            $("share-error").textContent = describe(err);
          }
          loadMembers();
        });
        row.append(remove);
      }
      return row;
    }),
  );
}

$("share").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const username = $("share-username").value.trim();
  try {
    await client.share(current.id, username, $("share-role").value);
    $("share-username").value = "";
    $("share-error").textContent = "";
  } catch (err) {
    $("share-error").textContent =
      err instanceof ApiError && err.status === 404 ? `No user named ${username}.` : describe(err);
  }
  loadMembers();
});

$("delete-item").addEventListener("click", async () => {
  if (!current || !window.confirm(`Delete “${current.name}” and all its messages?`)) return;
  try {
    await client.deleteItem(current.id);
  } catch (err) {
    $("publish-error").textContent = describe(err);
    return;
  }
  closeChannel();
  current = null;
  history.replaceState(null, "", location.pathname);
  show($("item-view"), false);
  show($("no-item"), true);
  await loadItems(); // without the deleted item, which is then not followed
  unread.setOpen(null);
});

// Start.

bindAuthForm(client, (user) => {
  if (channel && channel.state === "refused" && current) {
    // Logged in again after a refusal that asked for it: reconnect where we were.
    show($("auth"), false);
    showUser(user);
    openItem(current.id);
    return;
  }
  showWorkspace(user);
});
bindHeader(client, () => {
  history.replaceState(null, "", location.pathname);
  showAuth();
});
client.addEventListener("logout", () => showAuth("Your session ended; log in again."));

client.resume().then(
  (user) => (user ? showWorkspace(user) : showAuth()),
  (err) => showAuth(describe(err)),
);

// Unread counts of the items in the list: one `/ws` socket follows every listed item but
// the open one (whose own channel shows its messages), and counts the messages others
// send on each. A count starts at 0 when the page loads and when an item is left; the
// item left is followed again from the last seq its channel showed, so a message that
// arrives while switching is counted, once.

/**
 * Events: `change` {itemId, count, lastSeq} whenever a count or last seq changes, and
 * `gone` {itemId} when the server ended a subscription or refused it as `forbidden`
 * (removed from the item, deleted), once per item.
 */
export class UnreadCounts extends EventTarget {
  constructor(client) {
    super();
    this.client = client;
    this.mux = null;
    this.listed = new Set(); // ids in the list
    this.openId = null; // the open item: not followed here
    this.counts = new Map(); // id -> messages by others since the item was last open
    this.seen = new Map(); // id -> last seq known to be shown (from the open channel)
    this.gone = new Set(); // ids whose subscription the server ended
  }

  /** The ids now in the list: follow the new ones, forget those gone. */
  setItems(ids) {
    this.listed = new Set(ids);
    for (const id of [...this.counts.keys()]) {
      if (!this.listed.has(id)) {
        this.counts.delete(id);
        this.seen.delete(id);
        if (this.mux) this.mux.unsubscribe(id);
      }
    }
    this._ensureSocket();
    for (const id of this.listed) this._follow(id);
  }

  /** `id` is opened (null: none); the previous one was shown up to `seenSeq`. */
  setOpen(id, seenSeq = null) {
    const previous = this.openId;
    this.openId = id;
    if (previous !== null && previous !== id) {
      if (seenSeq !== null) this.seen.set(previous, seenSeq);
      this._follow(previous);
    }
    if (id !== null) {
      if (this.mux) this.mux.unsubscribe(id);
      this._set(id, 0, this.seen.get(id) ?? null);
    }
  }

  count(id) {
    return this.counts.get(id) || 0;
  }

  /** All counts together (for the page title). */
  total() {
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return total;
  }

  stop() {
    if (this.mux) this.mux.close();
    this.mux = null;
    this.listed = new Set();
    this.openId = null;
    this.counts.clear();
    this.seen.clear();
    this.gone.clear();
  }

  _ensureSocket() {
    if (this.mux && this.mux.state !== "refused" && this.mux.state !== "closed") return;
    this.mux = this.client.multiplex();
  }

  _follow(id) {
    if (!this.mux || id === this.openId || !this.listed.has(id) || this.mux.subscriptions.has(id)) return;
    const mux = this.mux;
    const sub = mux.subscribe(id, { since: this.seen.get(id) ?? null });
    if (!this.counts.has(id)) this.counts.set(id, 0);
    sub.addEventListener("subscribed", () => this._set(id, this.count(id), sub.lastSeq));
    sub.addEventListener("message", (e) => {
      const mine = e.detail.sender === this.client.user?.username;
      this.seen.set(id, e.detail.seq);
      this._set(id, this.count(id) + (mine ? 0 : 1), e.detail.seq);
    });
    const gone = () => {
      // Once per item: a list that still shows it must not reload again and again.
      if (this.mux !== mux || this.gone.has(id)) return;
      this.gone.add(id);
      this.dispatchEvent(new CustomEvent("gone", { detail: { itemId: id } }));
    };
    sub.addEventListener("unsubscribed", gone);
    // Other refusals (too many subscriptions, rate limits): that item shows no count.
    sub.addEventListener("refused", (e) => e.detail.code === "forbidden" && gone());
  }

  _set(id, count, lastSeq) {
    if (!this.listed.has(id)) return;
    this.counts.set(id, count);
    this.dispatchEvent(new CustomEvent("change", { detail: { itemId: id, count, lastSeq } }));
  }
}

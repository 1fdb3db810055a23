"""The hub: this process's sockets per item, fed from the broker.

Each message reaches the hub once per process as pre-encoded text and is handed to
every local socket's bounded outbox without awaiting anything, so a client that stops
reading delays no one. Each outbox sends in `seq` order, drops duplicates and fills
gaps from the store, so resume and lossy transports give every socket every message
exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from api import metrics
from api.realtime import protocol
from api.realtime.broker import Broker
from api.realtime.outbox import FILL_PAGE, FetchRange, Outbox
from api.realtime.presence import Presence

log = logging.getLogger(__name__)


class Store(Protocol):
    """The hub's read-only window onto the database, provided by the layer above."""

    async def fetch(self, item_id: str, after: int, upto: int) -> list[tuple[int, str]]:
        """`message` frames with after < seq <= upto, ascending."""
        ...

    async def latest(self, item_ids: Collection[str]) -> dict[str, int]:
        """The last seq stored for each existing item."""
        ...

    async def revoked_sessions(self, session_ids: Collection[str]) -> set[str]:
        """Those of the sessions that are no longer active."""
        ...

    async def lost_access(self, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those (item_id, user_id) pairs where the user may no longer read the item."""
        ...


CONTROL_CHANNEL = "control"
# An item's subscription outlives its last socket this long (reconnects are common).
LINGER = 30.0
# Revocations are remembered this long, for sockets checked just before they arrived.
RECENT_REVOCATIONS = 120.0


def item_channel(item_id: str) -> str:
    return f"item:{item_id}"


def envelope(seq: int, frame: str, stored_at: float = 0.0) -> bytes:
    """Broker payload: seq (0 for unsequenced frames), the wall-clock time it was stored,
    a newline, the frame."""
    return b"%d %.6f\n%s" % (seq, stored_at, frame.encode())


def open_envelope(payload: bytes) -> tuple[int, float, str]:
    head, _, body = payload.partition(b"\n")
    seq, _, stored_at = head.partition(b" ")
    return int(seq), float(stored_at or 0), body.decode()


@dataclass(eq=False)
class _ItemState:
    outboxes: set[Outbox] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # The last seq handed to the outboxes; every later one is delivered in order.
    last_seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set while the item has no socket: the subscription is kept a while for the next.
    linger: asyncio.TimerHandle | None = None


class Hub:
    """Local sockets per item, one broker subscription per item per process."""

    def __init__(
        self, broker: Broker, presence: Presence, store: Store, poll_interval: float = 1.0
    ) -> None:
        self.broker = broker
        self.presence = presence
        self.store = store
        self.fetch: FetchRange = store.fetch
        self.poll_interval = poll_interval
        self._items: dict[str, _ItemState] = {}
        self._by_session: defaultdict[str, set[Outbox]] = defaultdict(set)
        self._per_user: Counter[str] = Counter()
        self._recent: dict[tuple[str, ...], float] = {}
        # Told of every revocation, local or from another worker (to evict caches).
        self.on_revocation: Callable[[dict[str, str]], None] | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._control_ready = asyncio.Event()

    # Lifecycle.

    async def start(self) -> None:
        self._control_task = asyncio.create_task(self._control_loop(), name="hub-control")
        self._poll_task = asyncio.create_task(self._poll_forever(), name="hub-poll")
        # A broker that can lose messages while disconnected says when it is back.
        if hasattr(self.broker, "on_reconnect"):
            self.broker.on_reconnect = self.recover
        self.presence.announce = self._announce
        await self._control_ready.wait()

    async def stop(self) -> None:
        tasks = [s.task for s in self._items.values() if s.task]
        tasks += [self._control_task, self._poll_task]
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._items.clear()

    def sockets_of_user(self, user_id: str) -> int:
        return self._per_user[user_id]

    def sockets_on_item(self, item_id: str) -> int:
        state = self._items.get(item_id)
        return len(state.outboxes) if state else 0

    # Sockets.

    async def attach(self, outbox: Outbox) -> None:
        """Start receiving the item's live frames into `outbox`."""
        state = self._items.get(outbox.item_id)
        if state is not None and state.task is not None and state.task.done():
            # Its subscription failed (and closed its sockets): subscribe afresh.
            if state.linger is not None:
                state.linger.cancel()
            del self._items[outbox.item_id]
            state = None
        if state is None:
            state = self._items[outbox.item_id] = _ItemState()
            state.task = asyncio.create_task(
                self._item_loop(outbox.item_id, state), name=f"hub-item-{outbox.item_id}"
            )
        if state.linger is not None:
            state.linger.cancel()
            state.linger = None
        state.outboxes.add(outbox)
        self._by_session[outbox.session_id].add(outbox)
        self._per_user[outbox.user_id] += 1
        outbox._hub = self
        await state.ready.wait()

    def last_seq(self, item_id: str) -> int:
        """The last seq this process has delivered on the item (attached items only).

        A socket attached now receives every later message, so this is where its
        stream starts: no need to ask the store."""
        return self._items[item_id].last_seq

    def revoked_recently(self, outbox: Outbox) -> str | None:
        """The close reason if a revocation for this socket arrived recently.

        Credentials are checked before a socket is attached; a revocation that arrives
        in between is remembered here, so the socket is closed all the same."""
        now = time.monotonic()
        recent = self._recent
        if recent.get(("session", outbox.session_id), 0) > now:
            return protocol.SESSION_REVOKED
        if (
            recent.get(("item", outbox.item_id), 0) > now
            or recent.get(("member", outbox.item_id, outbox.user_id), 0) > now
        ):
            return protocol.FORBIDDEN
        return None

    def _remember(self, key: tuple[str, ...]) -> None:
        now = time.monotonic()
        if len(self._recent) > 10_000:
            self._recent = {k: t for k, t in self._recent.items() if t > now}
        self._recent[key] = now + RECENT_REVOCATIONS

    def detach(self, outbox: Outbox) -> None:
        if outbox._hub is None:
            return
        outbox._hub = None
        self._per_user[outbox.user_id] -= 1
        if self._per_user[outbox.user_id] <= 0:
            del self._per_user[outbox.user_id]
        sessions = self._by_session.get(outbox.session_id)
        if sessions is not None:
            sessions.discard(outbox)
            if not sessions:
                del self._by_session[outbox.session_id]
        state = self._items.get(outbox.item_id)
        if state is None:
            return
        state.outboxes.discard(outbox)
        if not state.outboxes and state.linger is None:
            loop = asyncio.get_running_loop()
            state.linger = loop.call_later(LINGER, self._drop_item, outbox.item_id, state)

    def _drop_item(self, item_id: str, state: _ItemState) -> None:
        """Unsubscribe from an item (no socket left, or the item is gone)."""
        if state.linger is not None:
            state.linger.cancel()
            state.linger = None
        if self._items.get(item_id) is state and not state.outboxes:
            del self._items[item_id]
            if state.task is not None:
                state.task.cancel()

    def move_session(self, outbox: Outbox, session_id: str) -> None:
        """The socket is now governed by another session (after a token refresh)."""
        if outbox._hub is None or outbox.session_id == session_id:
            return
        old = self._by_session.get(outbox.session_id)
        if old is not None:
            old.discard(outbox)
            if not old:
                del self._by_session[outbox.session_id]
        outbox.session_id = session_id
        self._by_session[session_id].add(outbox)

    # Publishing.

    async def publish_message(self, item_id: str, seq: int, frame: str) -> None:
        await self.broker.publish(item_channel(item_id), envelope(seq, frame, time.time()))

    async def join(self, outbox: Outbox) -> None:
        """Count the socket in presence; announce the user if it is their first."""
        try:
            count = await self.presence.join(outbox.item_id, outbox.username, id(outbox))
            if count is not None:
                await self._announce(outbox.item_id, "join", outbox.username, count)
        except Exception:  # presence is best effort: the broker resyncs it on recovery
            log.warning("presence join failed", exc_info=True)

    async def leave(self, outbox: Outbox) -> None:
        try:
            count = await self.presence.leave(outbox.item_id, outbox.username, id(outbox))
            if count is not None:
                await self._announce(outbox.item_id, "leave", outbox.username, count)
        except Exception:
            log.warning("presence leave failed", exc_info=True)

    async def _announce(self, item_id: str, event: str, username: str, count: int) -> None:
        frame = protocol.encode(
            protocol.PresenceFrame(event=event, user=username, count=count)  # type: ignore[arg-type]
        )
        await self.broker.publish(item_channel(item_id), envelope(0, frame))

    async def revoke_session(self, session_id: str) -> None:
        await self._control({"op": "session", "sid": session_id})

    async def revoke_member(self, item_id: str, user_id: str) -> None:
        await self._control({"op": "member", "item": item_id, "user": user_id})

    async def role_changed(self, item_id: str, user_id: str) -> None:
        """Not a revocation (the socket stays), but cached rights must be re-read."""
        await self._control({"op": "role", "item": item_id, "user": user_id})

    async def revoke_item(self, item_id: str) -> None:
        await self._control({"op": "item", "item": item_id})

    async def _control(self, command: dict[str, str]) -> None:
        # Applied here at once, then by every worker (this one again, harmlessly).
        self._apply(command)
        await self.broker.publish(CONTROL_CHANNEL, orjson.dumps(command))

    # Receiving.

    async def _item_loop(self, item_id: str, state: _ItemState) -> None:
        try:
            async with self.broker.subscribe(item_channel(item_id)) as sub:
                # Baseline after subscribing: anything stored later arrives through the
                # broker or, if lost on the way, through the poll.
                state.last_seq = (await self.store.latest([item_id])).get(item_id, 0)
                state.ready.set()
                async for payload in sub:
                    seq, stored_at, frame = open_envelope(payload)
                    if seq:
                        async with state.lock:
                            await self._deliver_in_order(item_id, state, seq, frame)
                        if stored_at:
                            metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - stored_at))
                    else:
                        self._fan_out(state, 0, frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("item subscription failed", extra={"item_id": item_id})
            for outbox in list(state.outboxes):
                outbox.request_close(protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE)
        finally:
            state.ready.set()

    async def _deliver_in_order(
        self, item_id: str, state: _ItemState, seq: int, frame: str
    ) -> None:
        if seq <= state.last_seq:
            return  # already delivered, through a gap fill
        if seq > state.last_seq + 1:
            # A message published elsewhere was lost or overtaken: read it once for the
            # whole process instead of once per socket.
            await self._fill(item_id, state, seq - 1)
        state.last_seq = seq
        self._fan_out(state, seq, frame)

    async def _catch_up(self, item_id: str, state: _ItemState, latest: int) -> None:
        """Deliver what the store has beyond what the broker brought."""
        async with state.lock:
            await self._fill(item_id, state, latest)

    async def _fill(self, item_id: str, state: _ItemState, upto: int) -> None:
        # Page by page: between pages the outboxes send what they got, so a long gap
        # does not fill every socket's queue at once (and close them all as slow).
        while state.last_seq < upto:
            page = await self.fetch(item_id, state.last_seq, min(upto, state.last_seq + FILL_PAGE))
            if not page:
                state.last_seq = upto  # pruned by retention
                return
            metrics.GAP_FILLS.inc(len(page))
            for seq, frame in page:
                state.last_seq = seq
                self._fan_out(state, seq, frame)
            await asyncio.sleep(0)

    async def poll(self) -> None:
        """Compare every subscribed item with the store; deliver what went missing.

        This bounds the delay of a message whose broker publish was lost and that no
        later message reveals (`poll_interval`, by default one second).
        """
        ready = {i: s for i, s in self._items.items() if s.ready.is_set()}
        if not ready:
            return
        # Taken before the query: anything delivered by then was stored by then, so a
        # store that answers less has lost the item (deleted, maybe created again).
        delivered = {item_id: state.last_seq for item_id, state in ready.items()}
        latest = await self.store.latest(list(ready))
        for item_id, state in ready.items():
            seq = latest.get(item_id)
            if seq is None or seq < delivered[item_id]:
                # Deleted (and perhaps created again) while a revocation was lost.
                for outbox in tuple(state.outboxes):
                    outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
                self._drop_item(item_id, state)
            elif seq > state.last_seq:
                await self._catch_up(item_id, state, seq)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll()
            except Exception:
                log.warning("store poll failed", exc_info=True)

    async def recover(self) -> None:
        """After a broker outage: deliver missed messages, apply missed revocations."""
        if self.on_revocation is not None:
            self.on_revocation({"op": "all"})
        await self.poll()
        outboxes = [o for s in self._items.values() for o in s.outboxes]
        revoked = await self.store.revoked_sessions({o.session_id for o in outboxes})
        lost = await self.store.lost_access({(o.item_id, o.user_id) for o in outboxes})
        for outbox in outboxes:
            if outbox.session_id in revoked:
                outbox.request_close(protocol.POLICY_VIOLATION, protocol.SESSION_REVOKED)
            elif (outbox.item_id, outbox.user_id) in lost:
                outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
        await self.presence.resync()

    def _fan_out(self, state: _ItemState, seq: int, frame: str) -> None:
        outboxes = tuple(state.outboxes)
        for outbox in outboxes:
            outbox.push(seq, frame)
        if seq:
            metrics.MESSAGES_DELIVERED.inc(len(outboxes))

    async def _control_loop(self) -> None:
        async with self.broker.subscribe(CONTROL_CHANNEL) as sub:
            self._control_ready.set()
            async for payload in sub:
                try:
                    self._apply(orjson.loads(payload))
                except Exception:
                    log.exception("bad control message")

    def _apply(self, command: dict[str, str]) -> None:
        if self.on_revocation is not None:
            self.on_revocation(command)
        op = command.get("op")
        if op == "session":
            self._remember(("session", command["sid"]))
            for outbox in tuple(self._by_session.get(command["sid"], ())):
                outbox.request_close(protocol.POLICY_VIOLATION, protocol.SESSION_REVOKED)
        elif op in ("member", "item"):
            item_id = command["item"]
            self._remember((op, item_id) if op == "item" else (op, item_id, command["user"]))
            state = self._items.get(item_id)
            if state is None:
                return
            for outbox in tuple(state.outboxes):
                if op == "item" or outbox.user_id == command["user"]:
                    outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
            if op == "item":
                # A new item may take the id, with seqs from 1 again: start afresh.
                self._drop_item(item_id, state)

"""The hub: this process's sockets, fed from the broker.

Each message reaches the hub once per process as pre-encoded text; the item's stream
(`streams.py`) puts it in `seq` order, filling gaps from the store, and hands it to
every local socket's bounded outbox without awaiting anything, so a client that stops
reading delays no one. Revocations arrive through the control plane (`control.py`)
and close the sockets they concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from api.realtime import protocol
from api.realtime.announcements import PRESENCE_TICK, Announcer
from api.realtime.broker import Broker
from api.realtime.control import (
    Command,
    ControlPlane,
    ItemDeleted,
    MemberRevoked,
    Resync,
    RoleChanged,
    SessionRevoked,
)
from api.realtime.envelope import envelope, item_channel
from api.realtime.outbox import Outbox
from api.realtime.presence import Presence
from api.realtime.recovery import StoreWatch
from api.realtime.registry import Registry
from api.realtime.sink import Sink
from api.realtime.store import FetchRange, Store
from api.realtime.subscriptions import Subscriptions

log = logging.getLogger(__name__)

# Given the open sockets after a broker outage, the layer above names those that must
# close and the reason (sessions revoked, access lost while commands could not arrive).
Audit = Callable[[Sequence[Sink]], Awaitable[list[tuple[Sink, str]]]]


class Hub:
    """Local sockets per item, one broker subscription per item per process."""

    def __init__(
        self,
        broker: Broker,
        presence: Presence,
        store: Store,
        poll_interval: float = 1.0,
        *,
        audit: Audit | None = None,
        presence_tick: float = PRESENCE_TICK,
    ) -> None:
        self.broker = broker
        self.presence = presence
        self.store = store
        self.fetch: FetchRange = store.fetch
        self.audit = audit
        self.control = ControlPlane(broker)
        self.control.listen(self._close_revoked)
        self._registry = Registry()
        self._items = Subscriptions(broker, store)
        self._watch = StoreWatch(self._items, store, poll_interval)
        self._announcer = Announcer(broker.publish, presence_tick)
        self._leaving: set[asyncio.Task[None]] = set()

    # Lifecycle.

    async def start(self) -> None:
        self._watch.start()
        # A broker that can lose messages while disconnected says when it is back.
        if hasattr(self.broker, "on_reconnect"):
            self.broker.on_reconnect = self.recover
        self.presence.announce = self._announcer.changed
        await self.control.start()

    async def stop(self) -> None:
        task = self._watch.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.control.stop()
        await self._announcer.stop()
        await self._items.stop()

    def sockets_of_user(self, user_id: str) -> int:
        """Item and monitor sockets of the user open in this process."""
        return self._registry.sockets_of_user(user_id)

    def sockets_on_item(self, item_id: str) -> int:
        stream = self._items.get(item_id)
        return len(stream.outboxes) if stream else 0

    # Sockets.

    async def attach(self, outbox: Outbox, epoch: int) -> None:
        """Register the socket and, on an item, start its live stream.

        `epoch` is the control plane's when the socket's credentials were checked: a
        revocation applied since then closes the socket all the same."""
        self._registry.add(outbox)
        if outbox.item_id:
            await self._items.join(outbox)
        missed = self.control.revoked_since(epoch)
        if missed is None:
            # Too many commands since: which of them concern this socket is unknown.
            outbox.request_close(protocol.TRY_AGAIN_LATER, protocol.TRY_AGAIN)
            return
        for command in missed:
            reason = _revokes(command, outbox)
            if reason is not None:
                outbox.request_close(protocol.POLICY_VIOLATION, reason)
                return

    def detach(self, outbox: Outbox) -> None:
        if self._registry.remove(outbox) and outbox.item_id:
            self._items.leave(outbox)

    # Subscriptions of multiplexed sockets (themselves attached, on no item).

    async def subscribe(self, sink: Sink, epoch: int) -> str | None:
        """Start the item's live stream to a subscription. Like `attach`, a revocation
        applied since `epoch` concerns it: the close reason is then returned (the
        subscription is still in the stream; `unsubscribe` it)."""
        await self._items.join(sink)
        missed = self.control.revoked_since(epoch)
        if missed is None:
            return protocol.TRY_AGAIN
        for command in missed:
            reason = _revokes(command, sink)
            if reason is not None:
                return reason
        return None

    def unsubscribe(self, sink: Sink) -> None:
        self._items.leave(sink)

    def last_seq(self, item_id: str) -> int:
        """The last seq this process has delivered on the item (attached items only).

        A socket attached now receives every later message, so this is where its
        stream starts: no need to ask the store."""
        stream = self._items.get(item_id)
        return stream.last_seq if stream is not None else 0

    def move_session(self, outbox: Outbox, session_id: str) -> None:
        """The socket is now governed by another session (after a token refresh)."""
        self._registry.move_session(outbox, session_id)

    # Publishing.

    async def publish_messages(self, messages: Sequence[tuple[str, int, str]]) -> None:
        """Stored messages, (item id, seq, frame) in order: one broker call for them all
        (one round trip to Redis)."""
        now = time.time()
        await self.broker.publish_many(
            [(item_channel(item_id), envelope(seq, frame, now)) for item_id, seq, frame in messages]
        )

    async def join(self, outbox: Sink) -> None:
        """Count the socket in presence; announce the user if it is their first."""
        try:
            count = await self.presence.join(outbox.item_id, outbox.username, id(outbox))
            if count is not None:
                await self._announcer.changed(outbox.item_id, "join", outbox.username, count)
        except Exception:  # presence is best effort: the broker resyncs it on recovery
            log.warning("presence join failed", exc_info=True)

    async def leave(self, outbox: Sink) -> None:
        try:
            count = await self.presence.leave(outbox.item_id, outbox.username, id(outbox))
            if count is not None:
                await self._announcer.changed(outbox.item_id, "leave", outbox.username, count)
        except Exception:
            log.warning("presence leave failed", exc_info=True)

    def leave_soon(self, sink: Sink) -> None:
        """`leave`, from a callback (a subscription ended by a revocation)."""
        task = asyncio.create_task(self.leave(sink), name="presence-leave")
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def revoke_session(self, session_id: str) -> None:
        await self.control.send(SessionRevoked(session_id))

    async def revoke_member(self, item_id: str, user_id: str) -> None:
        await self.control.send(MemberRevoked(item_id, user_id))

    async def role_changed(self, item_id: str, user_id: str) -> None:
        """Not a revocation (the socket stays), but cached rights must be re-read."""
        await self.control.send(RoleChanged(item_id, user_id))

    async def revoke_item(self, item_id: str) -> None:
        await self.control.send(ItemDeleted(item_id))

    # Receiving.

    def _close_revoked(self, command: Command) -> None:
        if isinstance(command, SessionRevoked):
            for outbox in self._registry.of_session(command.session_id):
                outbox.request_close(protocol.POLICY_VIOLATION, protocol.SESSION_REVOKED)
            return
        if not isinstance(command, MemberRevoked | ItemDeleted):
            return
        stream = self._items.get(command.item_id)
        if stream is None:
            return
        stream.close_where(
            protocol.POLICY_VIOLATION,
            protocol.FORBIDDEN,
            lambda outbox: _revokes(command, outbox) is not None,
        )
        if isinstance(command, ItemDeleted):
            # A new item may take the id, with seqs from 1 again: start afresh.
            self._items.drop(stream)

    async def poll(self) -> None:
        await self._watch.poll()

    async def recover(self) -> None:
        """After a broker outage: deliver missed messages, apply missed revocations."""
        self.control.apply(Resync())
        await self._watch.poll()
        if self.audit is not None:
            sockets: list[Sink] = list(self._registry.all())
            # And the subscriptions of multiplexed sockets, which only their items know.
            sockets += [
                sink
                for stream in self._items.all()
                for sink in stream.outboxes
                if not isinstance(sink, Outbox)
            ]
            for sink, reason in await self.audit(sockets):
                sink.request_close(protocol.POLICY_VIOLATION, reason)
        await self.presence.resync()


def _revokes(command: Command, outbox: Sink) -> str | None:
    """The close reason if `command` revokes the socket's right to stay open."""
    if isinstance(command, SessionRevoked):
        return protocol.SESSION_REVOKED if command.session_id == outbox.session_id else None
    if isinstance(command, ItemDeleted):
        return protocol.FORBIDDEN if command.item_id == outbox.item_id else None
    if isinstance(command, MemberRevoked):
        concerned = command.item_id == outbox.item_id and command.user_id == outbox.user_id
        return protocol.FORBIDDEN if concerned else None
    return None

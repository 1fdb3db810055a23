"""The frames of a `/ws` socket: subscriptions, and publishes and state changes that
name their item (api/routes/multiplex.py serves the socket)."""

from __future__ import annotations

from pydantic import BaseModel

from api.auth.credentials import Principal
from api.errors import NotFound
from api.items.access import cached_access
from api.realtime import multiplex_frames as mux
from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.realtime.subscription import ABSENT, JOINED, JOINING, Subscription
from api.routes.publishes import NO_ACCESS_DETAIL, Publishes
from api.routes.sockets import opening_last_seq, resume_point
from api.routes.state_frames import RATE_DETAIL, StateFrames
from api.routes.writing import WritingSession
from api.runtime import Runtime


class MultiplexSession(WritingSession):
    """One `/ws` socket's subscriptions (item id -> `Subscription`) and its changes."""

    __slots__ = ("_subscriptions",)

    def __init__(self, runtime: Runtime, principal: Principal, outbox: Outbox) -> None:
        super().__init__(runtime, principal, outbox)
        self._subscriptions: dict[str, Subscription] = {}

    def _closed(self) -> bool:
        """Closing (re-read after every wait: a close may be requested meanwhile)."""
        return self.outbox.closing is not None

    def parse(self, text: str) -> BaseModel:
        return mux.parse_multiplex_frame(text)

    async def act(self, frame: BaseModel) -> None:
        if isinstance(frame, mux.ItemPublishFrame):
            await self._publish(frame)
        elif isinstance(frame, mux.ItemPatchFrame | mux.ItemActionFrame):
            await self._change(frame)
        elif isinstance(frame, mux.SubscribeFrame):
            await self.settle()  # answers in the order of the frames
            await self._subscribe(frame)
        elif isinstance(frame, mux.UnsubscribeFrame):
            await self.settle()
            self._unsubscribe(frame)
        else:
            await super().act(frame)

    # Publishes and state changes, on any item the user may write to.

    async def _publish(self, frame: mux.ItemPublishFrame) -> None:
        if not self.bucket().take():
            detail = "publishing too fast; slow down"
            self.error(protocol.RATE_LIMITED, detail, frame.ref, frame.item_id)
            return
        publishes = self._publishes
        if publishes is None:
            publishes = self._publishes = Publishes(
                self.runtime, self.outbox, self._current, names_items=True
            )
        await publishes.submit(frame.item_id, frame.data, frame.ref)

    async def _change(self, frame: mux.ItemPatchFrame | mux.ItemActionFrame) -> None:
        await self._settle_publishes()  # a change follows the publishes before it
        state_frames = self._state_frames
        if state_frames is None:
            state_frames = self._state_frames = StateFrames(
                self.runtime, self.outbox, self._current, names_items=True
            )
        if not self.bucket().take():
            await state_frames.refuse(protocol.RATE_LIMITED, RATE_DETAIL, frame.ref, frame.item_id)
            return
        await state_frames.submit(frame.item_id, frame)

    # Subscriptions.

    async def _subscribe(self, frame: mux.SubscribeFrame) -> None:
        item_id, ref = frame.item_id, frame.ref
        runtime = self.runtime
        settings = runtime.settings
        hub = runtime.hub
        if not self.bucket().take():
            detail = "subscribing too fast; slow down"
            self.error(protocol.RATE_LIMITED, detail, ref, item_id)
            return
        if item_id in self._subscriptions:
            self.error(protocol.BAD_REQUEST, "already subscribed to this item", ref, item_id)
            return
        if len(self._subscriptions) >= settings.max_subscriptions:
            detail = f"at most {settings.max_subscriptions} subscriptions per socket"
            self.error(mux.TOO_MANY_SUBSCRIPTIONS, detail, ref, item_id)
            return
        # Before the access check: a revocation from now on reaches the subscription.
        epoch = hub.control.epoch
        try:
            standing = await cached_access(
                runtime.access_cache, runtime.session_factory, item_id, self.principal.user_id
            )
        except NotFound:
            self.error(protocol.FORBIDDEN, NO_ACCESS_DETAIL, ref, item_id)
            return
        if self._closed():
            return
        if hub.sockets_on_item(item_id) >= settings.max_sockets_per_item:
            self.error(mux.ITEM_FULL, "the item has too many sockets", ref, item_id)
            return
        subscription = self._subscriptions[item_id] = Subscription(self.outbox, item_id, self)
        refused = await hub.subscribe(subscription, epoch)
        last_seq = standing.last_seq
        if refused is None:
            last_seq = await opening_last_seq(hub, item_id, last_seq, frame.since)
        snapshot = None
        if refused is None and frame.state and not subscription.ended:
            # Its later versions are held by the subscription until it starts.
            snapshot = await runtime.state_hub.attach(subscription)
        if self._closed():
            return  # the subscriptions ended with the socket
        if refused is None and subscription.ended:
            refused = protocol.FORBIDDEN  # revoked meanwhile
        if refused is not None:
            self._end(subscription)
            if refused == protocol.FORBIDDEN:
                self.error(protocol.FORBIDDEN, NO_ACCESS_DETAIL, ref, item_id)
            else:
                code = protocol.POLICY_VIOLATION
                if refused == protocol.TRY_AGAIN:
                    code = protocol.TRY_AGAIN_LATER
                self.outbox.request_close(code, refused)
            return
        # The stream may have moved on during the reads: what it delivered meanwhile was
        # dropped, and is caught up from the store with the rest.
        last_seq = max(last_seq, hub.last_seq(item_id))
        recovered, start_after = resume_point(frame.since, last_seq, settings.message_retention)
        subscription.last_seq = start_after
        subscription.catch_up_to = last_seq
        answer = mux.SubscribedFrame(
            item_id=item_id,
            role=standing.role.value,
            last_seq=last_seq,
            recovered=recovered,
            ref=ref,
        )
        first = (protocol.encode(answer),)
        subscription.start(first if snapshot is None else (*first, snapshot))
        await self._join(subscription)

    async def _join(self, subscription: Subscription) -> None:
        """Count the subscription in the item's presence (its join follows `subscribed`)."""
        subscription.presence = JOINING
        try:
            await self.runtime.hub.join(subscription)
        finally:
            if subscription.ended:  # while joining: `_end` left it to this
                subscription.presence = ABSENT
                self.runtime.hub.leave_soon(subscription)
            else:
                subscription.presence = JOINED

    def _unsubscribe(self, frame: mux.UnsubscribeFrame) -> None:
        subscription = self._subscriptions.get(frame.item_id)
        if subscription is None:
            detail = "not subscribed to this item"
            self.error(protocol.BAD_REQUEST, detail, frame.ref, frame.item_id)
            return
        self._end(subscription)
        self.outbox.push(0, mux.unsubscribed_frame(frame.item_id, mux.REQUESTED, frame.ref))

    def lost(self, subscription: Subscription) -> None:
        """Access to the item went away: that subscription ends, the socket stays."""
        started = subscription.started
        self._end(subscription)
        if started:
            frame = mux.unsubscribed_frame(subscription.item_id, protocol.FORBIDDEN)
            self.outbox.push(0, frame)

    def _end(self, subscription: Subscription, leave: bool = True) -> bool:
        """Stop the item's frames; True if it was counted in presence (left soon when
        `leave`, else the caller's to leave)."""
        item_id = subscription.item_id
        if self._subscriptions.get(item_id) is subscription:
            del self._subscriptions[item_id]
        subscription.end()
        hub = self.runtime.hub
        hub.unsubscribe(subscription)
        self.runtime.state_hub.detach(subscription)
        if subscription.presence != JOINED:
            return False  # not counted, or still joining: `_join` leaves it
        subscription.presence = ABSENT
        if leave:
            hub.leave_soon(subscription)
        return True

    def closing(self, outbox: Outbox) -> None:
        """The socket is closing: nothing more of any item."""
        super().closing(outbox)
        for subscription in list(self._subscriptions.values()):
            self._end(subscription)

    def end_all(self) -> list[Subscription]:
        """End every subscription (the socket is gone); those to take out of presence."""
        return [s for s in list(self._subscriptions.values()) if self._end(s, leave=False)]

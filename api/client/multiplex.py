"""Many items on one socket (`/ws`): subscriptions renewed with their last seq after every
reconnect, so each item's messages arrive once and in order across drops."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from api.client import frames
from api.client.errors import ProtocolError, StateError, SubscribeError
from api.client.refresh import Tokens
from api.client.retry import Backoff
from api.client.sockets import MAX_BUFFERED, ReconnectingSocket

log = logging.getLogger("api.client")

Frame = dict[str, Any]


@dataclass(eq=False, slots=True)
class _Subscription:
    item_id: str
    state: bool
    last_seq: int | None  # `since` until answered, then the last seq delivered
    version: int | None = None  # the last state version delivered
    live: bool = False  # answered on the current socket: its frames count
    jump: bool = False  # after `recovered: false`, the next seq may skip ahead
    sent_on: ClientConnection | None = None
    waiter: asyncio.Future[Frame] | None = None  # `subscribe()` awaiting its answer


class Multiplex(ReconnectingSocket):
    """One connection to `/ws` following any number of items.

    Use as `async with client.connect() as ws:`; entering waits for the first `ready`.
    `await ws.subscribe(item_id, since=N, state=True)` answers with the `subscribed` frame
    (or raises `SubscribeError`); iterating yields the frames of subscribed items, each
    naming its item: `subscribed` (also after every resubscription: its `recovered` says
    whether the replay was complete), `message`, `presence`, `state` and `unsubscribed`
    (the server ended a subscription: removed from the item, item deleted, or a
    resubscription refused, with the refusal's code as `reason`). Messages are delivered
    once per seq and in order per item; state changes once per version.

    After a drop or a retried close the socket reconnects with backoff and subscribes
    every item again with `since=<its last seq>` (and `state` as first asked). 1008 ends
    it as a channel's would (`ChannelRefused`), `token expired` aside. Frames are
    buffered until read, up to `max_buffered`, as on a channel.
    """

    def __init__(
        self,
        url: str,
        tokens: Tokens,
        *,
        backoff: Backoff,
        timeout: float,
        max_buffered: int | None = MAX_BUFFERED,
    ) -> None:
        super().__init__(url, tokens, backoff=backoff, timeout=timeout, max_buffered=max_buffered)
        self._subs: dict[str, _Subscription] = {}
        self._asked: dict[str, _Subscription] = {}  # ref of a subscribe in flight
        self._dropping: dict[str, asyncio.Future[None]] = {}  # ref of an unsubscribe
        self._ignored: set[str] = set()  # refs whose answers no longer matter
        self._refs = itertools.count(1)
        #: The `ready` frame of the current (or last) connection.
        self.ready: Frame | None = None

    @property
    def max_subscriptions(self) -> int | None:
        """The server's per-socket limit, from its `ready` frame."""
        value = self.ready.get("max_subscriptions") if self.ready else None
        return value if isinstance(value, int) else None

    @property
    def subscriptions(self) -> dict[str, int | None]:
        """Each item subscribed (or asked for), with the last seq delivered."""
        return {item_id: sub.last_seq for item_id, sub in self._subs.items()}

    def __aiter__(self) -> Multiplex:
        return self

    async def __anext__(self) -> Frame:
        entry: Frame = await self._next()
        return entry

    async def subscribe(
        self, item_id: str, since: int | None = None, *, state: bool = False
    ) -> Frame:
        """Follow `item_id`: its `subscribed` frame once answered (waiting for a connection
        while reconnecting). With `since`, every stored message after it comes first."""
        self._check_entered()
        if since is not None and (isinstance(since, bool) or since < 0):
            raise ValueError("since must be a non-negative integer")
        if item_id in self._subs:
            raise ValueError(f"already subscribed to {item_id!r}")
        if self._publisher.failure is not None:
            raise self._publisher.failure
        sub = _Subscription(item_id, state, since)
        sub.waiter = asyncio.get_running_loop().create_future()
        self._subs[item_id] = sub
        ws = self._publisher.socket
        try:
            if ws is not None:
                await self._send_subscribe(ws, sub)
            return await sub.waiter
        except asyncio.CancelledError:
            if self._subs.get(item_id) is sub:
                await self.unsubscribe(item_id)
            raise

    async def unsubscribe(self, item_id: str) -> None:
        """Stop following `item_id`: nothing of it is yielded after this call."""
        self._check_entered()
        sub = self._subs.pop(item_id, None)
        if sub is None:
            raise ValueError(f"not subscribed to {item_id!r}")
        sub.live = False
        if sub.waiter is not None and not sub.waiter.done():
            sub.waiter.set_exception(SubscribeError(item_id, "unsubscribed", "unsubscribed"))
            sub.waiter.exception()
        for ref, asked in list(self._asked.items()):
            if asked is sub:  # its answer, when it comes, is of no interest
                del self._asked[ref]
                self._ignored.add(ref)
        ws = self._publisher.socket
        if ws is None or sub.sent_on is not ws:
            return  # nothing of it on this socket; the next one will not ask for it
        ref = f"u{next(self._refs)}"
        answered = self._dropping[ref] = asyncio.get_running_loop().create_future()
        try:
            await ws.send(json.dumps({"type": "unsubscribe", "item_id": item_id, "ref": ref}))
            async with asyncio.timeout(self._publisher.timeout):
                await answered
        except (ConnectionClosed, TimeoutError):
            pass  # the socket is going: its subscriptions with it
        finally:
            self._dropping.pop(ref, None)

    async def publish(self, item_id: str, data: Any, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Store `data` as a message of `item_id` (subscribed or not); its acked seq.
        Raises `PublishError` as `Channel.publish` does."""
        self._check_entered()
        frame = {"type": "publish", "item_id": item_id, "data": data}
        return await self._publisher.request(frame, timeout)

    async def patch(
        self,
        item_id: str,
        ops: list[dict[str, Any]],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> int:
        """JSON Patch a document's state; the acked version, or `StateError`."""
        self._check_entered()
        frame = {"type": "patch", "item_id": item_id, "ops": ops}
        return await self._publisher.request(frame, timeout, StateError)

    async def action(
        self,
        item_id: str,
        action: dict[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> int:
        """A move in a game item; the acked version, or `StateError` (`illegal`, ...)."""
        self._check_entered()
        frame = {"type": "action", "item_id": item_id, "action": action}
        return await self._publisher.request(frame, timeout, StateError)

    # The connection.

    def _on_ready(self, frame: Frame) -> None:
        if frame["type"] != "ready":
            raise ProtocolError(f"expected a 'ready' frame first, got {frame['type']!r}")
        frames.field(frame, "user", dict)
        self.ready = frame
        # A new socket: nothing is subscribed on it yet, nothing asked is answered.
        self._asked.clear()
        self._ignored.clear()
        for answered in self._dropping.values():
            if not answered.done():
                answered.set_result(None)
        for sub in self._subs.values():
            sub.live, sub.sent_on = False, None
        self._ready_now()

    async def _on_open(self, ws: ClientConnection) -> None:
        for sub in list(self._subs.values()):
            await self._send_subscribe(ws, sub)

    async def _send_subscribe(self, ws: ClientConnection, sub: _Subscription) -> None:
        if sub.sent_on is ws:
            return  # asked already on this socket
        sub.sent_on = ws
        ref = f"s{next(self._refs)}"
        self._asked[ref] = sub
        frame: Frame = {"type": "subscribe", "item_id": sub.item_id, "ref": ref}
        if sub.last_seq is not None:
            frame["since"] = sub.last_seq
        if sub.state:
            frame["state"] = True
        with contextlib.suppress(ConnectionClosed):  # else asked again on the next socket
            await ws.send(json.dumps(frame))

    async def _on_frame(self, frame: Frame) -> bool:
        """Handle one frame; False when a message is missing before this one."""
        kind = frame["type"]
        ref = frame.get("ref")
        if isinstance(ref, str) and ref in self._ignored:
            self._ignored.discard(ref)
            return True
        if kind in ("ack", "error") and self._answer(frame, ref):
            return True
        if kind == "subscribed":
            self._subscribed(frame, self._asked.pop(ref, None) if isinstance(ref, str) else None)
        elif kind == "unsubscribed":
            answered = self._dropping.get(ref) if isinstance(ref, str) else None
            if answered is not None:
                if not answered.done():
                    answered.set_result(None)
            else:
                self._ended(frames.field(frame, "item_id", str), frame)
        elif kind in ("message", "presence", "state"):
            sub = self._subs.get(frames.field(frame, "item_id", str))
            if sub is not None and sub.live:
                return self._item_frame(sub, frame)
        elif kind == "error":
            log.warning("error frame: %s: %s", frame.get("code"), frame.get("detail"))
        elif kind == "ready":
            raise ProtocolError("a second 'ready' frame on one socket")
        return True  # pong, and frame types added later: nothing to do

    def _answer(self, frame: Frame, ref: object) -> bool:
        """An `ack` or `error` answering one of our requests (False: none of ours)."""
        if frame["type"] == "ack":
            return self._publisher.acks.acked(ref, frames.ack_value(frame))
        code, detail = frames.field(frame, "code", str), str(frame.get("detail", ""))
        if isinstance(ref, str) and ref in self._asked:
            sub = self._asked.pop(ref)
            if self._subs.get(sub.item_id) is sub:
                del self._subs[sub.item_id]
                if sub.waiter is not None and not sub.waiter.done():
                    sub.waiter.set_exception(SubscribeError(sub.item_id, code, detail))
                else:  # a resubscription refused: the subscription ends
                    self._put({"type": "unsubscribed", "item_id": sub.item_id, "reason": code})
            return True
        if isinstance(ref, str) and ref in self._dropping:
            answered = self._dropping[ref]
            if not answered.done():
                answered.set_result(None)  # not subscribed there any more: fine
            return True
        return self._publisher.acks.refused(ref, code, detail)

    def _subscribed(self, frame: Frame, sub: _Subscription | None) -> None:
        item_id = frames.field(frame, "item_id", str)
        last_seq = frames.field(frame, "last_seq", int)
        if sub is None or self._subs.get(item_id) is not sub:
            log.warning("an unexpected 'subscribed' frame for %r", item_id)
            return
        sub.live = True
        if frame.get("recovered") is False and sub.last_seq is not None:
            if sub.last_seq > last_seq:
                sub.last_seq = last_seq  # the server has fewer messages than we saw
            else:
                sub.jump = True  # the replay starts at the oldest kept message
        elif sub.last_seq is None:
            sub.last_seq = last_seq
        if sub.waiter is not None and not sub.waiter.done():
            sub.waiter.set_result(frame)
        self._put(frame)

    def _ended(self, item_id: str, frame: Frame) -> None:
        """The server ended a subscription (removed from the item, or it was deleted)."""
        sub = self._subs.get(item_id)
        if sub is not None and sub.live:
            del self._subs[item_id]
            self._put(frame)

    def _item_frame(self, sub: _Subscription, frame: Frame) -> bool:
        if self._resume_later:
            return True  # the next socket resubscribes from `last_seq`, with a snapshot
        kind = frame["type"]
        if kind == "message":
            message = frames.message(frame)
            seq = message["seq"]
            if sub.last_seq is not None and seq <= sub.last_seq:
                return True  # already delivered (a replay overlaps what came before)
            if sub.jump:
                sub.jump = False
            elif sub.last_seq is not None and seq != sub.last_seq + 1:
                log.warning("%r: seq %s after %s: reconnecting", sub.item_id, seq, sub.last_seq)
                return False
            sub.last_seq = seq
            self._put({"type": "message", **message})
        elif kind == "state":
            current = None if sub.version is None else {"version": sub.version}
            if frames.newer_state(frame, current):
                sub.version = frame["version"]
                self._put(frame)
        else:
            self._put(frame)
        return True

    def _finish(self, failure: BaseException) -> None:
        super()._finish(failure)
        for sub in self._subs.values():
            if sub.waiter is not None and not sub.waiter.done():
                sub.waiter.set_exception(failure)
                sub.waiter.exception()

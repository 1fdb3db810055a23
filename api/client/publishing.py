"""Requests on whichever socket a channel has open — publishes, state changes — each
matched to its `ack` (a seq, or a state's version) or `error` frame by `ref`."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from api.client.errors import PublishError


class Acks:
    """The requests sent on a channel and not yet answered, with the error class that
    their refusal raises."""

    def __init__(self) -> None:
        self._refs = itertools.count(1)
        self._pending: dict[str, tuple[asyncio.Future[int], type[PublishError]]] = {}

    def expect(self, error: type[PublishError] = PublishError) -> tuple[str, asyncio.Future[int]]:
        """A new ref, and the future its answer resolves."""
        ref = f"p{next(self._refs)}"
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (future, error)
        return ref, future

    def __len__(self) -> int:
        return len(self._pending)

    def forget(self, ref: str) -> None:
        self._pending.pop(ref, None)

    def acked(self, ref: object, value: int) -> bool:
        """An `ack` with its seq (a publish) or version (a state change)."""
        entry = self._pending.pop(ref, None) if isinstance(ref, str) else None
        if entry is None:
            return False
        if not entry[0].done():
            entry[0].set_result(value)
        return True

    def refused(self, ref: object, code: str, detail: str) -> bool:
        entry = self._pending.pop(ref, None) if isinstance(ref, str) else None
        if entry is None:
            return False
        future, error = entry
        if not future.done():
            future.set_exception(error(code, detail))
        return True

    def fail_all(self, error: BaseException) -> None:
        """The socket is gone: nothing sent on it will be answered."""
        pending, self._pending = self._pending, {}
        for future, kind in pending.values():
            if future.done():
                continue
            if isinstance(error, PublishError) and not isinstance(error, kind):
                future.set_exception(kind(error.code, error.detail))  # as the caller expects
            else:
                future.set_exception(error)


class Publisher:
    """The channel's current socket (None while reconnecting), its unanswered publishes,
    and the failure that ended the channel, if any."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.acks = Acks()
        self.socket: ClientConnection | None = None
        self.failure: BaseException | None = None
        self._changed = asyncio.Event()  # set (and replaced) when socket or failure change

    def attach(self, ws: ClientConnection | None) -> None:
        if ws is None:
            self.acks.fail_all(PublishError("connection_lost", "the socket closed before the ack"))
        self._use(ws)

    def hold(self) -> None:
        """New requests wait for the next socket; those sent are still answered on this one."""
        if self.socket is not None:
            self._use(None)

    def _use(self, ws: ClientConnection | None) -> None:
        self.socket = ws
        self._changed.set()
        self._changed = asyncio.Event()

    def fail(self, failure: BaseException) -> None:
        self.failure = failure
        self.acks.fail_all(failure)
        self.attach(None)

    async def publish(self, data: Any, timeout: float | None) -> int:  # noqa: ASYNC109
        return await self.request({"type": "publish", "data": data}, timeout)

    async def request(
        self,
        frame: dict[str, Any],
        timeout: float | None,  # noqa: ASYNC109
        error: type[PublishError] = PublishError,
    ) -> int:
        """Send `frame` with a new ref once a socket is open; the seq or version of its
        ack. Refusals, a timeout and a lost connection raise `error`."""
        limit = self.timeout if timeout is None else timeout
        ref = ""
        try:
            async with asyncio.timeout(limit):
                while True:
                    ws = await self._open_socket()
                    ref, answer = self.acks.expect(error)
                    try:
                        await ws.send(json.dumps({**frame, "ref": ref}))
                    except ConnectionClosed:
                        self.acks.forget(ref)  # not sent: safe to send on the next socket
                        await self._replaced(ws)
                        continue
                    return await answer
        except TimeoutError:
            raise error("timeout", f"no ack within {limit} s") from None
        finally:
            self.acks.forget(ref)

    async def _open_socket(self) -> ClientConnection:
        while True:
            if self.failure is not None:
                raise self.failure
            if self.socket is not None:
                return self.socket
            await self._changed.wait()

    async def _replaced(self, ws: ClientConnection) -> None:
        while self.socket is ws and self.failure is None:
            await self._changed.wait()

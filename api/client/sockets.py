"""What an item channel and the multiplexed `/ws` connection share: one socket at a time
that reconnects with backoff, renews its token, and hands each frame to its subclass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from api.client import frames
from api.client.errors import ChannelClosed, ChannelRefused, HTTPError, ServerUnavailable
from api.client.logs import websocket_logger
from api.client.publishing import Publisher
from api.client.refresh import Tokens, keep_token_fresh
from api.client.retry import Backoff

log = logging.getLogger("api.client")

# Closes worth reconnecting after: going away, server error, restart, try again later
# (slow consumer, broker or store unavailable, limits), and drops (1006).
RETRIED_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
END = object()  # queued once the socket is over; every later read sees it again
# Unread entries (messages, frames) a socket holds before it lets go of its connection
# until its reader catches up: memory stays bounded, and the resume loses nothing.
MAX_BUFFERED = 10_000
BEHIND = -1  # `_serve`'s code when the reader fell `max_buffered` entries behind
ANSWERS_CHECK = 0.5  # seconds between looks at the requests unanswered, when behind


class ReconnectingSocket:
    """The connection loop. Subclasses give the query string of the next attempt
    (`_query`), check the first frame (`_on_ready`), send what must go first
    (`_on_open`) and handle the other frames (`_on_frame`, False to reconnect at once: a
    message is missing). What they receive for their reader goes through `_put`; `END`
    follows the last entry.

    With `max_buffered` entries unread, the socket stops taking messages (subclasses
    drop them while `_resume_later`), lets the requests it has sent be
    answered, closes its connection and opens the next one once the reader has taken
    half of the entries; None: no bound."""

    def __init__(
        self,
        url: str,
        tokens: Tokens,
        *,
        backoff: Backoff,
        timeout: float,
        max_buffered: int | None = MAX_BUFFERED,
    ) -> None:
        if max_buffered is not None and (isinstance(max_buffered, bool) or max_buffered < 1):
            raise ValueError("max_buffered must be a positive integer or None")
        self._url = url
        self._tokens = tokens
        self._backoff = backoff
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._max_buffered = max_buffered
        self._room = asyncio.Event()  # cleared while the reader is too far behind
        self._room.set()
        self._leaving = False  # a socket is being closed: what it still brings is dropped
        self._publisher = Publisher(timeout)
        self._closed_by_user = False
        self._first_ready: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: How many times the socket set out to reconnect after a connection ended.
        self.reconnects = 0

    @property
    def buffered(self) -> int:
        """Entries received and not read yet."""
        return self._inbox.qsize() - (self._publisher.failure is not None)  # END aside

    @property
    def connected(self) -> bool:
        """A socket is open and ready (requests go out at once)."""
        return self._publisher.socket is not None

    async def __aenter__(self) -> Self:
        self._first_ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        try:
            await self._first_ready
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publisher.failure is None:
            self._closed_by_user = True
        self._finish(ChannelClosed(1000, "closed by the client"))

    # To override.

    def _query(self) -> str:
        return ""

    def _on_ready(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _on_open(self, ws: ClientConnection) -> None:
        """The socket is ready and attached: what to send before anything else."""

    async def _on_frame(self, frame: dict[str, Any]) -> bool:
        raise NotImplementedError

    # For subclasses.

    @property
    def _behind(self) -> bool:
        """The reader is `max_buffered` entries behind: take no more messages."""
        return not self._room.is_set()

    @property
    def _resume_later(self) -> bool:
        """Drop the messages arriving now: the next socket resumes from the last one taken."""
        return self._leaving or self._behind

    def _put(self, entry: Any) -> None:
        """Queue `entry` for the reader."""
        self._inbox.put_nowait(entry)
        if self._max_buffered is not None and self._inbox.qsize() >= self._max_buffered:
            self._room.clear()  # `_serve` lets go of the connection after this frame

    async def _next(self) -> Any:
        """The next entry of the inbox; StopAsyncIteration or the failure at the end."""
        self._check_entered()
        entry = await self._inbox.get()
        if entry is END:
            self._inbox.put_nowait(END)
            if self._closed_by_user:
                raise StopAsyncIteration
            assert self._publisher.failure is not None
            raise self._publisher.failure
        if not self._room.is_set() and self._inbox.qsize() <= (self._max_buffered or 0) // 2:
            self._room.set()
        return entry

    def _ready_now(self) -> None:
        """The first `ready` arrived: entering completes."""
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_result(None)

    def _check_entered(self) -> None:
        if self._task is None:
            raise RuntimeError(f"open it first: `async with ...` ({type(self).__name__})")

    # The connection loop.

    async def _run(self) -> None:
        attempt = 0
        renewed = False  # one token renewal per streak of `token expired` closes
        try:
            while True:
                try:
                    ws = await self._open()
                except (OSError, TimeoutError, InvalidHandshake, ServerUnavailable) as exc:
                    log.info("connect failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(self._backoff.delay(attempt))
                    attempt += 1
                    continue
                code, reason, was_ready = await self._serve(ws)
                if was_ready:
                    attempt, renewed = 0, False
                if code == BEHIND:
                    log.info("%d entries unread; resuming once read", self._inbox.qsize())
                    await self._room.wait()
                    self.reconnects += 1
                    continue
                if code == 1008:
                    if reason != "token expired" or renewed:
                        raise ChannelRefused(code, reason)
                    try:
                        if not await self._tokens.renew_after_expiry():
                            raise ChannelRefused(code, reason)
                    except ServerUnavailable:
                        pass  # renewed on the next attempt
                    else:
                        renewed = True
                        self.reconnects += 1
                        continue
                elif code not in RETRIED_CODES:
                    raise ChannelClosed(code, reason)
                log.info("socket closed (%s %r); resuming", code, reason)
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
                self.reconnects += 1
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._finish(exc)

    async def _open(self) -> ClientConnection:
        token = await self._tokens.current()
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        query = self._query()
        url = f"{self._url}?{query}" if query else self._url
        try:
            return await connect(
                url, additional_headers=headers, open_timeout=10, logger=websocket_logger
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status >= 500:
                raise  # restarting or overloaded: retried
            raise HTTPError("GET", self._url, status, "handshake refused") from exc

    async def _serve(self, ws: ClientConnection) -> tuple[int, str, bool]:
        """Read `ws` until it closes: its close code and reason, and whether it was ready."""
        keeper: asyncio.Task[None] | None = None
        was_ready = False
        try:
            async with ws:
                self._on_ready(frames.decode(await ws.recv()))
                was_ready = True
                self._publisher.attach(ws)
                keeper = asyncio.create_task(keep_token_fresh(self._tokens, ws.send))
                await self._on_open(ws)
                while True:
                    if not self._behind:
                        text = await ws.recv()
                    else:
                        self._publisher.hold()
                        if not self._publisher.acks:
                            await self._let_go(ws)
                            return BEHIND, "reader behind", was_ready
                        try:
                            # The answers awaited may time out unseen: look again.
                            async with asyncio.timeout(ANSWERS_CHECK):
                                text = await ws.recv()  # safe to cancel: nothing is lost
                        except TimeoutError:
                            continue
                    for frame in frames.unpack(frames.decode(text)):
                        if not await self._on_frame(frame):
                            await self._let_go(ws)
                            return 1006, "gap", was_ready
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                return 1006, "", was_ready
            return exc.rcvd.code, exc.rcvd.reason, was_ready
        finally:
            if keeper is not None:
                keeper.cancel()
            self._publisher.attach(None)

    async def _let_go(self, ws: ClientConnection) -> None:
        """Close `ws` while the server may still be sending. What arrives until its close
        frame is handled (answers matched, messages dropped): unread, it would fill the
        library's queue, which then stops reading, and the close would wait out its
        timeout."""
        closing = asyncio.create_task(ws.close())
        self._leaving = True
        try:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    for frame in frames.unpack(frames.decode(await ws.recv())):
                        await self._on_frame(frame)
            await closing
        finally:
            self._leaving = False
            closing.cancel()  # cancelled meanwhile: `async with ws` closes it

    def _finish(self, failure: BaseException) -> None:
        if self._publisher.failure is not None:
            return
        log.debug("socket ended: %s", failure)
        self._publisher.fail(failure)
        self._inbox.put_nowait(END)
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_exception(failure)
            self._first_ready.exception()  # retrieved by __aenter__; no "never retrieved"

"""The HTTP protocol `serve` runs: uvicorn's httptools protocol with limits on requests.

uvicorn applies no limit of its own to a request head on this parser: httptools
accumulates a header line until it ends (a 256 MiB line costs minutes of CPU), a
connection that never sends a byte is kept forever, and a process keeps accepting
until it runs out of file descriptors. This subclass

- answers 431 and closes when a request head (request line and headers, also of a
  WebSocket upgrade) would exceed `max_head_bytes`, or has more than `max_headers`
  headers, without handing the excess to the parser;
- closes a connection whose request head is not complete `head_timeout` seconds after
  the connection opened or the head began (408 when part of it was sent), or whose
  request body is not complete `body_timeout` seconds after its head (408 unless the
  response has begun);
- answers 503 and closes a connection accepted beyond `max_connections` in this process.

It also writes each response's head and body together (`api.response_writes`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from api.config import Settings
from api.response_writes import HeldHead
from api.startup import connections_allowed_by_fd_limit

log = logging.getLogger("api.server")

MAX_HEADERS = 100  # below websockets' 128, whose refusal never reaches the client
LINGER = 1.0  # seconds a refused connection is drained so that its answer arrives


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_head_bytes: int
    head_timeout: float
    max_connections: int
    max_headers: int = MAX_HEADERS
    body_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            max_head_bytes=settings.max_request_head_bytes,
            head_timeout=settings.request_head_timeout,
            max_connections=settings.max_connections or connections_allowed_by_fd_limit(),
            body_timeout=settings.request_body_timeout,
        )


def _response(status: bytes, body: bytes, *extra: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            *extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


HEAD_TOO_LARGE = _response(b"431 Request Header Fields Too Large", b"request head too large")
HEAD_TIMEOUT = _response(b"408 Request Timeout", b"request head not received in time")
BODY_TIMEOUT = _response(b"408 Request Timeout", b"request body not received in time")
TOO_MANY_CONNECTIONS = _response(
    b"503 Service Unavailable", b"too many connections", b"retry-after: 1\r\n"
)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    # Set on a subclass to use other limits than the environment's (tests do).
    limits: ClassVar[RequestLimits | None] = None
    _responses: HeldHead  # the connection's responses, from `connection_made`
    _from_environment: ClassVar[RequestLimits | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.limits or self._environment_limits()
        self._refused = False
        self._in_head = True
        self._head_bytes = 0
        self._parsed_head = 0  # the URL and headers of the head being parsed, in bytes
        self._tail = b""  # the last bytes of the head so far: its end may straddle reads
        # One timer for both deadlines, not re-armed for each request of a kept-alive
        # connection: when it fires it looks at when the head or the body in progress
        # began, and waits on for it, if any.
        self._timer: asyncio.TimerHandle | None = None
        # When the head being received began (the connection's opening for the first
        # one); None between heads.
        self._head_started: float | None = None
        # When the body being received began (its head's end); None once it is complete.
        self._body_started: float | None = None

    @classmethod
    def _environment_limits(cls) -> RequestLimits:
        if LimitedHttpToolsProtocol._from_environment is None:
            LimitedHttpToolsProtocol._from_environment = RequestLimits.from_settings(Settings())
        return LimitedHttpToolsProtocol._from_environment

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._responses = HeldHead(transport, self.loop)
        if len(self.server_state.connections) >= self._limits.max_connections:
            self.transport = transport
            self._refuse(TOO_MANY_CONNECTIONS, linger=0)  # its descriptor is needed now
            return
        super().connection_made(transport)
        self._head_started = self.loop.time()
        self._arm_timer(self._limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def refused(self) -> bool:
        """Whether this connection's request was refused (a 431, 408 or 503 sent)."""
        return self._refused

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # What this protocol writes itself (a 400, a refusal) goes after a held head.
        self._responses.flush()
        if self._in_head:
            if self._head_bytes + len(data) > self._limits.max_head_bytes and not (
                self._head_ends_within(data)
            ):
                self._refuse(HEAD_TOO_LARGE)
                return
            self._head_bytes += len(data)
            self._tail = (self._tail + data[-3:])[-3:]
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self.refused():  # the parser's callbacks may have refused it meanwhile
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def _head_ends_within(self, data: bytes) -> bool:
        """Whether the head ends in `data` within the limit (the rest is body)."""
        end = (self._tail + data).find(b"\r\n\r\n")
        if end < 0:
            return False
        return self._head_bytes - len(self._tail) + end + 4 <= self._limits.max_head_bytes

    # Parser callbacks.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head = 0
        if self._head_started is None:  # the next request on a kept-alive connection
            self._head_started = self.loop.time()
            if self._timer is None:
                self._arm_timer(self._limits.head_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self._limits.max_headers:
            self._refuse(HEAD_TOO_LARGE)
            raise _Refused
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        # What `data_received` counts is per read: a head pipelined behind another in
        # the same read is counted here, as the parser hands it over.
        self._parsed_head += size
        if self._parsed_head > self._limits.max_head_bytes:
            self._refuse(HEAD_TOO_LARGE)
            raise _Refused

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = None
        # Until `on_message_complete`, at once for a request without a body. The timer
        # armed for the head is kept unless it is due after the body's deadline.
        now = self.loop.time()
        self._body_started = now
        if self._timer is None or self._timer.when() > now + self._limits.body_timeout:
            self._arm_timer(self._limits.body_timeout)
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        # This protocol is done with the connection: an armed timer would keep it (its
        # parser, buffers and request) alive for as long as the socket's first seconds —
        # 6 KB per socket in the bench's idle-memory figure (24.9 → 30.2 KB at 10,000).
        self._cancel_timer()
        super().handle_websocket_upgrade()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._responses.expect_head()
        cycle.transport = self._responses  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        # Before anything may close the connection: a response without a body (HEAD)
        # still has its head held.
        self._responses.flush()
        super().on_response_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever comes next is the head of the next request.
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        self._body_started = None

    # Refusals.

    def _refuse(self, response: bytes, linger: float = LINGER) -> None:
        """Answer and close. A client still sending would get a reset that discards
        the answer: so unless `linger` is 0, end our side first and drop what still
        arrives for `linger` seconds before closing."""
        self._refused = True
        self._cancel_timer()
        if self.transport.is_closing():
            return
        self._responses.flush()
        self.transport.write(response)
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(linger, self.transport.close)
        else:
            self.transport.close()

    def _arm_timer(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, self._deadline_passed)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_passed(self) -> None:
        self._timer = None
        if self._refused or self.transport.is_closing():
            return
        if self._in_head and self._head_started is not None:
            remaining = self._head_started + self._limits.head_timeout - self.loop.time()
            if remaining <= 0:
                self._head_timed_out()
                return
        elif self._body_started is not None:
            remaining = self._body_started + self._limits.body_timeout - self.loop.time()
            if remaining <= 0:
                self._body_timed_out()
                return
        else:
            return  # between requests: the next head arms it again
        self._arm_timer(remaining)  # armed for an earlier request: this one began later

    def _head_timed_out(self) -> None:
        if self._head_bytes:
            self._refuse(HEAD_TIMEOUT)
        else:  # nothing sent at all: nothing to answer
            self._refused = True
            self.transport.close()

    def _body_timed_out(self) -> None:
        # The app waiting for the body gets a disconnect; one that has begun its
        # response (it did not need the body) is cut off rather than answered twice.
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(BODY_TIMEOUT)
        else:
            self._refused = True
            self.transport.close()


def protocol_with(limits: RequestLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol with these limits, for a server in this process (tests)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


# For uvicorn's `http=`: an import string works with any number of worker processes.
PROTOCOL = "api.server:LimitedHttpToolsProtocol"

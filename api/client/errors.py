"""Every exception the client raises, under one base class."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base class of everything `api.client` raises on purpose."""


class HTTPError(ClientError):
    """A REST call answered with a status of 400 or more."""

    def __init__(self, method: str, path: str, status: int, detail: Any) -> None:
        super().__init__(f"{method} {path}: {status} {detail!r}")
        self.method = method
        self.path = path
        self.status = status
        #: FastAPI's `detail`: a string, or a list of validation errors on 422.
        self.detail = detail


class ProtocolError(ClientError):
    """The server sent something the protocol does not allow (named in the message)."""


class ChannelClosed(ClientError):
    """The server closed a channel with a code the client does not retry."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"channel closed: {code} {reason!r}")
        self.code = code
        self.reason = reason


class ChannelRefused(ChannelClosed):
    """A 1008 rejection or close: `reason` is one of the contract's reasons
    (`invalid token`, `forbidden`, `session revoked`, ...). Retrying unchanged gets the
    same answer, so it is never retried (except `token expired` when a session can
    issue a fresh token)."""


class NotRecovered(ClientError):
    """A resume could not replay everything after `since`: messages were pruned by the
    server's retention (or the server holds fewer messages than `since`). The channel
    stays usable: iterating again continues with the oldest message the server kept."""

    def __init__(self, since: int, last_seq: int) -> None:
        super().__init__(f"messages after seq {since} could not all be recovered")
        self.since = since
        #: The item's `last_seq` when the channel reconnected.
        self.last_seq = last_seq


class PublishError(ClientError):
    """A publish was not acknowledged. `code` is the server's error code (`forbidden`,
    `rate_limited`, `unavailable`, `bad_request`...) or one of the client's own:
    `timeout` and `connection_lost` — after which the message may or may not have been
    stored (at most once): look for it in the stream before publishing again."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"publish failed: {code}: {detail}")
        self.code = code
        self.detail = detail


class ServerUnavailable(ClientError):
    """A REST call could not reach the server (refused, reset, timed out)."""


class StateError(PublishError):
    """A state change (`patch` or `action` over a socket) was not acknowledged. `code` is
    the server's (`conflict`: a failed `test` op; `illegal`: a game's rule, named by
    `detail`; `bad_request`, `forbidden`, `too_large`, `rate_limited`) or the client's own
    `timeout` / `connection_lost` (the change may or may not be stored: read the state)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)
        self.args = (f"state change failed: {code}: {detail}",)


class SubscribeError(ClientError):
    """A `/ws` subscribe was refused (`code`: `forbidden`, `bad_request`,
    `too_many_subscriptions`); nothing changed on the connection."""

    def __init__(self, item_id: str, code: str, detail: str) -> None:
        super().__init__(f"subscribe to {item_id!r} refused: {code}: {detail}")
        self.item_id = item_id
        self.code = code
        self.detail = detail

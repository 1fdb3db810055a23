"""How to connect, for the AsyncAPI document: the server, the four ways to present a
credential, and the close codes with their reasons (docs/protocol.md §2 and §4)."""

from __future__ import annotations

from typing import Any

from api.realtime import protocol

SERVICE_RESTART = 1012  # sent by uvicorn to every socket when the service stops

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "queryToken": {
        "type": "httpApiKey",
        "name": "token",
        "in": "query",
        "description": (
            "`?token=`: an access token, or a single-use ticket from `POST /auth/ws-ticket` "
            "(consumed by its first handshake; the way for browsers)."
        ),
    },
    "bearerHeader": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <access token>` (non-browser clients).",
    },
    "bearerSubprotocol": {
        "type": "httpApiKey",
        "name": "Sec-WebSocket-Protocol",
        "in": "header",
        "description": (
            "The subprotocol pair `bearer, <access token>`; the server answers with the "
            "subprotocol `bearer` (also when it is about to refuse, so browsers see the close)."
        ),
    },
    "sessionCookie": {
        "type": "httpApiKey",
        "name": "session",
        "in": "cookie",
        "description": (
            "The `session` cookie from `POST /auth/login`, only with an `Origin` header in "
            "`ALLOWED_ORIGINS` (default: the server's own origin); otherwise 1008 "
            f"`{protocol.ORIGIN_NOT_ALLOWED}`."
        ),
    },
}
# Any one of them will do; when several are presented, the first in this order is used.
SECURITY = [{"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY_SCHEMES]

# (code, reason or "", when): every close the server sends, as in docs/protocol.md.
CLOSE_CODES: list[tuple[int, str, str]] = [
    (protocol.POLICY_VIOLATION, protocol.MISSING_CREDENTIALS, "no credential presented"),
    (
        protocol.POLICY_VIOLATION,
        protocol.INVALID_TOKEN,
        "malformed or badly signed token; a used, expired or other-item ticket",
    ),
    (protocol.POLICY_VIOLATION, protocol.TOKEN_EXPIRED, "the access token's exp passed"),
    (protocol.POLICY_VIOLATION, protocol.INVALID_SESSION, "unknown, expired or revoked session"),
    (protocol.POLICY_VIOLATION, protocol.ORIGIN_NOT_ALLOWED, "cookie from a disallowed Origin"),
    (protocol.POLICY_VIOLATION, protocol.FORBIDDEN, "no such item, or not owner nor member"),
    (protocol.POLICY_VIOLATION, protocol.INVALID_SINCE, "`since` is not a non-negative integer"),
    (protocol.POLICY_VIOLATION, protocol.SESSION_REVOKED, "the socket's session was revoked"),
    (protocol.UNSUPPORTED_DATA, "", "a binary frame was sent"),
    (protocol.MESSAGE_TOO_BIG, "", "a frame over MAX_MESSAGE_BYTES"),
    (SERVICE_RESTART, "", "service restart: reconnect with `since`"),
    (protocol.TRY_AGAIN_LATER, protocol.SLOW_CONSUMER, "the outgoing queue is full"),
    (protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE, "the message broker was lost"),
    (protocol.TRY_AGAIN_LATER, protocol.STORE_UNAVAILABLE, "missed messages could not be read"),
    (protocol.TRY_AGAIN_LATER, protocol.TOO_MANY_SOCKETS, "MAX_SOCKETS_PER_USER reached"),
    (protocol.TRY_AGAIN_LATER, protocol.ITEM_FULL, "MAX_SOCKETS_PER_ITEM reached"),
]


def servers(host: str, secure: bool) -> dict[str, Any]:
    """The server that served the document (behind a TLS proxy: `wss`)."""
    return {
        "this": {
            "host": host,
            "protocol": "wss" if secure else "ws",
            "description": "This service; REST on the same host (see /docs).",
            "security": SECURITY,
        }
    }


def close_codes_text() -> str:
    lines = [
        f"- `{code}`" + (f" `{reason}`" if reason else "") + f": {when}"
        for code, reason, when in CLOSE_CODES
    ]
    return (
        "Refusals complete the handshake, then close with 1008 and a reason, before any "
        "data frame. Every close the server sends:\n" + "\n".join(lines)
    )


def close_codes() -> list[dict[str, Any]]:
    """The same, machine-readable (`x-close-codes`)."""
    return [
        {"code": code, **({"reason": reason} if reason else {}), "when": when}
        for code, reason, when in CLOSE_CODES
    ]


def handshake_bindings() -> dict[str, Any]:
    """The handshake's headers, as a WebSockets channel binding declares them."""
    return {
        "type": "object",
        "properties": {
            "Authorization": {"type": "string", "pattern": "^Bearer "},
            "Sec-WebSocket-Protocol": {"type": "string", "description": "bearer, <token>"},
            "Origin": {"type": "string", "description": "required with the session cookie"},
        },
    }
